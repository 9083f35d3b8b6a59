//! Load generator (prints figures; not a test). Starts its own `oms serve` (release build) against
//! the local PostgreSQL and broker, stocks a catalogue, and then, by `--mode`:
//!
//! - `profile`: the old system's k6 profile. N virtual users, each a customer with a live
//!   `orderStatusChanged` subscription to their own orders, loop over a random action with 0-300 ms
//!   of think time: place an order, read it, then cancel or advance it; read one of their orders;
//!   cancel one; advance one (advancing is staff's: the user sends it with a staff token).
//! - `open`: offers a fixed rate of `placeOrder` calls, spread over `--users` customers, whatever
//!   the answers' latency (latency counts from the moment each call was due).
//! - `broker`: the broker's own produce and consume rate and single-message round trip, for
//!   messages of the size oms sends (no oms involved).
//! - `read`: `order(id)` queries per second through oms (GraphQL, JWT, its shared loaders),
//!   beside a plain axum + sqlx handler running the same SQL on the same database, two
//!   statements per request (`--users` concurrent clients, each request waiting for the
//!   previous one).
//!
//! With `--warm-up-seconds S` (`profile` and `open`), the same load runs unmeasured for S seconds
//! first, and the database's statistics are refreshed before the measured run (`warm_up`).
//!
//! It reports requests/s; latency p50 / p95 / p99 / max per operation and over all requests;
//! placed -> CONFIRMED as seen by the subscriber; confirmed orders/s; errors counted from the
//! response bodies (GraphQL errors and userErrors). `--json FILE` also writes the figures as JSON. At the end it audits the
//! database with `oms check` (no oversold stock, the ledger balances).
//!
//! With `--target URL[,URL...]` (`profile` and `open` modes; `bench/chaos` uses it) it starts no
//! oms of its own: it drives the instances at those addresses, which someone else starts, kills
//! and restarts. Requests go round-robin over them, tokens are signed with `--jwt-secret` (the
//! instances' `JWT_SECRET`), the catalogue is stocked through `--database-url`, and
//! `--acknowledged-orders FILE` receives the id of every order the API acknowledged, one a
//! line, as it is acknowledged. Failures are expected there and counted by kind (connection
//! errors, `UNAVAILABLE`, userErrors, ...), never a panic: requests time out after 30 s, a
//! closed subscription reconnects (to the next instance if its own does not answer), and users
//! keep going. Waiting for the last decisions and auditing the database are the caller's.
//!
//! ```text
//! source scripts/infra.sh && cargo build --release --bin oms --example load
//! target/release/examples/load --mode profile --users 500 --seconds 10 --catalogue uniform
//! target/release/examples/load --mode open --rate 500 --seconds 10 --catalogue hot
//! target/release/examples/load --mode broker --messages 20000
//! target/release/examples/load --mode read --users 64 --seconds 10
//! target/release/examples/load --mode profile --users 100 --seconds 300 --catalogue hot \
//!     --target http://127.0.0.1:8081,http://127.0.0.1:8082 --jwt-secret "$JWT_SECRET" \
//!     --database-url postgres://postgres@127.0.0.1:5432/oms_chaos --acknowledged-orders ids.txt
//! ```

#[path = "support/mod.rs"]
mod support;

use futures_util::{SinkExt, StreamExt};
use oms::auth::{Role, TokenKeys, DEV_SECRET};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{graphql, percentile, BenchServer, CpuReading};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[derive(Clone, Debug)]
struct Args {
    mode: String,
    users: usize,
    seconds: u64,
    /// `profile` and `open`: the same load first for this long, unmeasured, then the tables'
    /// statistics refreshed (see [`warm_up`]).
    warm_up_seconds: u64,
    rate: f64,
    catalogue: String,
    messages: usize,
    json: Option<String>,
    /// Extra `oms serve` flags, e.g. `--serve-flag=--kafka-batch-max-messages=1`.
    serve_flags: Vec<String>,
    /// Running oms instances to drive instead of starting one (base URLs).
    targets: Vec<String>,
    /// The targets' HS256 secret (`JWT_SECRET`).
    jwt_secret: Option<String>,
    /// The targets' database, to stock the catalogue.
    database_url: Option<String>,
    /// Where to write the id of every order the API acknowledged.
    acknowledged_orders: Option<String>,
}

fn args() -> Args {
    let mut args = Args {
        mode: "profile".into(),
        users: 500,
        seconds: 10,
        warm_up_seconds: 0,
        rate: 500.0,
        catalogue: "uniform".into(),
        messages: 20_000,
        json: None,
        serve_flags: Vec::new(),
        targets: Vec::new(),
        jwt_secret: None,
        database_url: None,
        acknowledged_orders: None,
    };
    let usage =
        "usage: load [--mode profile|open|broker|read] [--users N] [--seconds S] [--warm-up-seconds S] [--rate R] \
                 [--catalogue uniform|hot|one-hot] [--messages N] [--json FILE] [--serve-flag FLAG]... \
                 [--target URL,URL... --jwt-secret SECRET --database-url URL [--acknowledged-orders FILE]]";
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let [flag, value] = pair else {
            panic!("{usage}")
        };
        let bad = || -> ! { panic!("{flag} {value}: {usage}") };
        match flag.as_str() {
            "--mode" => args.mode = value.clone(),
            "--users" => args.users = value.parse().unwrap_or_else(|_| bad()),
            "--seconds" => args.seconds = value.parse().unwrap_or_else(|_| bad()),
            "--warm-up-seconds" => args.warm_up_seconds = value.parse().unwrap_or_else(|_| bad()),
            "--rate" => args.rate = value.parse().unwrap_or_else(|_| bad()),
            "--catalogue" => args.catalogue = value.clone(),
            "--messages" => args.messages = value.parse().unwrap_or_else(|_| bad()),
            "--json" => args.json = Some(value.clone()),
            "--serve-flag" => args.serve_flags.push(value.clone()),
            "--target" => args.targets = value.split(',').map(str::to_owned).collect(),
            "--jwt-secret" => args.jwt_secret = Some(value.clone()),
            "--database-url" => args.database_url = Some(value.clone()),
            "--acknowledged-orders" => args.acknowledged_orders = Some(value.clone()),
            _ => bad(),
        }
    }
    if !args.targets.is_empty() && (args.jwt_secret.is_none() || args.database_url.is_none()) {
        panic!("--target needs --jwt-secret and --database-url: {usage}");
    }
    args
}

/// The oms instances the users talk to and the key their tokens are signed with: the load's
/// own `BenchServer`, or the running instances given with `--target`.
struct Targets {
    /// Base URLs, `http://host:port`.
    bases: Vec<String>,
    keys: TokenKeys,
    token_ttl: Duration,
    /// Someone else runs the targets and may kill them or cut their dependencies: failures are
    /// counted, requests time out, subscriptions reconnect.
    external: bool,
    next: AtomicUsize,
}

impl Targets {
    fn of_server(server: &BenchServer) -> Targets {
        Targets {
            bases: vec![format!("http://{}", server.addr)],
            keys: TokenKeys::new(DEV_SECRET.as_bytes()),
            token_ttl: Duration::from_secs(3600),
            external: false,
            next: AtomicUsize::new(0),
        }
    }

    fn given(args: &Args) -> Targets {
        Targets {
            bases: args
                .targets
                .iter()
                .map(|base| base.trim_end_matches('/').to_owned())
                .collect(),
            keys: TokenKeys::new(args.jwt_secret.as_deref().unwrap_or_default().as_bytes()),
            // Valid for the whole run: a token expiring mid-run would close subscriptions.
            token_ttl: Duration::from_secs(args.seconds + 3600),
            external: true,
            next: AtomicUsize::new(0),
        }
    }

    fn token(&self, user: &str, role: Role) -> String {
        self.keys.issue(user, role, self.token_ttl)
    }

    /// The GraphQL endpoint for the next request: round-robin over the targets.
    fn graphql_url(&self) -> String {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len();
        format!("{}/graphql", self.bases[i])
    }

    fn websocket_url(&self, i: usize) -> String {
        let base = &self.bases[i % self.bases.len()];
        format!("{}/graphql/ws", base.replacen("http", "ws", 1))
    }
}

/// The catalogue orders draw from: `uniform` spreads them over 50,000 SKUs with ample stock;
/// `hot` sends 90% of lines to 5 SKUs whose stock runs out during the run (so orders are also
/// rejected, and overselling would show); `one-hot` puts one unit of the same SKU, whose stock
/// lasts, in every order (every check locks that one row), beside 0-2 uniform lines.
#[derive(Clone, Copy, PartialEq)]
enum Catalogue {
    Uniform,
    Hot,
    OneHot,
}

const UNIFORM_SKUS: usize = 50_000;
const HOT_SKUS: usize = 5;
const ONE_HOT_SKU: &str = "HOT-ONE";

impl Catalogue {
    fn named(name: &str) -> Catalogue {
        match name {
            "hot" => Catalogue::Hot,
            "one-hot" => Catalogue::OneHot,
            _ => Catalogue::Uniform,
        }
    }

    fn items(&self) -> Vec<(String, String, i32, i32)> {
        let mut items: Vec<_> = (0..UNIFORM_SKUS)
            .map(|i| (format!("SKU-{i:05}"), format!("Item {i}"), 1_000_000, 10))
            .collect();
        match self {
            Catalogue::Uniform => {}
            Catalogue::Hot => items.extend(
                (0..HOT_SKUS).map(|i| (format!("HOT-{i}"), format!("Hot {i}"), 2_000, 100)),
            ),
            Catalogue::OneHot => items.push((
                ONE_HOT_SKU.to_owned(),
                "The hot one".to_owned(),
                100_000_000,
                100,
            )),
        }
        items
    }

    /// 1 to 3 lines of 1 to 3 units each (`one-hot`: one unit of the hot SKU first).
    fn order_lines(&self) -> Value {
        let lines = fastrand::usize(1..=3);
        let mut skus = Vec::with_capacity(lines);
        if *self == Catalogue::OneHot {
            skus.push(ONE_HOT_SKU.to_owned());
        }
        while skus.len() < lines {
            let sku = if *self == Catalogue::Hot && fastrand::f64() < 0.9 {
                format!("HOT-{}", fastrand::usize(0..HOT_SKUS))
            } else {
                format!("SKU-{:05}", fastrand::usize(0..UNIFORM_SKUS))
            };
            if !skus.contains(&sku) {
                skus.push(sku);
            }
        }
        skus.into_iter()
            .map(|sku| {
                let quantity = if sku == ONE_HOT_SKU {
                    1
                } else {
                    fastrand::i32(1..=3)
                };
                json!({ "sku": sku, "quantity": quantity })
            })
            .collect()
    }
}

const PLACE: &str = "mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) { order { id status version } userErrors { code message } } }";
const READ: &str = "query($id: ID!) {
  order(id: $id) { id status version lines { sku quantity } } }";
const UPDATE: &str = "mutation($input: UpdateOrderStatusInput!) {
  updateOrderStatus(input: $input) { accepted order { id status } userErrors { code message } } }";

/// Latencies and errors per operation, and what the subscribers saw.
#[derive(Default)]
struct Recorder {
    latencies: BTreeMap<&'static str, Vec<f64>>,
    errors: BTreeMap<&'static str, usize>,
    error_samples: Vec<String>,
    placed: HashMap<String, Instant>,
    confirmed: HashMap<String, Instant>,
    rejected: usize,
    /// Cancelled while still PENDING: decided without an inventory check's outcome.
    cancelled_pending: usize,
    /// Errors by kind (see [`error_kind`]), with the first few of each.
    errors_by_kind: BTreeMap<&'static str, usize>,
    error_samples_by_kind: BTreeMap<&'static str, Vec<String>>,
    /// Subscriptions that ended (the socket closed, or the server ended the subscription) and
    /// were opened again; failed attempts to open one again.
    subscriptions_closed: usize,
    subscriptions_reopened: usize,
    subscription_failures: usize,
    /// Receives the id of each order the API acknowledged (`--acknowledged-orders`).
    acknowledged: Option<std::io::LineWriter<std::fs::File>>,
    /// Orders placed during the warm-up: their later changes are not the measured run's.
    warm_up_orders: HashSet<String>,
}

type Shared<T> = Arc<Mutex<T>>;

impl Recorder {
    /// Forgets what the warm-up recorded, keeping its orders' ids to ignore their later changes.
    fn start_measuring(&mut self) {
        let mut warm_up_orders = std::mem::take(&mut self.warm_up_orders);
        warm_up_orders.extend(self.placed.keys().cloned());
        *self = Recorder {
            acknowledged: self.acknowledged.take(),
            warm_up_orders,
            ..Recorder::default()
        };
    }

    fn record(&mut self, operation: &'static str, took: Duration, outcome: &Result<Value, String>) {
        self.latencies
            .entry(operation)
            .or_default()
            .push(took.as_secs_f64() * 1000.0);
        if let Err(error) = outcome {
            *self.errors.entry(operation).or_default() += 1;
            if self.error_samples.len() < 10 {
                self.error_samples.push(format!("{operation}: {error}"));
            }
            let kind = error_kind(error);
            *self.errors_by_kind.entry(kind).or_default() += 1;
            let samples = self.error_samples_by_kind.entry(kind).or_default();
            if samples.len() < 3 {
                samples.push(format!("{operation}: {error}"));
            }
        }
    }

    fn acknowledge(&mut self, id: &str, answered: Instant) {
        self.placed.insert(id.to_owned(), answered);
        if let Some(file) = &mut self.acknowledged {
            writeln!(file, "{id}").expect("writing the acknowledged order ids");
        }
    }
}

/// What kind of failure an error is: `transport` (no answer: refused, reset, timed out),
/// `UNAVAILABLE` (oms could not reach a dependency), `userErrors` (refused by the rules, e.g. a
/// change the order's status no longer allows), `INTERNAL`, or `other`.
fn error_kind(error: &str) -> &'static str {
    if error.starts_with("transport:") {
        "transport"
    } else if error.contains("\"UNAVAILABLE\"") {
        "UNAVAILABLE"
    } else if error.starts_with("userErrors:") {
        "userErrors"
    } else if error.contains("\"INTERNAL\"") {
        "INTERNAL"
    } else {
        "other"
    }
}

/// The field of a GraphQL response, or an error when the body has errors or userErrors.
fn field_of(body: Result<Value, String>, field: &str) -> Result<Value, String> {
    let body = body?;
    if let Some(errors) = body.get("errors") {
        return Err(format!("errors: {errors}"));
    }
    let value = body["data"][field].clone();
    match value.get("userErrors").and_then(Value::as_array) {
        Some(errors) if !errors.is_empty() => {
            Err(format!("userErrors: {}", Value::from(errors.clone())))
        }
        _ => Ok(value),
    }
}

/// One user's orders as their subscription reports them: the status, and the status a request
/// of theirs is still on its way to (so the user does not ask for another change meanwhile).
#[derive(Default)]
struct OrderBook {
    orders: HashMap<String, (String, Option<String>)>,
}

const FINAL: &[&str] = &["CANCELLED", "DELIVERED", "REJECTED"];

impl OrderBook {
    fn pick(&self, wanted: &[&str]) -> Option<(String, String)> {
        let candidates: Vec<_> = self
            .orders
            .iter()
            .filter(|(_, (status, requested))| {
                requested.is_none() && wanted.contains(&status.as_str())
            })
            .collect();
        (!candidates.is_empty()).then(|| {
            let (id, (status, _)) = candidates[fastrand::usize(0..candidates.len())];
            (id.clone(), status.clone())
        })
    }
}

fn next_status(status: &str) -> Option<&'static str> {
    match status {
        "CONFIRMED" => Some("RECEIVED"),
        "RECEIVED" => Some("OUT_FOR_DELIVERY"),
        "OUT_FOR_DELIVERY" => Some("DELIVERED"),
        _ => None,
    }
}

const CANCELLABLE: &[&str] = &["PENDING", "CONFIRMED", "RECEIVED"];
const ADVANCEABLE: &[&str] = &["CONFIRMED", "RECEIVED", "OUT_FOR_DELIVERY"];

type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a customer's WebSocket at `url` and subscribes to every change of their orders.
async fn open_subscription(url: &str, token: &str) -> Result<WebSocket, String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    socket
        .send(WsMessage::Text(init.to_string().into()))
        .await
        .map_err(|e| format!("sending connection_init: {e}"))?;
    match socket.next().await {
        Some(Ok(_)) => {}
        other => return Err(format!("no connection_ack: {other:?}")),
    }
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription { orderStatusChanged { orderId to version outcome } }"}});
    socket
        .send(WsMessage::Text(subscribe.to_string().into()))
        .await
        .map_err(|e| format!("subscribing: {e}"))?;
    Ok(socket)
}

/// Records what the subscription reports until the socket closes or the server ends the
/// subscription (an `error` or `complete` message).
async fn follow_subscription(
    mut socket: WebSocket,
    book: &Shared<OrderBook>,
    recorder: &Shared<Recorder>,
) {
    while let Some(Ok(frame)) = socket.next().await {
        let WsMessage::Text(text) = frame else {
            continue;
        };
        let now = Instant::now();
        let message: Value = serde_json::from_str(&text).unwrap_or_default();
        if message["type"] == "error" || message["type"] == "complete" {
            return;
        }
        let change = &message["payload"]["data"]["orderStatusChanged"];
        let (Some(id), Some(to)) = (change["orderId"].as_str(), change["to"].as_str()) else {
            continue;
        };
        {
            let mut book = book.lock().unwrap();
            let entry = book.orders.entry(id.to_owned()).or_default();
            entry.0 = to.to_owned();
            let settled = change["outcome"] == "REFUSED"
                || FINAL.contains(&to)
                || entry.1.as_deref() == Some(to);
            if settled {
                entry.1 = None;
            }
        }
        let mut recorder = recorder.lock().unwrap();
        if recorder.warm_up_orders.contains(id) {
            continue;
        }
        match to {
            "CONFIRMED" => {
                recorder.confirmed.insert(id.to_owned(), now);
            }
            "REJECTED" => recorder.rejected += 1,
            "CANCELLED" if !recorder.confirmed.contains_key(id) => recorder.cancelled_pending += 1,
            _ => {}
        }
    }
}

/// A customer's own WebSocket subscription to every change of their orders, on target `home`.
/// With external targets, a subscription that ends is opened again (its own target first, then
/// the next, a second apart), and the requests the user was waiting on are forgotten: their
/// outcome may have gone by meanwhile.
async fn subscribe(
    targets: Arc<Targets>,
    home: usize,
    token: String,
    book: Shared<OrderBook>,
    recorder: Shared<Recorder>,
) -> tokio::task::JoinHandle<()> {
    const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
    async fn open(targets: &Targets, target: usize, token: &str) -> Result<WebSocket, String> {
        let url = targets.websocket_url(target);
        tokio::time::timeout(OPEN_TIMEOUT, open_subscription(&url, token))
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()))
    }
    let mut socket = match open(&targets, home, &token).await {
        Ok(socket) => Some(socket),
        Err(error) if targets.external => {
            recorder.lock().unwrap().subscription_failures += 1;
            eprintln!("load: a subscription could not be opened ({error}); retrying");
            None
        }
        Err(error) => panic!("WebSocket connects: {error}"),
    };
    tokio::spawn(async move {
        let mut attempt = 0;
        loop {
            if let Some(socket) = socket.take() {
                follow_subscription(socket, &book, &recorder).await;
                if !targets.external {
                    return;
                }
                recorder.lock().unwrap().subscriptions_closed += 1;
                for entry in book.lock().unwrap().orders.values_mut() {
                    entry.1 = None;
                }
                attempt = 0;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            match open(&targets, home + attempt, &token).await {
                Ok(opened) => {
                    recorder.lock().unwrap().subscriptions_reopened += 1;
                    socket = Some(opened);
                }
                Err(_) => {
                    recorder.lock().unwrap().subscription_failures += 1;
                    attempt += 1;
                }
            }
        }
    })
}

struct User {
    client: reqwest::Client,
    targets: Arc<Targets>,
    token: String,
    staff: String,
    catalogue: Arc<Catalogue>,
    book: Shared<OrderBook>,
    recorder: Shared<Recorder>,
}

impl User {
    async fn timed(
        &self,
        operation: &'static str,
        token: &str,
        document: &str,
        field: &str,
        variables: Value,
        due: Instant,
    ) -> Result<Value, String> {
        let url = self.targets.graphql_url();
        let body = graphql(&self.client, &url, token, document, variables).await;
        let outcome = field_of(body, field);
        self.recorder
            .lock()
            .unwrap()
            .record(operation, due.elapsed(), &outcome);
        outcome
    }

    async fn place(&self, due: Instant) -> Option<String> {
        let variables = json!({ "input": { "items": self.catalogue.order_lines() } });
        let placed = self
            .timed(
                "placeOrder",
                &self.token,
                PLACE,
                "placeOrder",
                variables,
                due,
            )
            .await
            .ok()?;
        let answered = Instant::now();
        let id = placed["order"]["id"].as_str()?.to_owned();
        self.recorder.lock().unwrap().acknowledge(&id, answered);
        self.book
            .lock()
            .unwrap()
            .orders
            .entry(id.clone())
            .or_insert(("PENDING".into(), None));
        Some(id)
    }

    async fn read(&self, id: &str) {
        let variables = json!({ "id": id });
        let _ = self
            .timed(
                "order",
                &self.token,
                READ,
                "order",
                variables,
                Instant::now(),
            )
            .await;
    }

    /// Cancels (as the customer) or advances (as staff) the order, if its status allows.
    async fn change(&self, id: &str, status: &str, cancel: bool) {
        let (to, token, operation) = if cancel {
            ("CANCELLED", &self.token, "updateOrderStatus(cancel)")
        } else {
            match next_status(status) {
                Some(to) => (to, &self.staff, "updateOrderStatus(advance)"),
                None => return,
            }
        };
        if let Some(entry) = self.book.lock().unwrap().orders.get_mut(id) {
            entry.1 = Some(to.to_owned());
        }
        let variables = json!({ "input": { "orderId": id, "status": to } });
        let _ = self
            .timed(
                operation,
                token,
                UPDATE,
                "updateOrderStatus",
                variables,
                Instant::now(),
            )
            .await;
    }

    /// One action of the old profile.
    async fn act(&self) {
        match fastrand::u8(0..4) {
            0 => {
                let Some(id) = self.place(Instant::now()).await else {
                    return;
                };
                self.read(&id).await;
                if fastrand::bool() {
                    self.change(&id, "PENDING", true).await;
                } else {
                    // Advancing needs the inventory check's decision: wait for it (briefly).
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while Instant::now() < deadline {
                        let status = self
                            .book
                            .lock()
                            .unwrap()
                            .orders
                            .get(&id)
                            .map(|e| e.0.clone());
                        if status.as_deref() != Some("PENDING") {
                            if let Some(status) = status {
                                self.change(&id, &status, false).await;
                            }
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            1 => {
                let picked = {
                    let book = self.book.lock().unwrap();
                    let ids: Vec<&String> = book.orders.keys().collect();
                    (!ids.is_empty()).then(|| ids[fastrand::usize(0..ids.len())].clone())
                };
                if let Some(id) = picked {
                    self.read(&id).await;
                }
            }
            2 => {
                let picked = self.book.lock().unwrap().pick(CANCELLABLE);
                if let Some((id, status)) = picked {
                    self.change(&id, &status, true).await;
                }
            }
            _ => {
                let picked = self.book.lock().unwrap().pick(ADVANCEABLE);
                if let Some((id, status)) = picked {
                    self.change(&id, &status, false).await;
                }
            }
        }
    }
}

async fn make_users(
    targets: &Arc<Targets>,
    count: usize,
    catalogue: Arc<Catalogue>,
    recorder: &Shared<Recorder>,
) -> (Vec<Arc<User>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut client = reqwest::Client::builder().pool_max_idle_per_host(count);
    if targets.external {
        // An instance that stopped answering (frozen, cut off) must not hold a user for ever.
        client = client.timeout(Duration::from_secs(30));
    }
    let client = client.build().unwrap();
    let staff = targets.token("load-staff", Role::Staff);
    let mut users = Vec::with_capacity(count);
    let mut subscriptions = Vec::with_capacity(count);
    for i in 0..count {
        let token = targets.token(&format!("load-user-{i}"), Role::Customer);
        let book: Shared<OrderBook> = Arc::default();
        subscriptions.push(
            subscribe(
                targets.clone(),
                i,
                token.clone(),
                book.clone(),
                recorder.clone(),
            )
            .await,
        );
        users.push(Arc::new(User {
            client: client.clone(),
            targets: targets.clone(),
            token,
            staff: staff.clone(),
            catalogue: catalogue.clone(),
            book,
            recorder: recorder.clone(),
        }));
    }
    // Time for the subscriptions to register with the live feed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    (users, subscriptions)
}

/// Closed loop: every user acts, thinks 0-300 ms, and acts again until the time is up.
async fn run_profile(users: &[Arc<User>], seconds: u64) -> Duration {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = users
        .iter()
        .map(|user| {
            let user = user.clone();
            tokio::spawn(async move {
                // Spread the users' first actions over the first think time.
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..300))).await;
                while Instant::now() < deadline {
                    user.act().await;
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=300))).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// Open loop: `rate` placeOrder calls per second, due on a fixed schedule.
async fn run_open(users: &[Arc<User>], seconds: u64, rate: f64) -> Duration {
    let started = Instant::now();
    let total = (rate * seconds as f64) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let user = users[i % users.len()].clone();
        tasks.push(tokio::spawn(async move {
            user.place(due).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn summary(values: &mut [f64]) -> Value {
    values.sort_by(f64::total_cmp);
    let round = |v: f64| (v * 10.0).round() / 10.0;
    json!({
        "count": values.len(),
        "p50_ms": round(percentile(values, 0.50)),
        "p95_ms": round(percentile(values, 0.95)),
        "p99_ms": round(percentile(values, 0.99)),
        "max_ms": round(values.last().copied().unwrap_or(f64::NAN)),
    })
}

async fn run_api(args: &Args) -> Value {
    let catalogue = Arc::new(Catalogue::named(&args.catalogue));
    let server = if args.targets.is_empty() {
        Some(BenchServer::start("load", &load_flags(args)).await)
    } else {
        None
    };
    let (targets, database_url) = match &server {
        Some(server) => (Targets::of_server(server), server.database_url.clone()),
        None => (Targets::given(args), args.database_url.clone().unwrap()),
    };
    let targets = Arc::new(targets);
    let db = oms::db::Db::direct(
        sqlx::PgPool::connect(&database_url)
            .await
            .expect("connecting to the database to stock the catalogue"),
    );
    oms::db::inventory::create_many(&db, &catalogue.items())
        .await
        .expect("stocking the catalogue");
    db.close().await;

    let recorder: Shared<Recorder> = Arc::default();
    if let Some(path) = &args.acknowledged_orders {
        let file = std::fs::File::create(path).expect("creating the acknowledged orders file");
        recorder.lock().unwrap().acknowledged = Some(std::io::LineWriter::new(file));
    }
    let users_wanted = if args.mode == "open" {
        args.users.min(200)
    } else {
        args.users
    };
    let (users, subscriptions) =
        make_users(&targets, users_wanted, catalogue.clone(), &recorder).await;
    if args.warm_up_seconds > 0 {
        warm_up(args, &users, &recorder, &database_url).await;
    }
    let before = server
        .as_ref()
        .map(|server| (server.rss_kib(), CpuReading::now(server)));
    if targets.external {
        eprintln!(
            "load: {} users running for {} s against {}",
            users.len(),
            args.seconds,
            targets.bases.join(", ")
        );
    }
    let elapsed = match args.mode.as_str() {
        "open" => run_open(&users, args.seconds, args.rate).await,
        _ => run_profile(&users, args.seconds).await,
    };
    let mut own_server = match (&server, before) {
        (Some(server), Some((rss_before, cpu_before))) => {
            own_server_figures(server, &recorder, rss_before, cpu_before).await
        }
        _ => json!({ "targets": targets.bases }),
    };
    for subscription in subscriptions {
        subscription.abort();
    }
    if let Some(server) = server {
        let (audit_passed, audit) = audit_and_stop(server).await;
        own_server["audit_passed"] = json!(audit_passed);
        own_server["audit"] = json!(audit);
    }

    let mut recorder = recorder.lock().unwrap();
    let requests: usize = recorder.latencies.values().map(Vec::len).sum();
    let errors: usize = recorder.errors.values().sum();
    let mut confirm_delays: Vec<f64> = recorder
        .confirmed
        .iter()
        .filter_map(|(id, confirmed)| {
            let placed = recorder.placed.get(id)?;
            Some(confirmed.saturating_duration_since(*placed).as_secs_f64() * 1000.0)
        })
        .collect();
    let first_placed = recorder.placed.values().min().copied();
    let last_confirmed = recorder.confirmed.values().max().copied();
    let confirmed_per_second = match (first_placed, last_confirmed) {
        (Some(first), Some(last)) if last > first => {
            recorder.confirmed.len() as f64 / last.duration_since(first).as_secs_f64()
        }
        _ => 0.0,
    };
    let mut every_latency: Vec<f64> = recorder.latencies.values().flatten().copied().collect();
    let mut all_requests = summary(&mut every_latency);
    all_requests["errors"] = json!(errors);
    let errors_by_operation = recorder.errors.clone();
    let operations: serde_json::Map<String, Value> = recorder
        .latencies
        .iter_mut()
        .map(|(operation, values)| {
            let mut figures = summary(values);
            figures["errors"] = json!(errors_by_operation.get(operation).copied().unwrap_or(0));
            (operation.to_string(), figures)
        })
        .collect();
    let mut report = json!({
        "mode": args.mode,
        "catalogue": args.catalogue,
        "users": users_wanted,
        "offered_rate": (args.mode == "open").then_some(args.rate),
        "seconds": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
        "requests": requests,
        "requests_per_second": (requests as f64 / elapsed.as_secs_f64()).round(),
        "errors": errors,
        "error_rate_percent": if requests == 0 { 0.0 } else { errors as f64 * 100.0 / requests as f64 },
        "error_samples": recorder.error_samples,
        "operations": operations,
        "all_requests": all_requests,
        "placed": recorder.placed.len(),
        "confirmed": recorder.confirmed.len(),
        "rejected": recorder.rejected,
        "confirmed_per_second": confirmed_per_second.round(),
        "placed_to_confirmed": summary(&mut confirm_delays),
        "errors_by_kind": recorder.errors_by_kind,
        "error_samples_by_kind": recorder.error_samples_by_kind,
        "subscriptions": {
            "closed": recorder.subscriptions_closed,
            "reopened": recorder.subscriptions_reopened,
            "failed_attempts": recorder.subscription_failures,
        },
    });
    if let (Value::Object(report), Value::Object(own_server)) = (&mut report, own_server) {
        report.extend(own_server);
    }
    report
}

/// Waits until every order placed so far was decided, as the subscribers saw it (30 s at most).
async fn wait_for_decisions(recorder: &Shared<Recorder>) {
    let drain_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (placed, decided) = {
            let r = recorder.lock().unwrap();
            (
                r.placed.len(),
                r.confirmed.len() + r.rejected + r.cancelled_pending,
            )
        };
        if decided >= placed || Instant::now() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the load unmeasured for `--warm-up-seconds`, waits for its orders' decisions, then
/// refreshes the planner's statistics. A fresh database's tables start empty, and PostgreSQL
/// keeps the generic plans it made for them in the first second (scans of a few rows) for as long
/// as nothing analyzes them; this machine's PostgreSQL runs without autovacuum, which in a
/// deployment analyzes a growing table on its own. The measured run then starts from tables
/// with orders in them and statistics that say so, as a running service's do. oms's own
/// histograms (the pipeline stages) count from its start, so they include the warm-up.
async fn warm_up(
    args: &Args,
    users: &[Arc<User>],
    recorder: &Shared<Recorder>,
    database_url: &str,
) {
    match args.mode.as_str() {
        "open" => run_open(users, args.warm_up_seconds, args.rate).await,
        _ => run_profile(users, args.warm_up_seconds).await,
    };
    wait_for_decisions(recorder).await;
    recorder.lock().unwrap().start_measuring();
    let db = oms::db::Db::direct(
        sqlx::PgPool::connect(database_url)
            .await
            .expect("connecting to the database to refresh its statistics"),
    );
    oms::db::refresh_planner_statistics(&db)
        .await
        .expect("refreshing the planner's statistics");
    db.close().await;
}

/// What the load's own server did: its memory and CPU over the run (once the last inventory
/// checks landed, as the subscribers saw them) and where its time went, from its metrics.
async fn own_server_figures(
    server: &BenchServer,
    recorder: &Shared<Recorder>,
    rss_before: u64,
    cpu_before: CpuReading,
) -> Value {
    wait_for_decisions(recorder).await;
    let cpu_after = CpuReading::now(server);
    let rss_after = server.rss_kib();
    // Where the time went inside oms: consumer and relay timings, backlog, lag.
    let exposition = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let stages = pipeline_stages(&exposition);
    let internals: Vec<String> = exposition
        .lines()
        .filter(|line| {
            !line.starts_with('#')
                && (line.contains("_sum")
                    || line.contains("_count")
                    || line.contains("lag")
                    || line.contains("backlog"))
        })
        .map(str::to_owned)
        .collect();
    let placed = recorder.lock().unwrap().placed.len();
    json!({
        "server_rss_mib": { "before": rss_before / 1024, "after": rss_after / 1024 },
        "cpu": cpu_before.per_order_since(&cpu_after, placed),
        "pipeline_stages": stages,
        "oms_metrics": internals,
    })
}

/// The stages between placing an order and its subscribers hearing of it, from oms's
/// histograms: for each stage (and topic), how many passed and the bucket bounds within which
/// half and 99% of them fell.
fn pipeline_stages(exposition: &str) -> Value {
    const STAGES: [&str; 4] = [
        "oms_outbox_wait_seconds",
        "oms_event_transit_seconds",
        "oms_event_handling_delay_seconds",
        "oms_consumer_processing_seconds",
    ];
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in exposition.lines() {
        let Some((series, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = series.split_once("_bucket{") else {
            continue;
        };
        if !STAGES.contains(&name) {
            continue;
        }
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|pair| pair.strip_prefix(&format!("{key}=\"")))
                .map(|value| value.trim_end_matches(['"', '}']).to_owned())
        };
        let (Some(le), Ok(count)) = (label("le"), count.parse::<f64>()) else {
            continue;
        };
        let stage = match label("topic") {
            Some(topic) => format!("{} {topic}", name.trim_start_matches("oms_")),
            None => name.trim_start_matches("oms_").to_owned(),
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::INFINITY)
        };
        buckets.entry(stage).or_default().push((bound, count));
    }
    let stages: serde_json::Map<String, Value> = buckets
        .into_iter()
        .filter_map(|(stage, mut bounds)| {
            bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total = bounds.last()?.1;
            if total == 0.0 {
                return None;
            }
            let within = |share: f64| {
                bounds
                    .iter()
                    .find(|(_, count)| *count >= share * total)
                    .map(|(bound, _)| if bound.is_finite() { json!(bound * 1000.0) } else { json!("above the last bucket") })
            };
            Some((
                stage,
                json!({ "count": total, "p50_ms_at_most": within(0.5), "p99_ms_at_most": within(0.99) }),
            ))
        })
        .collect();
    Value::Object(stages)
}

/// `oms check` on the load's own server's database (no oversold stock, the ledger balances),
/// then stops the server: whether it passed, and what it printed.
async fn audit_and_stop(server: BenchServer) -> (bool, String) {
    let check = tokio::process::Command::new(
        std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("oms"),
    )
    .args(["check", "--database-url", &server.database_url])
    .output()
    .await
    .unwrap();
    let audit_passed = check.status.success();
    let audit = String::from_utf8_lossy(&check.stdout).trim().to_owned()
        + String::from_utf8_lossy(&check.stderr).trim();
    server.stop().await;
    (audit_passed, audit)
}

/// The broker alone: produce `messages` of oms's size, consume them back, then time single
/// messages produce -> consume.
async fn run_broker(args: &Args) -> Value {
    let brokers = support::brokers();
    let topic = format!(
        "load-broker-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let admin: rdkafka::admin::AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                &topic,
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        // oms's own fetch wait (KAFKA_FETCH_WAIT_MAX_MS, which scripts/infra.sh sets to 10 for
        // tansu; oms's default, 500, is Apache Kafka's), so the round trip is the one an oms
        // consumer sees.
        .set(
            "fetch.wait.max.ms",
            std::env::var("KAFKA_FETCH_WAIT_MAX_MS").unwrap_or_else(|_| "500".into()),
        )
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    // An OrderPlaced event as oms writes it: about 400 bytes.
    let payload = json!({
        "eventId": uuid::Uuid::now_v7(), "schemaVersion": 1, "orderId": uuid::Uuid::now_v7(),
        "version": 1, "occurredAt": chrono::Utc::now(), "type": "OrderPlaced",
        "data": { "userId": "load-user-123", "lines": [
            { "sku": "SKU-01234", "quantity": 2 }, { "sku": "SKU-04321", "quantity": 1 },
            { "sku": "SKU-11111", "quantity": 3 } ] },
        "padding": "x".repeat(120),
    })
    .to_string();

    let started = Instant::now();
    let sends: Vec<_> = (0..args.messages)
        .map(|i| {
            let key = i.to_string();
            producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                .unwrap()
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    let produce_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut consumed = 0;
    while consumed < args.messages {
        consumer.recv().await.unwrap();
        consumed += 1;
    }
    let consume_seconds = started.elapsed().as_secs_f64();
    let mut round_trips = Vec::new();
    for i in 0..200 {
        let sent = Instant::now();
        let key = format!("rt-{i}");
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        loop {
            let message = consumer.recv().await.unwrap();
            if message.key() == Some(key.as_bytes()) {
                break;
            }
        }
        round_trips.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    json!({
        "mode": "broker",
        "message_bytes": payload.len(),
        "messages": args.messages,
        "produce_per_second": (args.messages as f64 / produce_seconds).round(),
        "consume_per_second": (args.messages as f64 / consume_seconds).round(),
        "produce_to_consume": summary(&mut round_trips),
    })
}

/// The same SQL as oms's `order(id) { id status version lines { sku quantity } }`, behind a plain
/// axum + sqlx handler: the reference for oms's own overhead.
async fn plain_order_handler(
    axum::extract::State(pool): axum::extract::State<sqlx::PgPool>,
    axum::extract::Path(id): axum::extract::Path<uuid::Uuid>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Ok(Some(order)) = oms::db::orders::find(&pool, id).await else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    let lines = oms::db::orders::lines_of(&pool, &[id])
        .await
        .unwrap_or_default();
    axum::Json(json!({ "data": { "order": {
        "id": order.id, "status": order.status.as_str(), "version": order.version,
        "lines": lines.iter().map(|l| json!({ "sku": l.sku, "quantity": l.quantity })).collect::<Vec<_>>(),
    } } }))
    .into_response()
}

/// Runs `clients` loops of `request` for `seconds`; requests/s and latency.
async fn hammer<F, Fut>(clients: usize, seconds: u64, request: F) -> Value
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let request = request.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                let mut i = client;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    if request(i).await.is_err() {
                        errors += 1;
                    }
                    latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                    i += clients;
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut figures = summary(&mut latencies);
    figures["requests_per_second"] = json!((latencies.len() as f64 / elapsed).round());
    figures["errors"] = json!(errors);
    figures
}

/// Flags every oms of the load runs gets: the rate limit and connection limit are for
/// people, not for a load generator acting as hundreds of them.
fn load_flags(args: &Args) -> Vec<String> {
    let mut flags = vec![
        "--max-connections-per-user=1000".to_owned(),
        "--mutations-per-second=100000".to_owned(),
        "--mutation-burst=100000".to_owned(),
    ];
    flags.extend(args.serve_flags.iter().cloned());
    flags
}

async fn run_read(args: &Args) -> Value {
    let server = BenchServer::start("read", &load_flags(args)).await;
    let db = oms::db::Db::direct(sqlx::PgPool::connect(&server.database_url).await.unwrap());
    let catalogue = Catalogue::Uniform;
    oms::db::inventory::create_many(&db, &catalogue.items())
        .await
        .unwrap();
    let staff = server.token("read-staff", Role::Staff);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.users)
        .build()
        .unwrap();
    let url = server.graphql_url();
    let mut ids = Vec::new();
    for _ in 0..1_000 {
        let variables = json!({ "input": { "items": catalogue.order_lines() } });
        let placed = field_of(
            graphql(&client, &url, &staff, PLACE, variables).await,
            "placeOrder",
        )
        .expect("placing the orders to read");
        ids.push(placed["order"]["id"].as_str().unwrap().to_owned());
    }
    let ids = Arc::new(ids);

    // The plain handler, on its own runtime thread like a separate service, on the same pool size.
    let plain_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        .connect(&server.database_url)
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let plain_addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let app = axum::Router::new()
                    .route("/orders/{id}", axum::routing::get(plain_order_handler))
                    .with_state(plain_pool);
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            })
    });

    let oms_figures = {
        let (client, url, staff, ids) = (client.clone(), url.clone(), staff.clone(), ids.clone());
        hammer(args.users, args.seconds, move |i| {
            let (client, url, staff, ids) =
                (client.clone(), url.clone(), staff.clone(), ids.clone());
            async move {
                let variables = json!({ "id": ids[i % ids.len()] });
                field_of(
                    graphql(&client, &url, &staff, READ, variables).await,
                    "order",
                )
                .map(drop)
            }
        })
        .await
    };
    let plain_figures = {
        let (client, ids) = (client.clone(), ids.clone());
        hammer(args.users, args.seconds, move |i| {
            let (client, ids) = (client.clone(), ids.clone());
            async move {
                let response = client
                    .get(format!("http://{plain_addr}/orders/{}", ids[i % ids.len()]))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let body: Value = response.json().await.map_err(|e| e.to_string())?;
                body["data"]["order"]["id"]
                    .as_str()
                    .map(drop)
                    .ok_or("no order".to_owned())
            }
        })
        .await
    };
    server.stop().await;
    let ratio = oms_figures["requests_per_second"].as_f64().unwrap()
        / plain_figures["requests_per_second"].as_f64().unwrap();
    json!({
        "mode": "read",
        "clients": args.users,
        "oms_graphql": oms_figures,
        "plain_axum_sqlx": plain_figures,
        "oms_share_of_plain_percent": (ratio * 1000.0).round() / 10.0,
    })
}

fn print_table(report: &Value) {
    if report["mode"] == "read" {
        for (name, figures) in [
            ("oms order(id)", &report["oms_graphql"]),
            ("plain axum + sqlx", &report["plain_axum_sqlx"]),
        ] {
            println!(
                "{name:<20} {} requests/s with {} clients; p50 {} ms, p95 {} ms, p99 {} ms; errors {}",
                figures["requests_per_second"], report["clients"], figures["p50_ms"],
                figures["p95_ms"], figures["p99_ms"], figures["errors"]
            );
        }
        println!(
            "oms reaches {}% of the plain handler's rate",
            report["oms_share_of_plain_percent"]
        );
        return;
    }
    if report["mode"] == "broker" {
        println!(
            "broker: {} messages of {} bytes; produce {}/s, consume {}/s; one message produce->consume p50 {} ms, p99 {} ms",
            report["messages"], report["message_bytes"], report["produce_per_second"],
            report["consume_per_second"], report["produce_to_consume"]["p50_ms"],
            report["produce_to_consume"]["p99_ms"]
        );
        return;
    }
    println!(
        "{} mode, {} catalogue, {} users{}: {} requests in {} s = {} requests/s, errors {} ({:.3}%)",
        report["mode"].as_str().unwrap(),
        report["catalogue"].as_str().unwrap(),
        report["users"],
        report["offered_rate"].as_f64().map(|r| format!(", offered {r} placeOrder/s")).unwrap_or_default(),
        report["requests"],
        report["seconds"],
        report["requests_per_second"],
        report["errors"],
        report["error_rate_percent"].as_f64().unwrap_or(0.0),
    );
    println!(
        "{:<28} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "operation", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"
    );
    let row = |name: &str, figures: &Value| {
        println!(
            "{:<28} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7}",
            name,
            figures["count"],
            figures["p50_ms"],
            figures["p95_ms"],
            figures["p99_ms"],
            figures["max_ms"],
            figures
                .get("errors")
                .map(Value::to_string)
                .unwrap_or("-".into()),
        )
    };
    for (operation, figures) in report["operations"].as_object().unwrap() {
        row(operation, figures);
    }
    if report["operations"].as_object().unwrap().len() > 1 {
        row("all requests", &report["all_requests"]);
    }
    row("placed -> CONFIRMED (live)", &report["placed_to_confirmed"]);
    if report.get("targets").is_some() {
        print_target_outcomes(report);
        return;
    }
    println!(
        "orders placed {}, confirmed {}, rejected {}; confirmed orders/s {}; server RSS {} -> {} MiB; audit {}",
        report["placed"], report["confirmed"], report["rejected"], report["confirmed_per_second"],
        report["server_rss_mib"]["before"], report["server_rss_mib"]["after"],
        if report["audit_passed"] == true { "passed (no oversold stock, ledger balances)" } else { "FAILED" },
    );
    println!(
        "CPU from the first request until every order was decided: machine {}% busy, {} CPU-ms per placed order (oms itself {})",
        report["cpu"]["machine_busy_percent"], report["cpu"]["machine_cpu_ms_per_order"],
        report["cpu"]["oms_cpu_ms_per_order"],
    );
    if let Some(stages) = report["pipeline_stages"].as_object() {
        println!(
            "{:<52} {:>8} {:>10} {:>10}",
            "stage (oms's histograms)", "count", "p50 ms ≤", "p99 ms ≤"
        );
        for (stage, figures) in stages {
            println!(
                "{:<52} {:>8} {:>10} {:>10}",
                stage, figures["count"], figures["p50_ms_at_most"], figures["p99_ms_at_most"]
            );
        }
    }
    if report["audit_passed"] != true {
        println!("{}", report["audit"].as_str().unwrap_or_default());
    }
    for sample in report["error_samples"].as_array().unwrap() {
        println!("  error: {}", sample.as_str().unwrap_or_default());
    }
}

/// The end of the table for a run against `--target` instances: what the users saw of the
/// faults. Decisions and the audit are the caller's, from the database.
fn print_target_outcomes(report: &Value) {
    println!(
        "orders acknowledged {}; seen live by the subscribers: confirmed {}, rejected {}",
        report["placed"], report["confirmed"], report["rejected"],
    );
    let kinds: Vec<String> = report["errors_by_kind"]
        .as_object()
        .map(|kinds| {
            kinds
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "errors by kind: {}",
        if kinds.is_empty() {
            "none".to_owned()
        } else {
            kinds.join(", ")
        }
    );
    println!(
        "subscriptions ended and reopened {} / {} times; failed attempts to reopen {}",
        report["subscriptions"]["closed"],
        report["subscriptions"]["reopened"],
        report["subscriptions"]["failed_attempts"],
    );
    if let Some(kinds) = report["error_samples_by_kind"].as_object() {
        for (kind, samples) in kinds {
            for sample in samples.as_array().into_iter().flatten() {
                println!("  {kind}: {}", sample.as_str().unwrap_or_default());
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let args = args();
    let report = match args.mode.as_str() {
        "broker" => run_broker(&args).await,
        "read" => run_read(&args).await,
        "profile" | "open" => run_api(&args).await,
        other => panic!("unknown mode {other}: profile, open, broker or read"),
    };
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
}
