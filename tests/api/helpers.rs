//! The test harness: [`TestApp::spawn`] starts oms in-process on 127.0.0.1:0 against the real
//! PostgreSQL (a fresh database per test) and the real broker (fresh topics and consumer groups
//! per test), so tests run in parallel. Clients talk to it only through its public API: GraphQL
//! over HTTP and over WebSocket.
//!
//! Environment: `DATABASE_URL` (any database on the server; tests create their own) and
//! `KAFKA_BROKERS`. `scripts/test` sets both after starting the services.

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use oms::auth::{Role, TokenKeys};
use oms::config::ServeArgs;
use oms::db::Db;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Once};
use std::time::Duration;
use std::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// Long enough for two broker hops and a relay wake-up on a busy 2-core machine.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

/// Names shared by instances that run against the same database and broker.
#[derive(Clone)]
pub struct Deployment {
    /// The database, reached directly: the tests' own queries always go here.
    pub database_url: String,
    /// The same database through a transaction-mode pooler, where oms reaches it that way: set
    /// by `TEST_POOLED_DATABASE_URL` (`scripts/test`'s pooled run).
    pub pooled_database_url: Option<String>,
    pub suffix: String,
    /// Drops the database when the last copy of the deployment goes, even when its test
    /// panicked before dropping it itself.
    _database_guard: Arc<DropsDatabase>,
}

/// Drops a test database (if it still exists) when dropped.
struct DropsDatabase(String);

impl Drop for DropsDatabase {
    fn drop(&mut self) {
        let url = self.0.clone();
        // Drop cannot await, and may run inside the test's runtime: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the database");
            runtime.block_on(async {
                use sqlx::migrate::MigrateDatabase;
                let _ = sqlx::Postgres::force_drop_database(&url).await;
            });
        });
        let _ = dropped.join();
    }
}

/// `url` with its database name replaced.
fn with_database(url: &str, database: &str) -> String {
    let (server, _) = url.rsplit_once('/').expect("the URL has a database name");
    format!("{server}/{database}")
}

impl Deployment {
    pub fn new() -> Self {
        let base = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let suffix = Uuid::new_v4().simple().to_string()[..12].to_owned();
        let database = format!("oms_test_{suffix}");
        let database_url = with_database(&base, &database);
        Deployment {
            _database_guard: Arc::new(DropsDatabase(database_url.clone())),
            database_url,
            pooled_database_url: std::env::var("TEST_POOLED_DATABASE_URL")
                .ok()
                .map(|pooled| with_database(&pooled, &database)),
            suffix,
        }
    }

    /// The database's name.
    pub fn database_name(&self) -> &str {
        self.database_url
            .rsplit('/')
            .next()
            .expect("the URL has a database name")
    }

    /// Creates and migrates the deployment's database, for tests that call oms's services
    /// directly; pair with [`Deployment::drop_database`].
    pub async fn migrated_db(&self) -> Db {
        oms::db::create_database_if_missing(&self.database_url)
            .await
            .unwrap();
        let pool = PgPool::connect(&self.database_url).await.unwrap();
        oms::db::MIGRATOR.run(&pool).await.unwrap();
        Db::direct(pool)
    }

    pub async fn drop_database(self, db: Db) {
        db.close().await;
        use sqlx::migrate::MigrateDatabase;
        let _ = sqlx::Postgres::force_drop_database(&self.database_url).await;
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub deployment: Deployment,
    pub pool: PgPool,
    http: reqwest::Client,
    keys: TokenKeys,
    app: Option<oms::app::RunningApp>,
}

fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Starts an oms instance of `deployment` with extra `oms serve` flags; it may run without the API.
pub async fn start_instance(deployment: &Deployment, extra: &[&str]) -> oms::app::RunningApp {
    init_logging();
    let app = oms::app::start(serve_args(deployment, extra))
        .await
        .expect("oms starts");
    // Tests produce to the topics and expect consumers to run, so wait for the Kafka side.
    tokio::time::timeout(Duration::from_secs(60), app.kafka_started())
        .await
        .expect("oms reaches the broker within a minute");
    app
}

/// The `oms serve` arguments of an instance of `deployment` (see [`serve_flags`]).
pub fn serve_args(deployment: &Deployment, extra: &[&str]) -> ServeArgs {
    let mut args = vec!["oms".to_owned()];
    args.extend(serve_flags(deployment, extra));
    Cli::try_parse_from(args).expect("test flags parse").serve
}

/// The `oms serve` flags of an instance of `deployment`; `extra` flags (`--name=value`) replace
/// the defaults of the same name.
pub fn serve_flags(deployment: &Deployment, extra: &[&str]) -> Vec<String> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let s = &deployment.suffix;
    let database = match &deployment.pooled_database_url {
        Some(pooled) => vec![
            format!("--database-url={pooled}"),
            "--database-pooler=transaction".to_owned(),
            format!("--database-direct-url={}", deployment.database_url),
        ],
        None => vec![format!("--database-url={}", deployment.database_url)],
    };
    let defaults = [
        "--listen-addr=127.0.0.1:0".to_owned(),
        format!("--jwt-secret={SECRET}"),
        "--database-max-connections=10".to_owned(),
        format!("--kafka-brokers={brokers}"),
        format!("--kafka-topic-inventory=inventory-{s}"),
        format!("--kafka-topic-orders=orders-{s}"),
        format!("--kafka-topic-order-status=order-status-{s}"),
        format!("--kafka-topic-stock-levels=stock-levels-{s}"),
        format!("--kafka-group-prefix=oms-{s}"),
        "--kafka-topic-partitions=2".to_owned(),
        // tansu loses the rest of a multi-record batch when a consumer resumes inside it.
        "--kafka-batch-max-messages=1".to_owned(),
        "--shutdown-grace-secs=5".to_owned(),
        // Tokens here are issued on this machine's clock, so expiry tests need not wait out a
        // skew meant for other issuers.
        "--jwt-clock-skew-secs=0".to_owned(),
    ];
    let name = |flag: &str| flag.split('=').next().unwrap_or_default().to_owned();
    let mut overridden: Vec<String> = extra.iter().map(|flag| name(flag)).collect();
    // Tokens from an identity provider replace the shared secret.
    if overridden
        .iter()
        .any(|flag| flag == "--jwt-issuer" || flag == "--jwt-jwks-url")
    {
        overridden.push("--jwt-secret".to_owned());
    }
    defaults
        .into_iter()
        .chain(database)
        .filter(|flag| !overridden.contains(&name(flag)))
        .chain(extra.iter().map(|flag| flag.to_string()))
        .collect()
}

impl TestApp {
    /// A fresh deployment with one instance running everything.
    pub async fn spawn() -> TestApp {
        Self::spawn_in(Deployment::new(), &[]).await
    }

    /// An instance of `deployment`, with extra `oms serve` flags.
    pub async fn spawn_in(deployment: Deployment, extra: &[&str]) -> TestApp {
        let app = start_instance(&deployment, extra).await;
        let pool = PgPool::connect(&deployment.database_url)
            .await
            .expect("test database reachable");
        TestApp {
            addr: app.addr.expect("the API runs"),
            deployment,
            pool,
            http: reqwest::Client::new(),
            keys: TokenKeys::new(SECRET.as_bytes()),
            app: Some(app),
        }
    }

    /// Drives an oms that already listens at `addr` (a process the test started) once its
    /// database exists.
    pub async fn attach(addr: std::net::SocketAddr, deployment: Deployment) -> TestApp {
        let pool = PgPool::connect(&deployment.database_url)
            .await
            .expect("test database reachable");
        TestApp {
            addr,
            deployment,
            pool,
            http: reqwest::Client::new(),
            keys: TokenKeys::new(SECRET.as_bytes()),
            app: None,
        }
    }

    /// The deployment's database as oms's own functions take it (directly, not pooled).
    pub fn db(&self) -> Db {
        Db::direct(self.pool.clone())
    }

    pub fn token(&self, user: &str, role: Role) -> String {
        self.keys.issue(user, role, Duration::from_secs(3600))
    }

    /// A token of `user` that expires after `ttl`.
    pub fn short_lived_token(&self, user: &str, role: Role, ttl: Duration) -> String {
        self.keys.issue(user, role, ttl)
    }

    /// A token of `user` with more claims, e.g. the profile claims `name`, `email`,
    /// `phone_number`.
    pub fn token_with_claims(&self, user: &str, role: Role, claims: &[(&str, &str)]) -> String {
        self.keys
            .issue_with_claims(user, role, Duration::from_secs(3600), claims)
    }

    pub fn customer(&self, user: &str) -> String {
        self.token(user, Role::Customer)
    }

    pub fn staff(&self) -> String {
        self.token("staff-1", Role::Staff)
    }

    /// POSTs a GraphQL request; returns the HTTP status and the JSON body.
    pub async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("http://{}/graphql", self.addr))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// POSTs a GraphQL request that must succeed without top-level errors; returns `data`.
    pub async fn query(&self, token: &str, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(Some(token), query, variables).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.get("errors").is_none(), "unexpected errors: {body}");
        body["data"].clone()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await
            .expect("HTTP request")
    }

    /// Sets an item's stock as staff.
    pub async fn stock(&self, sku: &str, quantity: i32) {
        self.set_item(sku, quantity, None).await;
    }

    /// Sets an item's stock, and its low-stock threshold when given, as staff.
    pub async fn set_item(&self, sku: &str, quantity: i32, low_stock_threshold: Option<i32>) {
        let data = self
            .query(
                &self.staff(),
                "mutation($input: UpsertInventoryItemInput!) {
                   upsertInventoryItem(input: $input) { item { sku } userErrors { code message } }
                 }",
                json!({ "input": {
                    "sku": sku,
                    "name": format!("Item {sku}"),
                    "quantity": quantity,
                    "lowStockThreshold": low_stock_threshold,
                } }),
            )
            .await;
        assert_eq!(
            data["upsertInventoryItem"]["userErrors"],
            json!([]),
            "{data}"
        );
    }

    pub async fn stock_of(&self, sku: &str) -> i64 {
        let data = self
            .query(
                &self.staff(),
                "query($sku: String!) { inventoryItem(sku: $sku) { quantity } }",
                json!({ "sku": sku }),
            )
            .await;
        data["inventoryItem"]["quantity"]
            .as_i64()
            .unwrap_or_else(|| panic!("no item {sku}: {data}"))
    }

    /// Places an order of `(sku, quantity)` lines; returns the whole payload.
    pub async fn place_order(
        &self,
        token: &str,
        lines: &[(&str, i32)],
        key: Option<&str>,
    ) -> Value {
        let items: Vec<Value> = lines
            .iter()
            .map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity }))
            .collect();
        let data = self
            .query(
                token,
                "mutation($input: PlaceOrderInput!) {
                   placeOrder(input: $input) {
                     order { id userId status version lines { sku quantity } }
                     userErrors { field code message }
                   }
                 }",
                json!({ "input": { "items": items, "idempotencyKey": key } }),
            )
            .await;
        data["placeOrder"].clone()
    }

    /// Places an order that must be accepted; returns its id.
    pub async fn place_order_id(&self, token: &str, lines: &[(&str, i32)]) -> String {
        let payload = self.place_order(token, lines, None).await;
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
        payload["order"]["id"]
            .as_str()
            .expect("order id")
            .to_owned()
    }

    pub async fn update_status(&self, token: &str, order_id: &str, status: &str) -> Value {
        let data = self
            .query(
                token,
                "mutation($input: UpdateOrderStatusInput!) {
                   updateOrderStatus(input: $input) {
                     accepted order { id status } userErrors { field code message }
                   }
                 }",
                json!({ "input": { "orderId": order_id, "status": status } }),
            )
            .await;
        data["updateOrderStatus"].clone()
    }

    /// Subscribes to one order's whole history and live changes.
    pub async fn follow_order(&self, token: &str, order_id: &str) -> Subscription {
        let mut subscription = Subscription::connect(self, token, Protocol::TransportWs).await;
        subscription
            .start(
                "subscription($id: ID!) {
                   orderStatusChanged(orderId: $id, afterVersion: 0) {
                     orderId from to reason version outcome requestedStatus
                   }
                 }",
                json!({ "id": order_id }),
            )
            .await;
        subscription
    }

    /// Follows an order until it reaches `status`; returns every change seen on the way.
    pub async fn wait_for_status(&self, token: &str, order_id: &str, status: &str) -> Vec<Value> {
        let mut subscription = self.follow_order(token, order_id).await;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let Ok(change) = tokio::time::timeout_at(deadline, subscription.next_data()).await
            else {
                let stored: Option<String> =
                    sqlx::query_scalar("select status::text from orders where id = $1::uuid")
                        .bind(order_id)
                        .fetch_optional(&self.pool)
                        .await
                        .unwrap();
                panic!(
                    "order {order_id} did not reach {status} within {EVENT_TIMEOUT:?}; \
                     changes seen: {seen:?}; stored status: {stored:?}"
                );
            };
            let applied = change["outcome"] == "APPLIED";
            let reached = applied && change["to"] == status;
            let terminal = applied
                && change["to"]
                    .as_str()
                    .and_then(|to| to.parse::<oms::domain::status::OrderStatus>().ok())
                    .is_some_and(|to| to.is_final());
            seen.push(change);
            if reached {
                return seen;
            }
            assert!(
                !terminal,
                "order {order_id} ended without reaching {status}: {seen:?}"
            );
        }
    }

    /// Waits until the orders consumer has applied `count` requested status changes.
    pub async fn wait_for_applied_requests(&self, count: i64) {
        let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let applied: i64 = sqlx::query_scalar(
                "select count(*) from processed_events where consumer = 'orders'",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if applied >= count {
                assert_eq!(
                    applied, count,
                    "more requests were applied than were queued"
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {applied} of {count} requests applied"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails unless the stored state meets every invariant (`oms check`).
    pub async fn assert_invariants_hold(&self) {
        let report = oms::service::audit::audit(&self.db()).await.unwrap();
        assert!(report.violations.is_empty(), "{:#?}", report.violations);
    }

    /// How many history entries each order has, sorted.
    pub async fn history_lengths(&self) -> Vec<i64> {
        sqlx::query_scalar("select count(*) from order_status_history group by order_id order by 1")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// How many orders exist in the database at all.
    pub async fn order_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from orders")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Where the operator endpoints listen, when not beside the API.
    pub fn ops_addr(&self) -> Option<std::net::SocketAddr> {
        self.app.as_ref().and_then(|app| app.ops_addr)
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
        self.pool.close().await;
    }

    /// Stops the instance and drops its database.
    pub async fn stop_and_drop_database(self) {
        let url = self.deployment.database_url.clone();
        self.stop().await;
        use sqlx::migrate::MigrateDatabase;
        let _ = sqlx::Postgres::force_drop_database(&url).await;
    }
}

#[derive(Copy, Clone)]
pub enum Protocol {
    /// `graphql-transport-ws` (graphql-ws, Apollo, urql).
    TransportWs,
    /// The legacy `graphql-ws` (subscriptions-transport-ws).
    LegacyWs,
}

/// A GraphQL subscription over a real WebSocket.
pub struct Subscription {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    protocol: Protocol,
}

impl Subscription {
    /// Connects and sends `connection_init` with the token; waits for the acknowledgement.
    pub async fn connect(app: &TestApp, token: &str, protocol: Protocol) -> Subscription {
        Self::connect_to(app.addr, token, protocol).await
    }

    pub async fn connect_to(
        addr: std::net::SocketAddr,
        token: &str,
        protocol: Protocol,
    ) -> Subscription {
        let init = json!({ "Authorization": format!("Bearer {token}") });
        Self::try_connect_to(addr, init, protocol)
            .await
            .expect("connection acknowledged")
    }

    /// Connects with an arbitrary `connection_init` payload; the first message that is not an
    /// acknowledgement comes back as the error.
    pub async fn try_connect(
        app: &TestApp,
        init_payload: Value,
        protocol: Protocol,
    ) -> Result<Subscription, String> {
        Self::try_connect_to(app.addr, init_payload, protocol).await
    }

    pub async fn try_connect_to(
        addr: std::net::SocketAddr,
        init_payload: Value,
        protocol: Protocol,
    ) -> Result<Subscription, String> {
        let mut request = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .unwrap();
        let name = match protocol {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        };
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", name.parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket connects");
        let mut subscription = Subscription { socket, protocol };
        subscription
            .send(json!({ "type": "connection_init", "payload": init_payload }))
            .await;
        match subscription.next_message().await {
            Some(message) if message["type"] == "connection_ack" => Ok(subscription),
            Some(other) => Err(other.to_string()),
            None => Err("the socket closed without a message".to_owned()),
        }
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("WebSocket send");
    }

    /// The next protocol message (keep-alives skipped); `None` when the socket closed, with the
    /// close frame's code and reason in `{"close": code, "reason": ...}`.
    pub async fn next_message(&mut self) -> Option<Value> {
        // One deadline for the message, not per frame: the server's ping frames keep coming.
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("a WebSocket message within the timeout");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).expect("JSON message");
                    if matches!(message["type"].as_str(), Some("ping" | "pong" | "ka")) {
                        continue;
                    }
                    return Some(message);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(json!({
                        "close": frame.as_ref().map(|f| u16::from(f.code)),
                        "reason": frame.as_ref().map(|f| f.reason.to_string()),
                    }))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn start(&mut self, query: &str, variables: Value) {
        self.start_with_id("1", query, variables).await;
    }

    /// Starts one more subscription on this connection, under its own id.
    pub async fn start_with_id(&mut self, id: &str, query: &str, variables: Value) {
        let kind = match self.protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        };
        self.send(json!({
            "id": id, "type": kind, "payload": { "query": query, "variables": variables }
        }))
        .await;
    }

    /// Waits for the server's next ping frame (tungstenite answers it with a pong by itself).
    pub async fn wait_for_ping(&mut self) {
        loop {
            let frame = tokio::time::timeout(EVENT_TIMEOUT, self.socket.next())
                .await
                .expect("a ping within the timeout");
            match frame {
                Some(Ok(Message::Ping(_))) => return,
                Some(Ok(_)) => continue,
                other => panic!("the socket ended before a ping: {other:?}"),
            }
        }
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: String) {
        let _ = self.socket.send(Message::Text(text.into())).await;
    }

    /// The next `next`/`data` message's payload (errors included) for the subscription.
    pub async fn next_payload(&mut self) -> Value {
        let message = self.next_message().await.expect("socket open");
        match message["type"].as_str() {
            Some("next" | "data") => message["payload"].clone(),
            Some("error") => json!({ "errors": message["payload"] }),
            _ => panic!("unexpected message {message}"),
        }
    }

    /// The next status change (the `orderStatusChanged` value); panics on errors.
    pub async fn next_data(&mut self) -> Value {
        self.next_value_of("orderStatusChanged").await
    }

    /// The next value of the subscription field `field`; panics on errors.
    pub async fn next_value_of(&mut self, field: &str) -> Value {
        let payload = self.next_payload().await;
        assert!(
            payload.get("errors").is_none(),
            "subscription error: {payload}"
        );
        payload["data"][field].clone()
    }
}

/// The Prometheus page of the instance whose operator endpoints are at `addr`.
pub async fn metrics_at(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the metrics endpoint answers")
        .text()
        .await
        .unwrap()
}

/// Waits until the relay has published everything waiting in the outbox of `app`'s database.
pub async fn wait_until_outbox_empty(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>("select count(*) from outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap()
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay did not publish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the instance at `addr` counts `count` live subscriptions (its
/// `oms_live_subscriptions` gauge, read from the feeds at every scrape): the subscriptions a
/// test started are registered, so no event can pass them by.
pub async fn wait_for_live_subscriptions(addr: std::net::SocketAddr, count: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = metrics_at(addr).await;
        let live = page
            .lines()
            .find_map(|line| line.strip_prefix("oms_live_subscriptions "))
            .and_then(|value| value.parse::<i64>().ok());
        if live == Some(count) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} counts {live:?} live subscriptions, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts the built `oms serve` binary of `deployment` as a process of its own: for tests that
/// signal it, or whose requests could stall a server sharing the test's runtime.
pub fn spawn_oms_process(deployment: &Deployment, extra: &[&str]) -> tokio::process::Child {
    spawn_oms_process_with_env(deployment, extra, &[])
}

/// Like [`spawn_oms_process`], with extra environment variables.
pub fn spawn_oms_process_with_env(
    deployment: &Deployment,
    extra: &[&str],
    env: &[(&str, &str)],
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .arg("serve")
        .args(serve_flags(deployment, extra))
        .env(
            "RUST_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .spawn()
        .expect("oms starts")
}

/// Like [`spawn_oms_process`], with the log at `filter` (`RUST_LOG` syntax) piped from stderr as
/// JSON lines.
pub fn spawn_logged_oms_process(
    deployment: &Deployment,
    extra: &[&str],
    filter: &str,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .arg("serve")
        .args(serve_flags(deployment, extra))
        .env("RUST_LOG", filter)
        .env("LOG_JSON", "true")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("oms starts")
}

/// Waits until the oms at `addr` answers `/readyz` with 200.
pub async fn wait_until_ready(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = reqwest::get(format!("http://{addr}/readyz")).await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "oms at {addr} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// PgBouncer in transaction mode in front of this machine's PostgreSQL, started by
/// `scripts/pgbouncer.sh` for one test and stopped with it.
pub struct DedicatedPgBouncer {
    pub port: u16,
    dir: std::path::PathBuf,
    _process: tokio::process::Child,
}

impl DedicatedPgBouncer {
    pub async fn start() -> DedicatedPgBouncer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("oms-pgbouncer-{port}"));
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pgbouncer.sh");
        let process = tokio::process::Command::new(script)
            .arg(port.to_string())
            .arg(&dir)
            // It logs to its file in `dir`, which `log` reads.
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("pgbouncer starts (scripts/test installs it)");
        assert!(
            listens_within(port, Duration::from_secs(5)).await,
            "pgbouncer did not start on 127.0.0.1:{port}"
        );
        DedicatedPgBouncer {
            port,
            dir,
            _process: process,
        }
    }

    /// `database` through this PgBouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// What PgBouncer logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

/// Whether something accepts connections on 127.0.0.1:`port` within `timeout`.
pub async fn listens_within(port: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Serves `router` on 127.0.0.1:`port` (0: any free port) until the returned task is aborted:
/// the small servers tests run themselves (an identity provider, an OTLP receiver).
pub async fn serve_locally(
    port: u16,
    router: axum::Router,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free");
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, server)
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends a signal (`TERM`, `STOP`, `CONT`, `KILL`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

/// A broker of the test's own (tansu, in memory), for faults that must not disturb other tests.
pub struct DedicatedBroker {
    pub address: String,
    process: std::process::Child,
}

impl DedicatedBroker {
    pub async fn start() -> DedicatedBroker {
        Self::start_on(free_port()).await
    }

    /// A broker on `port` (which nothing else may listen on).
    pub async fn start_on(port: u16) -> DedicatedBroker {
        Self::start_with(port, port).await
    }

    /// A broker on `port` that tells clients to reach it at `advertised_port` (a proxy in
    /// front of it).
    pub async fn start_with(port: u16, advertised_port: u16) -> DedicatedBroker {
        Self::launch(port, advertised_port, "memory://tansu/", &[], None).await
    }

    /// A broker keeping its data in SQLite under `dir`, so that what it stores (SCRAM
    /// credentials among it) outlives a restart; with `authentication`, every client must sign
    /// in with SASL.
    pub async fn start_stored(
        dir: &std::path::Path,
        port: u16,
        authentication: bool,
    ) -> DedicatedBroker {
        let flags: &[&str] = if authentication {
            &["--authentication"]
        } else {
            &[]
        };
        Self::launch(port, port, "sqlite://tansu.db", flags, Some(dir)).await
    }

    async fn launch(
        port: u16,
        advertised_port: u16,
        storage: &str,
        flags: &[&str],
        dir: Option<&std::path::Path>,
    ) -> DedicatedBroker {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised_port}");
        let mut command = std::process::Command::new("tansu");
        command
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", storage])
            .args(flags)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut process = command
            .spawn()
            .expect("tansu is on PATH (scripts/test installs it)");
        let address = format!("127.0.0.1:{port}");
        if listens_within(port, Duration::from_secs(10)).await {
            return DedicatedBroker { address, process };
        }
        let _ = process.kill();
        let _ = process.wait();
        panic!("tansu did not start on {address}");
    }

    /// Freezes the broker: connections stay open but nothing answers.
    pub fn pause(&self) {
        signal(self.process.id(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.process.id(), "CONT");
    }
}

impl Drop for DedicatedBroker {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A PostgreSQL server of the test's own (a throw-away cluster of the machine's PostgreSQL),
/// for faults that must not disturb other tests.
pub struct DedicatedPostgres {
    pub port: u16,
    name: String,
    version: String,
}

fn run(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl DedicatedPostgres {
    pub fn start() -> DedicatedPostgres {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("PostgreSQL is installed (scripts/test installs it)")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
            .expect("a PostgreSQL version");
        let port = free_port();
        let name = format!("omstest{port}");
        let port_text = port.to_string();
        run(
            "pg_createcluster",
            &[&version, &name, "-p", &port_text, "--", "--auth=trust"],
        );
        let postgres = DedicatedPostgres {
            port,
            name,
            version,
        };
        postgres.up();
        postgres
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn up(&self) {
        run("pg_ctlcluster", &[&self.version, &self.name, "start"]);
    }

    /// Stops the server at once, cutting every connection.
    pub fn down(&self) {
        run(
            "pg_ctlcluster",
            &[&self.version, &self.name, "stop", "-m", "immediate"],
        );
    }
}

impl Drop for DedicatedPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pg_dropcluster")
            .args([&self.version, &self.name, "--stop"])
            .output();
    }
}

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Whether `group` has committed offsets up to the end of every partition of `topic`; if not,
/// where it stands.
/// Waits until consumer group `group` has committed past everything in `topic`.
pub async fn wait_until_caught_up(group: &str, topic: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (group_name, topic_name) = (group.to_owned(), topic.to_owned());
        let position =
            tokio::task::spawn_blocking(move || group_caught_up(&group_name, &topic_name))
                .await
                .unwrap();
        let Err(position) = position else { return };
        assert!(
            std::time::Instant::now() < deadline,
            "{group} did not catch up on {topic}: {position}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub fn group_caught_up(group: &str, topic: &str) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, timeout)
        .map_err(|e| e.to_string())?;
    let positions: Vec<(i64, Offset)> = (0..partitions)
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .unwrap();
            let at = committed
                .find_partition(topic, partition)
                .map(|p| p.offset())
                .unwrap_or(Offset::Invalid);
            (high, at)
        })
        .collect();
    if positions
        .iter()
        // At or past the end: tansu's reported end can lag behind what was already consumed.
        .all(|(high, at)| *high == 0 || matches!(at, Offset::Offset(o) if o >= high))
    {
        Ok(())
    } else {
        Err(format!("(end, committed) per partition: {positions:?}"))
    }
}

/// Asks `check` every 50 ms until it answers `Ok`, and returns that; fails after `within` with
/// the last `Err`, which says what was seen instead.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                std::time::Instant::now() < deadline,
                "gave up after {within:?}: {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A message read back from a topic.
pub struct ReadMessage {
    pub key: String,
    pub headers: HashMap<String, String>,
    pub payload: Vec<u8>,
}

/// Reads up to `count` messages of `topic` from the start (30 s at the most).
pub async fn read_messages(topic: &str, count: usize) -> Vec<ReadMessage> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .create()
            .unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut messages = Vec::new();
        while messages.len() < count && Instant::now() < deadline {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| {
                            let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                            (h.key.to_owned(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            messages.push(ReadMessage {
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                headers,
                payload: message.payload().unwrap_or_default().to_vec(),
            });
        }
        messages
    })
    .await
    .unwrap()
}

/// Every message on `topic` so far (up to the end each partition reports).
pub async fn read_topic(topic: &str) -> Vec<ReadMessage> {
    let name = topic.to_owned();
    let count = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .unwrap();
        let timeout = Duration::from_secs(5);
        let metadata = consumer.fetch_metadata(Some(&name), timeout).unwrap();
        let partitions = metadata.topics()[0].partitions().len() as i32;
        (0..partitions)
            .map(|partition| {
                let (low, high) = consumer
                    .fetch_watermarks(&name, partition, timeout)
                    .unwrap();
                (high - low) as usize
            })
            .sum::<usize>()
    })
    .await
    .unwrap();
    read_messages(topic, count).await
}
