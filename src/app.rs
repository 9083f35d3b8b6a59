//! Builds the shared state, spawns the service's tasks and stops them gracefully.

use crate::config::ServeArgs;
use crate::consumers::{inventory::InventoryHandler, orders::OrdersHandler, ConsumerParts};
use crate::domain::events::Stream;
use crate::graphql;
use crate::graphql::rate_limit::RequestRateLimiter;
use crate::http::{self, HttpState};
use crate::kafka::consume::ConsumerLoop;
use crate::live::{LiveFeeds, LiveReader};
use crate::metrics::Metrics;
use crate::outbox::{OutboxWaker, Relay};
use crate::service::placer::Placer;
use crate::service::status_requests::StatusRequests;
use crate::{auth, db, kafka, seed};
use anyhow::Context;
use axum::serve::ListenerExt;
use rdkafka::consumer::Consumer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A started service.
pub struct RunningApp {
    /// Where the HTTP server listens (when this process runs the API).
    pub addr: Option<SocketAddr>,
    /// Where the operator endpoints listen, when not beside the API.
    pub ops_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    /// Cancelled once the relay, consumers and live reader run (the broker answered).
    kafka_ready: CancellationToken,
    tasks: JoinSet<()>,
    connections: TaskTracker,
    grace: Duration,
}

impl RunningApp {
    /// Stops taking requests, lets consumers finish the message in hand and commit, drains the
    /// outbox once more, and waits for every task up to the grace period.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.connections.close();
        let connections = self.connections.clone();
        let all_done = async {
            while self.tasks.join_next().await.is_some() {}
            connections.wait().await;
        };
        if tokio::time::timeout(self.grace, all_done).await.is_err() {
            tracing::warn!(grace = ?self.grace, "tasks still busy after the grace period; stopping anyway");
            self.tasks.abort_all();
        }
    }

    /// Resolves once the broker has answered and the relay, consumers and live reader run.
    pub async fn kafka_started(&self) {
        self.kafka_ready.cancelled().await;
    }

    /// A token cancelled when the service stops.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// What the API, the consumers and the relay of one process share.
#[derive(Clone)]
struct Shared {
    pool: db::Db,
    outbox: OutboxWaker,
    metrics: Metrics,
    /// Cancelled when the service stops.
    shutdown: CancellationToken,
}

/// Starts the components `args` asks for.
pub async fn start(args: ServeArgs) -> anyhow::Result<RunningApp> {
    let authenticator = args.auth.authenticator()?;
    if let Some(provider) = authenticator.provider().cloned() {
        // Fetched now so the first requests need not wait; a provider that cannot be reached
        // yet is asked again when a token arrives.
        tokio::spawn(async move {
            if let Err(error) = provider.prefetch().await {
                tracing::warn!(
                    error = %format!("{error:#}"),
                    "the identity provider's signing keys could not be fetched at start-up; they are fetched again when a token arrives"
                );
            }
        });
    }
    if args.auth.dev_mode {
        tracing::warn!(
            "LOCAL DEVELOPMENT MODE: tokens are signed with a publicly known secret and the \
             playground holds a staff token. Never expose this instance."
        );
    }
    let database = prepare_database(&args).await?;
    // Creating Kafka clients needs no broker; everything that talks to one starts in the
    // background once the topics exist, so the API serves (and queues events in the outbox)
    // meanwhile.
    let producer = kafka::producer(&args.kafka)?;
    tracing::info!(
        "connecting to Kafka at {} to create topics",
        args.kafka.kafka_brokers
    );

    let shared = Shared {
        pool: database.db.clone(),
        outbox: OutboxWaker::default(),
        metrics: Metrics::new(),
        shutdown: CancellationToken::new(),
    };
    shared.metrics.runtime_worker_threads.set(
        tokio::runtime::Handle::current()
            .metrics()
            .num_workers()
            .try_into()
            .unwrap_or(i64::MAX),
    );
    let mut tasks = JoinSet::new();
    let connections = TaskTracker::new();
    let kafka_ready = CancellationToken::new();
    let handler = |max_batch: usize| ConsumerParts {
        pool: shared.pool.clone(),
        outbox: shared.outbox.clone(),
        metrics: shared.metrics.clone(),
        max_batch: max_batch.max(1),
    };
    let mut kafka_side = KafkaSide {
        args: args.clone(),
        ready: kafka_ready.clone(),
        relay: Relay::new(
            shared.pool.clone(),
            database.direct.clone(),
            producer.clone(),
            args.kafka.clone(),
            args.outbox_batch,
            shared.metrics.clone(),
            shared.outbox.clone(),
        ),
        handlers: args.components.runs_consumers().then(|| {
            (
                InventoryHandler::from(handler(args.kafka.inventory_batch_max)),
                OrdersHandler::from(handler(args.kafka.orders_batch_max)),
            )
        }),
        feeds: None,
        metrics: shared.metrics.clone(),
    };

    let readiness = http::ops::Readiness::default();
    let probe = http::ops::Probe {
        pool: shared.pool.clone(),
        producer: producer.clone(),
        metrics: shared.metrics.clone(),
        readiness: readiness.clone(),
        requires_kafka: args.ready_requires_kafka,
        kafka_ready: kafka_ready.clone(),
        brokers: args.kafka.kafka_brokers.clone(),
    };
    tasks.spawn(probe.run(shared.shutdown.clone()));
    let mut ops = http::ops::OpsState {
        readiness,
        metrics: shared.metrics.clone(),
        feeds: None,
    };

    let mut addr = None;
    if args.components.runs_api() {
        let feeds = LiveFeeds::new(args.live_buffer);
        kafka_side.feeds = Some(feeds.clone());
        ops.feeds = Some(feeds.clone());
        let beside_api = args.ops_listen_addr.is_none().then(|| ops.clone());
        let router = api_router(
            &args,
            &shared,
            authenticator,
            feeds,
            beside_api,
            &connections,
        )?;
        let local = serve(&mut tasks, &shared.shutdown, args.listen_addr, router).await?;
        tracing::info!(addr = %local, "GraphQL at http://{local}/graphql, playground at http://{local}/");
        addr = Some(local);
    }
    let mut ops_local = None;
    let ops_addr = match (args.ops_listen_addr, args.components.runs_api()) {
        (Some(ops_addr), _) => Some(ops_addr),
        (None, false) => Some(args.listen_addr),
        (None, true) => None, // Served beside the API.
    };
    if let Some(ops_addr) = ops_addr {
        let router = http::with_request_ids(http::ops::router(ops));
        let local = serve(&mut tasks, &shared.shutdown, ops_addr, router).await?;
        tracing::info!(addr = %local, "operator endpoints at http://{local}/healthz, /readyz and /metrics");
        ops_local = Some(local);
    }

    tasks.spawn(kafka_side.run(shared.shutdown.clone()));
    if args.components.runs_consumers() && args.inbox_retention_hours > 0.0 {
        let pruner = crate::consumers::inbox::InboxPruner {
            pool: shared.pool.clone(),
            retention: Duration::try_from_secs_f64(args.inbox_retention_hours * 3600.0)
                .context("OMS_INBOX_RETENTION_HOURS must be 0 or more hours")?,
            metrics: shared.metrics.clone(),
        };
        tasks.spawn(pruner.run(shared.shutdown.clone()));
    }

    Ok(RunningApp {
        kafka_ready,
        addr,
        ops_addr: ops_local,
        shutdown: shared.shutdown,
        tasks,
        connections,
        grace: args.shutdown_grace(),
    })
}

/// The database connections `args` describe, migrated and seeded as they ask.
async fn prepare_database(args: &ServeArgs) -> anyhow::Result<db::Connections> {
    let database = db::connect(&args.database).context("configuring the database pool")?;
    if args.database.database_pooler == db::Pooler::Transaction {
        match &args.database.database_direct_url {
            Some(_) => tracing::info!(
                "behind a transaction-mode pooler: statements are prepared unnamed, each in a transaction; migrations and the relay's LISTEN use DATABASE_DIRECT_URL"
            ),
            None => tracing::warn!(
                "behind a transaction-mode pooler without DATABASE_DIRECT_URL: the outbox relay polls once a second instead of listening for other instances' wake-ups"
            ),
        }
    }
    if args.migrate {
        db::migrate(&args.database, &database).await?;
    }
    if args.seed {
        let created = seed::seed_demo_inventory(&database.db).await?;
        tracing::info!(created, "demo inventory seeded");
    }
    Ok(database)
}

/// The API's routes: GraphQL over HTTP and WebSocket, the playground and dashboard, and `ops`
/// when the operator endpoints have no address of their own.
fn api_router(
    args: &ServeArgs,
    shared: &Shared,
    authenticator: auth::Authenticator,
    feeds: LiveFeeds,
    ops: Option<http::ops::OpsState>,
    connections: &TaskTracker,
) -> anyhow::Result<axum::Router> {
    let requests = Arc::new(RequestRateLimiter::new(&args.limits));
    let schema = graphql::schema(
        shared.pool.clone(),
        graphql::Writers {
            placer: Placer::start_placing(
                shared.pool.clone(),
                args.place_batch_max,
                args.place_writers,
                &shared.metrics,
            ),
            status_requests: StatusRequests::start_queueing(
                shared.pool.clone(),
                shared.outbox.clone(),
                args.status_request_batch_max,
                args.status_request_writers,
                &shared.metrics,
            ),
            outbox: shared.outbox.clone(),
        },
        feeds,
        shared.metrics.clone(),
        args.limits.clone(),
        requests.clone(),
    );
    let dev_token = authenticator
        .signing_keys()
        .filter(|_| args.auth.dev_mode)
        .map(|keys| {
            keys.issue(
                "dev-staff",
                auth::Role::Staff,
                Duration::from_secs(7 * 24 * 3600),
            )
        });
    let mut state = HttpState::new(
        schema,
        authenticator,
        &args.limits,
        requests,
        shared.metrics.clone(),
        shared.shutdown.clone(),
        connections.clone(),
    );
    if let Some(token) = &dev_token {
        state.playground_headers =
            Arc::new(serde_json::json!({ "Authorization": format!("Bearer {token}") }).to_string());
        state.dashboard_token = Arc::new(token.clone());
    }
    let cors = http::cors(
        &args.cors_allowed_origins,
        &args.cors_allowed_headers,
        args.auth.dev_mode,
    )?;
    Ok(http::router(state, ops, cors))
}

/// Serves `router` on `addr` until shutdown; returns the address it listens on.
async fn serve(
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
    addr: SocketAddr,
    router: axum::Router,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    // Without TCP_NODELAY a subscription event written right after another small frame
    // waits for the client's delayed ACK (up to 40 ms on Linux).
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "setting TCP_NODELAY on a connection failed");
        }
    });
    let stop = shutdown.clone();
    tasks.spawn(async move {
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
        if let Err(error) = served {
            tracing::error!(%error, "HTTP server failed");
        }
    });
    Ok(local)
}

fn group_loop<H: crate::kafka::consume::Handler>(
    args: &ServeArgs,
    name: &'static str,
    stream: Stream,
    handler: H,
    dead_letters: &kafka::Producer,
    metrics: &Metrics,
) -> anyhow::Result<ConsumerLoop<H>> {
    let group = format!("{}-{name}", args.kafka.group_prefix);
    let consumer = kafka::group_consumer(&args.kafka, &group, metrics)?;
    let topic = args.kafka.topic(stream);
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    Ok(ConsumerLoop {
        name,
        consumer,
        handler,
        producer: dead_letters.clone(),
        dead_letter_topic: args.kafka.dead_letter_topic(stream),
        metrics: metrics.clone(),
        concurrency: args.consumer_concurrency(),
        queue: args.kafka.consumer_queue,
    })
}

/// Everything that talks to the broker: the outbox relay, the consumers and the live reader.
/// They start once the broker has answered and oms's topics exist. The consumers and the live
/// reader are created only then: a consumer created while the broker is away queues an error
/// for every failed connection, and would read through that backlog before any message.
struct KafkaSide {
    args: ServeArgs,
    /// Cancelled once everything runs.
    ready: CancellationToken,
    relay: Relay,
    /// The consumers' handlers, where this process runs them.
    handlers: Option<(InventoryHandler, OrdersHandler)>,
    /// The live feeds, where this process serves subscriptions.
    feeds: Option<LiveFeeds>,
    metrics: Metrics,
}

/// The first wait between attempts to reach the broker; it doubles up to [`MAX_KAFKA_BACKOFF`].
const FIRST_KAFKA_BACKOFF: Duration = Duration::from_secs(1);
const MAX_KAFKA_BACKOFF: Duration = Duration::from_secs(30);
/// How long one attempt to create the topics may take.
const KAFKA_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

impl KafkaSide {
    async fn run(self, shutdown: CancellationToken) {
        if !wait_for_topics(&self.args.kafka, &shutdown).await {
            return; // Stopped while waiting.
        }
        let mut running = JoinSet::new();
        let brokers = self.args.kafka.kafka_brokers.clone();
        let ready = self.ready.clone();
        if let Err(error) = self.start(&mut running, &shutdown).await {
            // Only a configuration librdkafka refuses gets here: stop, as a start-up error would.
            tracing::error!(error = %format!("{error:#}"), "starting the Kafka consumers failed; stopping");
            shutdown.cancel();
        } else {
            tracing::info!(
                %brokers,
                "Kafka is ready: the relay, consumers and live feed are running"
            );
            ready.cancel();
        }
        while running.join_next().await.is_some() {}
    }

    async fn start(
        self,
        running: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        // The live reader takes its place at the topics' end before the relay publishes what
        // waited in the outbox, so subscribers opened meanwhile receive it.
        if let Some(feeds) = &self.feeds {
            let reader = LiveReader::new(&self.args.kafka, feeds.clone(), self.metrics.clone())?
                .start_at_end()
                .await
                .context("starting the live reader")?;
            running.spawn(reader.run(shutdown.clone()));
        }
        running.spawn(self.relay.run(shutdown.clone()));
        if let Some((inventory, orders)) = self.handlers {
            let dead_letters = kafka::dead_letter_producer(&self.args.kafka)?;
            let inventory = group_loop(
                &self.args,
                "inventory",
                Stream::Inventory,
                inventory,
                &dead_letters,
                &self.metrics,
            )?;
            let orders = group_loop(
                &self.args,
                "orders",
                Stream::Orders,
                orders,
                &dead_letters,
                &self.metrics,
            )?;
            running.spawn(inventory.run(shutdown.clone()));
            running.spawn(orders.run(shutdown.clone()));
        }
        Ok(())
    }
}

/// Asks the broker to create oms's topics until it has, with backoff; one line per attempt says
/// what is awaited and where. False when the service stopped first.
async fn wait_for_topics(kafka: &crate::config::KafkaArgs, shutdown: &CancellationToken) -> bool {
    let brokers = &kafka.kafka_brokers;
    let mut backoff = FIRST_KAFKA_BACKOFF;
    for attempt in 1.. {
        let problem =
            match tokio::time::timeout(KAFKA_ATTEMPT_TIMEOUT, kafka::ensure_topics(kafka)).await {
                Ok(Ok(())) => return true,
                Ok(Err(error)) => format!("{error:#}"),
                Err(_) => format!("no answer within {} s", KAFKA_ATTEMPT_TIMEOUT.as_secs()),
            };
        tracing::warn!(
            "waiting for Kafka at {brokers} to create topics (attempt {attempt}, next in {} s): {problem}",
            backoff.as_secs()
        );
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_KAFKA_BACKOFF);
    }
    unreachable!("the attempts never run out")
}
