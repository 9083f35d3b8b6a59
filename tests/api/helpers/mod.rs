//! The test harness: [`TestApp::spawn`] starts oms in-process on 127.0.0.1:0 against the real
//! PostgreSQL (a fresh database per test) and the real broker (fresh topics and consumer groups
//! per test), so tests run in parallel. Clients talk to it only through its public API: GraphQL
//! over HTTP and over WebSocket.
//!
//! Environment: `DATABASE_URL` (any database on the server; tests create their own) and
//! `KAFKA_BROKERS`. `scripts/test` sets both after starting the services.
//!
//! Tests read (and, to stage a fault, lock) the database with run-time statements
//! (`sqlx::query`), not the checked macros: they check what oms stored in SQL of their own, and
//! some read PostgreSQL's own views (`pg_stat_activity`, `pg_locks`), which no schema in
//! `.sqlx/` describes.

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

mod kafka;
mod processes;
mod subscription;
mod waiting;

pub use kafka::*;
pub use processes::*;
pub use subscription::*;
pub use waiting::*;

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
        // tansu holds every fetch for the whole wait, data or not.
        "--kafka-fetch-wait-max-ms=10".to_owned(),
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

    /// The value of the metric line starting with `name ` on the instance's metrics page.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let page = self.get("/metrics").await.text().await.unwrap();
        page.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse().ok())
    }

    /// Waits until the metric `name` on the instance's metrics page reads `value`.
    pub async fn wait_for_metric(&self, name: &str, value: f64) {
        eventually(Duration::from_secs(10), || async {
            match self.metric(name).await {
                Some(read) if read == value => Ok(()),
                read => Err(format!("{name} is {read:?}, not {value}")),
            }
        })
        .await
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
        let applied = eventually(EVENT_TIMEOUT, || async {
            let applied: i64 = sqlx::query_scalar(
                "select count(*) from processed_events where consumer = 'orders'",
            )
            .fetch_one(&self.pool)
            .await
            .unwrap();
            if applied >= count {
                Ok(applied)
            } else {
                Err(format!("only {applied} of {count} requests applied"))
            }
        })
        .await;
        assert_eq!(
            applied, count,
            "more requests were applied than were queued"
        );
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
