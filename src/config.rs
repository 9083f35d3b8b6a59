//! Command line and environment configuration: one clap tree, every flag with an env var; the
//! doc comments are the `--help` text. `.env.example` lists them all.

use crate::auth::{
    Authenticator, ClaimMapping, IdentityProvider, ProviderConfig, Role, TokenKeys, DEV_SECRET,
    MIN_SECRET_LEN,
};
use crate::domain::events::Stream;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "oms",
    version,
    about = "Order management service: GraphQL on PostgreSQL and Kafka"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service: GraphQL API, Kafka consumers and the outbox relay.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Load demo inventory (idempotent).
    Seed(DatabaseArgs),
    /// Print a signed token for local use (with the development secret unless JWT_SECRET is set).
    Token(Box<TokenArgs>),
    /// Print the GraphQL schema (SDL), as kept in schema.graphql.
    Schema,
    /// Check a live database against the invariants (stock conservation, order histories);
    /// exits non-zero on any violation.
    Check(DatabaseArgs),
    /// Dead letters: list what the consumers set aside and why, or send it back to its topic
    /// once the cause is fixed (the consumers apply each event at most once).
    #[command(subcommand)]
    Dlq(Box<DlqAction>),
}

#[derive(Subcommand, Debug)]
pub enum DlqAction {
    /// Print the dead letters of a topic, one per line (JSON with --json).
    List(DlqSelection),
    /// Send the selected dead letters back to the topic they came from.
    Replay(DlqReplay),
}

#[derive(Args, Debug)]
pub struct DlqSelection {
    /// Whose dead letters: `inventory` or `orders`.
    #[arg(long, value_parser = ["inventory", "orders"])]
    pub topic: String,
    /// Only this partition of the dead-letter topic.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Only dead letters at this offset of the dead-letter topic or after.
    #[arg(long)]
    pub from_offset: Option<i64>,
    /// Only dead letters at this offset or before.
    #[arg(long)]
    pub to_offset: Option<i64>,
    /// Only the dead letter carrying this event.
    #[arg(long)]
    pub event_id: Option<uuid::Uuid>,
    /// One JSON object per dead letter.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

#[derive(Args, Debug)]
pub struct DlqReplay {
    #[command(flatten)]
    pub selection: DlqSelection,
    /// Replay every dead letter of the topic.
    #[arg(long)]
    pub all: bool,
}

impl std::ops::Deref for DlqReplay {
    type Target = DlqSelection;
    fn deref(&self) -> &DlqSelection {
        &self.selection
    }
}

#[derive(Args, Debug, Clone)]
pub struct TelemetryArgs {
    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info,oms=info", global = true)]
    pub log_filter: String,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "LOG_JSON", global = true)]
    pub log_json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/oms"
    )]
    pub database_url: String,
    /// Most connections the pool opens.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 20)]
    pub database_max_connections: u32,
    /// What stands between oms and PostgreSQL at `DATABASE_URL`: `transaction` for a pooler in
    /// transaction mode that does not keep prepared statements (PgBouncer before 1.21, or
    /// without `max_prepared_statements`).
    #[arg(long, env = "DATABASE_POOLER", value_enum, default_value_t = crate::db::Pooler::None)]
    pub database_pooler: crate::db::Pooler,
    /// A URL that reaches PostgreSQL itself, not through the pooler: for what needs a session
    /// (the outbox relay's LISTEN) and for migrations. Behind a pooler without it the relay
    /// polls once a second, and migrations must be run separately (`oms migrate` against
    /// PostgreSQL itself, then OMS_MIGRATE=false).
    #[arg(long, env = "DATABASE_DIRECT_URL", hide_env_values = true)]
    pub database_direct_url: Option<String>,
}

/// A setting that must never be printed: its `Debug` says `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Secret(value.to_owned()))
    }
}

/// How oms talks to the brokers (librdkafka's `security.protocol`, spelt as Kafka's clients
/// spell it, in any case).
#[derive(clap::ValueEnum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum KafkaSecurityProtocol {
    Plaintext,
    Ssl,
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

impl KafkaSecurityProtocol {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            KafkaSecurityProtocol::Plaintext => "plaintext",
            KafkaSecurityProtocol::Ssl => "ssl",
            KafkaSecurityProtocol::SaslPlaintext => "sasl_plaintext",
            KafkaSecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

/// A librdkafka property given as `key=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaProperty {
    pub key: String,
    /// Kept out of `Debug`: it may be a secret (a key, a token).
    pub value: Secret,
}

impl std::str::FromStr for KafkaProperty {
    type Err = String;
    fn from_str(property: &str) -> Result<Self, Self::Err> {
        match property.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(KafkaProperty {
                key: key.trim().to_owned(),
                value: Secret(value.to_owned()),
            }),
            _ => Err(format!(
                "a Kafka property is key=value (a librdkafka setting), not {property:?}"
            )),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// plaintext, ssl (TLS), sasl_plaintext or sasl_ssl (SASL over TLS, as managed Kafka wants).
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_enum, ignore_case = true, default_value_t = KafkaSecurityProtocol::Plaintext)]
    pub kafka_security_protocol: KafkaSecurityProtocol,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER.
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// SASL password (never logged).
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<Secret>,
    /// CA certificate file (PEM) to verify the brokers' certificates; the system's CAs otherwise.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<String>,
    /// Any other librdkafka property, key=value, comma separated (or --kafka-property, repeated):
    /// client certificates, MSK IAM, timeouts. Applied last, so it wins.
    #[arg(
        long = "kafka-property",
        env = "KAFKA_PROPERTIES",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub kafka_properties: Vec<KafkaProperty>,
    /// Topic of placed orders waiting for the inventory check.
    #[arg(
        long = "kafka-topic-inventory",
        env = "KAFKA_TOPIC_INVENTORY",
        default_value = "inventory"
    )]
    pub topic_inventory: String,
    /// Topic of requested status changes.
    #[arg(
        long = "kafka-topic-orders",
        env = "KAFKA_TOPIC_ORDERS",
        default_value = "orders"
    )]
    pub topic_orders: String,
    /// Topic of applied status changes, read by every instance for subscriptions.
    #[arg(
        long = "kafka-topic-order-status",
        env = "KAFKA_TOPIC_ORDER_STATUS",
        default_value = "order-status"
    )]
    pub topic_order_status: String,
    /// Topic of stock level changes, read by every instance for inventory subscriptions.
    #[arg(
        long = "kafka-topic-stock-levels",
        env = "KAFKA_TOPIC_STOCK_LEVELS",
        default_value = "stock-levels"
    )]
    pub topic_stock_levels: String,
    /// Consumer group prefix: groups are `<prefix>-inventory` and `<prefix>-orders`.
    #[arg(
        long = "kafka-group-prefix",
        env = "KAFKA_GROUP_PREFIX",
        default_value = "oms"
    )]
    pub group_prefix: String,
    /// Partitions for topics created at start-up.
    #[arg(
        long = "kafka-topic-partitions",
        env = "KAFKA_TOPIC_PARTITIONS",
        default_value_t = 3
    )]
    pub topic_partitions: i32,
    /// Replication factor for topics created at start-up.
    #[arg(
        long = "kafka-topic-replication",
        env = "KAFKA_TOPIC_REPLICATION",
        default_value_t = 1
    )]
    pub topic_replication: i32,
    /// How long the broker may hold a consumer's fetch while it has no data for it. Apache
    /// Kafka answers a fetch as soon as data arrives, so this only sets how often an idle
    /// consumer asks again; its own default is 500. tansu holds every fetch for the whole
    /// wait, data or not, which makes it a latency floor per hop there: local runs set 10
    /// (`scripts/infra.sh`, the test harness).
    #[arg(
        long = "kafka-fetch-wait-max-ms",
        env = "KAFKA_FETCH_WAIT_MAX_MS",
        default_value_t = 500
    )]
    pub fetch_wait_max_ms: u32,
    /// Events each consumer applies at once (never two of one order at once; offsets are only
    /// committed past events that are all applied). Default: 16 on an instance that only runs
    /// consumers; 4 on one that also serves the API, which shares the CPU and connections.
    #[arg(
        long = "kafka-consumer-concurrency",
        env = "KAFKA_CONSUMER_CONCURRENCY"
    )]
    pub consumer_concurrency: Option<usize>,
    /// Received messages a consumer holds, waiting for a free slot, before it pauses fetching
    /// (at least four batches per slot): what bounds its memory while the database is slow or
    /// away. Fetching resumes once half of them are applied; the consumer keeps polling
    /// meanwhile, so it keeps its place in the group.
    #[arg(
        long = "kafka-consumer-queue",
        env = "KAFKA_CONSUMER_QUEUE",
        default_value_t = 1024
    )]
    pub consumer_queue: usize,
    /// Most placed orders the inventory consumer checks in one transaction, from what is already
    /// waiting (a batch never waits to fill: one order waiting is checked alone). 1: one
    /// transaction per order. Above about 1,200 orders/s confirming waits on round trips, and
    /// larger batches confirm more per round trip (docs/performance.md).
    #[arg(
        long = "inventory-batch-max",
        env = "OMS_INVENTORY_BATCH_MAX",
        default_value_t = 256
    )]
    pub inventory_batch_max: usize,
    /// Most status requests the orders consumer applies in one transaction, from what is
    /// already waiting (never two of one order). 1: one transaction per request.
    #[arg(
        long = "orders-batch-max",
        env = "OMS_ORDERS_BATCH_MAX",
        default_value_t = 64
    )]
    pub orders_batch_max: usize,
    /// Most messages the producer packs into one record batch. Apache Kafka: leave the default.
    /// tansu (local runs and tests) needs 1: a consumer resuming at an offset inside a
    /// multi-record batch is sent only the batches after it, so the rest of that batch is lost.
    #[arg(
        long = "kafka-batch-max-messages",
        env = "KAFKA_BATCH_MAX_MESSAGES",
        default_value_t = 10_000
    )]
    pub batch_max_messages: u32,
    /// How often consumers commit the offsets of messages already applied. A crash loses at most
    /// this much progress, which is then redelivered (harmlessly).
    #[arg(
        long = "kafka-commit-interval-ms",
        env = "KAFKA_COMMIT_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub commit_interval_ms: u32,
    /// How long the group waits for a consumer that stopped answering (crashed) before its
    /// partitions move to the others.
    #[arg(
        long = "kafka-session-timeout-ms",
        env = "KAFKA_SESSION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub session_timeout_ms: u32,
    /// How long a consumer may go without polling before the group takes its partitions away
    /// (at least the session timeout). oms keeps polling while its handlers wait on a database
    /// that is down, so an outage does not trigger it.
    #[arg(
        long = "kafka-max-poll-interval-ms",
        env = "KAFKA_MAX_POLL_INTERVAL_MS",
        default_value_t = 20_000
    )]
    pub max_poll_interval_ms: u32,
    /// librdkafka debug contexts (e.g. `consumer,fetch`), logged at debug level. Empty: off.
    #[arg(long = "kafka-debug", env = "KAFKA_DEBUG", default_value = "")]
    pub kafka_debug: String,
    /// How long the producer keeps retrying a message before it reports failure.
    #[arg(
        long = "kafka-message-timeout-ms",
        env = "KAFKA_MESSAGE_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub message_timeout_ms: u32,
}

impl KafkaArgs {
    /// The topic name behind a logical stream.
    pub fn topic(&self, stream: Stream) -> &str {
        match stream {
            Stream::Inventory => &self.topic_inventory,
            Stream::Orders => &self.topic_orders,
            Stream::OrderStatus => &self.topic_order_status,
            Stream::StockLevels => &self.topic_stock_levels,
        }
    }

    /// The dead-letter topic of a stream's topic.
    pub fn dead_letter_topic(&self, stream: Stream) -> String {
        format!("{}.dlq", self.topic(stream))
    }
}

#[derive(Args, Clone)]
pub struct AuthArgs {
    /// HS256 secret for bearer tokens, at least 32 bytes. Required unless --dev or an identity
    /// provider (JWT_JWKS_URL or JWT_ISSUER) is set.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Local-development mode: a fixed, publicly known JWT secret and a pre-filled staff token
    /// in the playground. Never use it where anyone else can reach the service.
    #[arg(long = "dev", env = "OMS_DEV_MODE")]
    pub dev_mode: bool,
    /// Seconds a token's `exp` and `nbf` may be off this server's clock (at most 300).
    #[arg(long, env = "JWT_CLOCK_SKEW_SECS", default_value_t = crate::auth::DEFAULT_CLOCK_SKEW_SECS)]
    pub jwt_clock_skew_secs: u64,
    /// An identity provider's JWKS address: RS256, ES256 (and other public-key) tokens are
    /// checked against the keys it publishes.
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// The identity provider's issuer: the only accepted `iss`. Without JWT_JWKS_URL, its keys
    /// are found by OIDC discovery at `{issuer}/.well-known/openid-configuration`.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Accepted `aud` values, comma-separated (required with an identity provider).
    #[arg(long, env = "JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// The claim that names the user.
    #[arg(long, env = "JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,
    /// The claim that holds the role or roles: a name, or a dotted path into nested objects
    /// (`realm_access.roles` for Keycloak; `https://example.com/roles` and `cognito:groups`
    /// are read as one name).
    #[arg(long, env = "JWT_ROLE_CLAIM", default_value = "role")]
    pub jwt_role_claim: String,
    /// Role values that make the caller staff, comma-separated; any other caller is a customer.
    #[arg(
        long,
        env = "JWT_STAFF_ROLES",
        value_delimiter = ',',
        default_value = "staff"
    )]
    pub jwt_staff_roles: Vec<String>,
    /// Least seconds between two fetches of the provider's keys for unknown key ids.
    #[arg(long, env = "JWT_JWKS_MIN_REFRESH_SECS", default_value_t = 10)]
    pub jwt_jwks_min_refresh_secs: u64,
    /// Seconds one fetch of the provider's discovery document or keys may take.
    #[arg(long, env = "JWT_JWKS_TIMEOUT_SECS", default_value_t = 5)]
    pub jwt_jwks_timeout_secs: u64,
}

/// Never prints the secret.
impl std::fmt::Debug for AuthArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthArgs")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("dev_mode", &self.dev_mode)
            .field("jwt_clock_skew_secs", &self.jwt_clock_skew_secs)
            .field("jwt_jwks_url", &self.jwt_jwks_url)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_user_claim", &self.jwt_user_claim)
            .field("jwt_role_claim", &self.jwt_role_claim)
            .field("jwt_staff_roles", &self.jwt_staff_roles)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("JWT_SECRET is not set; set it (at least {MIN_SECRET_LEN} bytes), configure an identity provider (JWT_JWKS_URL or JWT_ISSUER), or pass --dev for local development")]
    MissingSecret,
    #[error("JWT_SECRET is {0} bytes; it must be at least {MIN_SECRET_LEN}")]
    ShortSecret(usize),
    #[error("--dev uses a publicly known secret and cannot be combined with JWT_SECRET")]
    DevWithSecret,
    #[error("JWT_SECRET is the publicly known development secret; it is accepted only with --dev (OMS_DEV_MODE=true)")]
    PublicDevSecret,
    #[error("tokens come either from an identity provider (JWT_JWKS_URL or JWT_ISSUER) or from JWT_SECRET (and --dev), not both")]
    SecretWithProvider,
    #[error("{0}")]
    Claims(String),
    #[error("the identity provider settings are not usable: {0:#}")]
    Provider(anyhow::Error),
}

impl AuthArgs {
    fn provider_configured(&self) -> bool {
        self.jwt_jwks_url.is_some() || self.jwt_issuer.is_some()
    }

    /// How tokens are checked: against an identity provider's keys, or with the HS256 secret
    /// (refusing to run without a proper one outside development mode).
    pub fn authenticator(&self) -> Result<Authenticator, ConfigError> {
        let claims = ClaimMapping::new(
            &self.jwt_user_claim,
            &self.jwt_role_claim,
            self.jwt_staff_roles.clone(),
        )
        .map_err(ConfigError::Claims)?;
        let audience: Vec<String> = self
            .jwt_audience
            .iter()
            .map(|audience| audience.trim().to_owned())
            .filter(|audience| !audience.is_empty())
            .collect();
        let authenticator = if self.provider_configured() {
            if self.jwt_secret.is_some() || self.dev_mode {
                return Err(ConfigError::SecretWithProvider);
            }
            let provider = IdentityProvider::new(ProviderConfig {
                jwks_url: self.jwt_jwks_url.clone(),
                issuer: self.jwt_issuer.clone(),
                audience,
                min_refresh: Duration::from_secs(self.jwt_jwks_min_refresh_secs),
                fetch_timeout: Duration::from_secs(self.jwt_jwks_timeout_secs.max(1)),
                clock_skew_secs: self.jwt_clock_skew_secs,
            })
            .map_err(ConfigError::Provider)?;
            Authenticator::with_provider(provider)
        } else {
            Authenticator::with_secret(self.keys()?.with_audience(&audience))
        };
        Ok(authenticator.with_claims(claims))
    }

    /// The HS256 signing keys, refusing to run without a proper secret outside development mode.
    pub fn keys(&self) -> Result<TokenKeys, ConfigError> {
        if self.provider_configured() {
            return Err(ConfigError::SecretWithProvider);
        }
        let secret = match (&self.jwt_secret, self.dev_mode) {
            (Some(_), true) => return Err(ConfigError::DevWithSecret),
            (None, true) => DEV_SECRET,
            (None, false) => return Err(ConfigError::MissingSecret),
            (Some(secret), false) if secret == DEV_SECRET => {
                return Err(ConfigError::PublicDevSecret)
            }
            (Some(secret), false) if secret.len() < MIN_SECRET_LEN => {
                return Err(ConfigError::ShortSecret(secret.len()))
            }
            (Some(secret), false) => secret,
        };
        Ok(TokenKeys::new(secret.as_bytes()).with_clock_skew(self.jwt_clock_skew_secs))
    }
}

/// Which parts of the service this process runs (like the old web and karafka processes).
#[derive(clap::ValueEnum, Copy, Clone, Debug, Eq, PartialEq, Default)]
pub enum Components {
    /// API, consumers and relay.
    #[default]
    All,
    /// The GraphQL API (with live subscriptions) and the outbox relay.
    Api,
    /// The Kafka consumers and the outbox relay.
    Consumers,
}

impl Components {
    pub fn runs_api(self) -> bool {
        self != Components::Consumers
    }

    pub fn runs_consumers(self) -> bool {
        self != Components::Api
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Address the HTTP server listens on (host:port).
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,
    /// Address for the operator endpoints (`/healthz`, `/readyz`, `/metrics`), keeping them off
    /// the public port. Without it they are served beside the API, or on `LISTEN_ADDR` by a
    /// consumers-only process.
    #[arg(long, env = "OPS_LISTEN_ADDR")]
    pub ops_listen_addr: Option<SocketAddr>,
    /// Browser origins allowed to call the API (CORS), comma separated, e.g.
    /// `https://shop.example.com`. None by default; any in development mode.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// Request headers browsers may send cross-origin besides `Authorization` and
    /// `Content-Type`, comma separated (Apollo Client's name and version, a request id, the W3C
    /// `traceparent` of browser tracing).
    #[arg(
        long,
        env = "CORS_ALLOWED_HEADERS",
        value_delimiter = ',',
        default_value = "apollographql-client-name,apollographql-client-version,x-request-id,traceparent"
    )]
    pub cors_allowed_headers: Vec<String>,
    /// Threads running the service's tasks; by default one per core the process may use. On a
    /// saturated host it shares with PostgreSQL, whose every connection is a process of its
    /// own, more threads give it a larger share of the CPU: requests are answered sooner,
    /// orders confirmed later (see docs/performance.md).
    #[arg(long, env = "OMS_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    /// Which components to run.
    #[arg(long, env = "OMS_COMPONENTS", value_enum, default_value_t = Components::All)]
    pub components: Components,
    /// Whether `/readyz` fails while the broker is unreachable. The API takes orders without it
    /// (they wait in the outbox), so `false` keeps instances in a load balancer through a
    /// broker outage; `true` takes them out, which suits a deployment that would rather send
    /// traffic to instances that can also deliver live changes.
    #[arg(long, env = "OMS_READY_REQUIRES_KAFKA", default_value_t = true, action = clap::ArgAction::Set)]
    pub ready_requires_kafka: bool,
    /// Apply pending migrations at start-up.
    #[arg(long, env = "OMS_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,
    /// Load the demo inventory at start-up (idempotent).
    #[arg(long, env = "OMS_SEED")]
    pub seed: bool,
    /// Status changes buffered per instance for subscribers to every order (at most 16 for
    /// those of one order, 256 for a customer's); a subscriber that falls further behind is
    /// resynchronised from the database, except staff's stream of every order, which ends
    /// with a SUBSCRIPTION_LAGGED error.
    #[arg(long, env = "OMS_LIVE_BUFFER", default_value_t = 4096)]
    pub live_buffer: usize,
    /// Most orders placed in one statement. Orders arriving while earlier ones are being
    /// written are placed together, one round trip and one commit for all; an order that finds
    /// the database free is placed alone at once. 1: each order in a statement of its own.
    #[arg(long, env = "OMS_PLACE_BATCH_MAX", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub place_batch_max: u16,
    /// Statements placing orders at once. While every one is busy, arriving orders wait and
    /// the next free one places them together: fewer writers form batches at lower rates (less
    /// CPU per order), more let orders pass one whose statement waits on a lock.
    #[arg(long, env = "OMS_PLACE_WRITERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub place_writers: u16,
    /// Most status change requests queued in one statement. Requests arriving while earlier
    /// ones are being written are queued together, one round trip and one commit for all; a
    /// request that finds the database free is queued alone at once. 1: each in a statement
    /// of its own.
    #[arg(long, env = "OMS_STATUS_REQUEST_BATCH_MAX", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub status_request_batch_max: u16,
    /// Statements queueing status change requests at once (as `OMS_PLACE_WRITERS` for orders).
    #[arg(long, env = "OMS_STATUS_REQUEST_WRITERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub status_request_writers: u16,
    /// Outbox rows published per relay round trip.
    #[arg(long, env = "OMS_OUTBOX_BATCH", default_value_t = 500)]
    pub outbox_batch: i64,
    /// Hours the consumers' inbox keeps an applied event's id, so a redelivery is recognised:
    /// at least as long as the topics keep messages (Kafka's default: 168). Fractions are
    /// allowed (0.01 is 36 s, for soak runs); 0: never pruned.
    #[arg(long, env = "OMS_INBOX_RETENTION_HOURS", default_value_t = 168.0)]
    pub inbox_retention_hours: f64,
    #[command(flatten)]
    pub limits: ApiLimits,
    /// Seconds to finish in-flight work on SIGTERM before exiting anyway.
    #[arg(long, env = "OMS_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
}

impl ServeArgs {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// Events each consumer applies at once: as configured, else 16 on a consumers-only
    /// instance and 4 beside the API (the measurements behind both are in docs/performance.md).
    pub fn consumer_concurrency(&self) -> usize {
        let default = if self.components.runs_api() { 4 } else { 16 };
        self.kafka.consumer_concurrency.unwrap_or(default).max(1)
    }
}

/// What one request, connection or user may ask of the API. `docs/security.md` explains each.
#[derive(Args, Debug, Clone)]
pub struct ApiLimits {
    /// Largest page `first` may ask for.
    #[arg(long, env = "OMS_MAX_PAGE_SIZE", default_value_t = 100)]
    pub max_page_size: usize,
    /// Deepest selection nesting a query may have.
    #[arg(long, env = "OMS_MAX_QUERY_DEPTH", default_value_t = 12)]
    pub max_query_depth: usize,
    /// Highest complexity a query may have: about the most values its answer can hold. Each
    /// field counts 1; a list counts the most items it can return (its page size, an order's
    /// 100 lines, a history's 7 statuses) times its children, so aliases and large pages add
    /// up. A document's fields and fragments, each spread expanded, count against it too.
    #[arg(long, env = "OMS_MAX_QUERY_COMPLEXITY", default_value_t = 10_000)]
    pub max_query_complexity: usize,
    /// Longest query text accepted, in bytes (the HTTP body and a WebSocket message have their
    /// own, larger limits).
    #[arg(long, env = "OMS_MAX_QUERY_BYTES", default_value_t = 32 * 1024)]
    pub max_query_bytes: usize,
    /// Documents each instance keeps for automatic persisted queries (Apollo's APQ), the most
    /// recently used; at most this many times `OMS_MAX_QUERY_BYTES` of memory. 0 turns the
    /// protocol off (clients are told PersistedQueryNotSupported and send whole documents).
    #[arg(long, env = "OMS_PERSISTED_QUERIES", default_value_t = 500)]
    pub persisted_queries: usize,
    /// Most tokens (names, values and punctuation) a query may have.
    #[arg(long, env = "OMS_MAX_QUERY_TOKENS", default_value_t = 5_000)]
    pub max_query_tokens: usize,
    /// Most directives on one field.
    #[arg(long, env = "OMS_MAX_DIRECTIVES", default_value_t = 4)]
    pub max_directives: usize,
    /// Answer introspection queries (GraphiQL needs them). Turn off in production if the
    /// schema should not be browsable.
    #[arg(long, env = "OMS_INTROSPECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub introspection: bool,
    /// Mutations per second one user may make, on average.
    #[arg(long, env = "OMS_MUTATIONS_PER_SECOND", default_value_t = 20.0)]
    pub mutations_per_second: f64,
    /// Mutations one user may make in a burst above that rate.
    #[arg(long, env = "OMS_MUTATION_BURST", default_value_t = 40.0)]
    pub mutation_burst: f64,
    /// Requests (HTTP requests and WebSocket operations) per second one signed-in user may
    /// make, on average.
    #[arg(long, env = "OMS_REQUESTS_PER_SECOND", default_value_t = 100.0)]
    pub requests_per_second: f64,
    /// Requests one signed-in user may make in a burst above that rate.
    #[arg(long, env = "OMS_REQUEST_BURST", default_value_t = 200.0)]
    pub request_burst: f64,
    /// Requests per second from one IP address without a token, on average.
    #[arg(
        long,
        env = "OMS_ANONYMOUS_REQUESTS_PER_SECOND",
        default_value_t = 10.0
    )]
    pub anonymous_requests_per_second: f64,
    /// Requests from one IP address without a token in a burst above that rate.
    #[arg(long, env = "OMS_ANONYMOUS_REQUEST_BURST", default_value_t = 40.0)]
    pub anonymous_request_burst: f64,
    /// WebSocket connections one IP address may hold at once (per instance), signed in or not,
    /// counted from the upgrade.
    #[arg(long, env = "OMS_MAX_CONNECTIONS_PER_IP", default_value_t = 200)]
    pub max_connections_per_ip: usize,
    /// Seconds a new WebSocket has to send `connection_init` before it is closed.
    #[arg(long, env = "OMS_WS_INIT_TIMEOUT_SECS", default_value_t = 10)]
    pub ws_init_timeout_secs: u64,
    /// Take the caller's IP address from the last `X-Forwarded-For` entry (set this only behind
    /// a proxy that sets it); otherwise the peer address of the connection.
    #[arg(long, env = "OMS_TRUST_X_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_x_forwarded_for: bool,
    /// Subscriptions one WebSocket connection may hold at once.
    #[arg(
        long,
        env = "OMS_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        default_value_t = 50
    )]
    pub max_subscriptions_per_connection: usize,
    /// WebSocket connections one user may hold at once (per instance).
    #[arg(long, env = "OMS_MAX_CONNECTIONS_PER_USER", default_value_t = 20)]
    pub max_connections_per_user: usize,
    /// Seconds between WebSocket ping frames the server sends, so idle subscriptions survive
    /// proxies and a vanished client is noticed (its pings fail). 0 turns them off.
    #[arg(long, env = "OMS_WS_PING_INTERVAL_SECS", default_value_t = 15)]
    pub ws_ping_interval_secs: u64,
    /// Largest WebSocket message (and frame) accepted, in bytes.
    #[arg(long, env = "OMS_MAX_WS_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_ws_message_bytes: usize,
}

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// The user id (`sub` claim).
    #[arg(long)]
    pub sub: String,
    /// The role (`role` claim).
    #[arg(long, value_enum, default_value_t = Role::Customer)]
    pub role: Role,
    /// Hours until the token expires.
    #[arg(long, default_value_t = 24)]
    pub ttl_hours: u64,
    /// The user's name (`name` claim), taken into their customer profile when they act.
    #[arg(long)]
    pub name: Option<String>,
    /// The user's email (`email` claim), taken into their customer profile when they act.
    #[arg(long)]
    pub email: Option<String>,
    /// The user's phone (`phone_number` claim), taken into their customer profile when they act.
    #[arg(long)]
    pub phone_number: Option<String>,
    #[command(flatten)]
    pub auth: AuthArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings of one group parsed from command-line `flags`.
    fn parse<T: Args>(flags: &[&str]) -> T {
        #[derive(clap::Parser)]
        struct Cli<T: Args> {
            #[command(flatten)]
            settings: T,
        }
        let args = std::iter::once("oms").chain(flags.iter().copied());
        <Cli<T> as clap::Parser>::try_parse_from(args)
            .unwrap()
            .settings
    }

    fn auth_from(flags: &[&str]) -> AuthArgs {
        parse(flags)
    }

    fn auth(secret: Option<&str>, dev_mode: bool) -> AuthArgs {
        AuthArgs {
            jwt_secret: secret.map(str::to_owned),
            dev_mode,
            ..auth_from(&[])
        }
    }

    #[test]
    fn the_service_refuses_to_start_without_a_proper_secret_outside_development_mode() {
        assert!(matches!(
            auth(None, false).keys(),
            Err(ConfigError::MissingSecret)
        ));
        assert!(matches!(
            auth(Some("too-short"), false).keys(),
            Err(ConfigError::ShortSecret(9))
        ));
        assert!(matches!(
            auth(Some(&"s".repeat(40)), true).keys(),
            Err(ConfigError::DevWithSecret)
        ));
        assert!(matches!(
            auth(Some(DEV_SECRET), false).keys(),
            Err(ConfigError::PublicDevSecret)
        ));
        assert!(auth(Some(&"s".repeat(32)), false).keys().is_ok());
        assert!(auth(None, true).keys().is_ok());
    }

    #[test]
    fn an_identity_provider_needs_an_audience_and_excludes_the_shared_secret() {
        let provider = |extra: &[&str]| {
            let mut flags = vec!["--jwt-issuer=https://id.example.com/"];
            flags.extend_from_slice(extra);
            auth_from(&flags).authenticator()
        };
        let without_audience = provider(&[]).err().unwrap().to_string();
        assert!(
            without_audience.contains("JWT_AUDIENCE is required"),
            "{without_audience}"
        );
        assert!(matches!(
            provider(&[
                "--jwt-audience=oms",
                "--jwt-secret=0123456789abcdef0123456789abcdef"
            ]),
            Err(ConfigError::SecretWithProvider)
        ));
        assert!(matches!(
            provider(&["--jwt-audience=oms", "--dev"]),
            Err(ConfigError::SecretWithProvider)
        ));
        assert!(matches!(
            provider(&["--jwt-audience=oms", "--jwt-staff-roles= "]),
            Err(ConfigError::Claims(_))
        ));
        let configured = provider(&[
            "--jwt-audience=oms,,api",
            "--jwt-role-claim=realm_access.roles",
        ])
        .unwrap();
        assert!(configured.provider().is_some());
        assert!(configured.signing_keys().is_none());
    }

    fn serve_args(flags: &[&str]) -> ServeArgs {
        parse(flags)
    }

    #[test]
    fn kafka_properties_are_key_value_pairs_and_secrets_never_print() {
        let args = serve_args(&[
            "--kafka-property=ssl.certificate.location=/etc/oms/client.pem",
            "--kafka-property=sasl.oauthbearer.client.secret=s3cr3t",
            "--kafka-sasl-password=hunter2",
        ]);
        assert_eq!(args.kafka.kafka_properties.len(), 2);
        assert_eq!(
            args.kafka.kafka_properties[0].key,
            "ssl.certificate.location"
        );
        let printed = format!("{args:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        for (spelt, protocol) in [
            ("SASL_SSL", KafkaSecurityProtocol::SaslSsl),
            ("sasl_plaintext", KafkaSecurityProtocol::SaslPlaintext),
            ("ssl", KafkaSecurityProtocol::Ssl),
        ] {
            let flag = format!("--kafka-security-protocol={spelt}");
            assert_eq!(serve_args(&[&flag]).kafka.kafka_security_protocol, protocol);
        }
        let bad = "no-equals-sign".parse::<KafkaProperty>().unwrap_err();
        assert!(bad.contains("key=value"), "{bad}");
    }

    #[test]
    fn every_setting_of_oms_serve_is_listed_in_the_env_example() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let example = include_str!("../.env.example");
        let listed: Vec<&str> = example
            .lines()
            .map(|line| line.trim_start_matches("# "))
            .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
            .collect();
        let command = <Cli as clap::CommandFactory>::command();
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env() {
                let env = env.to_string_lossy();
                assert!(
                    listed.contains(&env.as_ref()),
                    "{env} is not in .env.example"
                );
            }
        }
    }

    #[test]
    fn consumers_apply_four_events_at_once_beside_the_api_and_sixteen_alone_unless_told() {
        assert_eq!(serve_args(&[]).consumer_concurrency(), 4);
        assert_eq!(
            serve_args(&["--components=consumers"]).consumer_concurrency(),
            16
        );
        assert_eq!(
            serve_args(&["--components=consumers", "--kafka-consumer-concurrency=2"])
                .consumer_concurrency(),
            2
        );
        assert_eq!(
            serve_args(&["--kafka-consumer-concurrency=0"]).consumer_concurrency(),
            1
        );
    }
}
