//! Builds the shared state, spawns the service's tasks and stops them gracefully.

use crate::config::ServeArgs;
use crate::consumers::{inventory::InventoryHandler, orders::OrdersHandler};
use crate::domain::events::Stream;
use crate::graphql;
use crate::graphql::rate_limit::RequestRateLimiter;
use crate::http::{self, HttpState};
use crate::kafka::consume::ConsumerLoop;
use crate::live::{LiveFeeds, LiveReader};
use crate::metrics::Metrics;
use crate::outbox::{OutboxWaker, Relay};
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

    /// A token cancelled when the service stops.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Starts the components `args` asks for.
pub async fn start(args: ServeArgs) -> anyhow::Result<RunningApp> {
    let keys = args.auth.keys()?;
    if args.auth.dev_mode {
        tracing::warn!(
            "LOCAL DEVELOPMENT MODE: tokens are signed with a publicly known secret and the \
             playground holds a staff token. Never expose this instance."
        );
    }
    let pool = db::connect_lazy(
        &args.database.database_url,
        args.database.database_max_connections,
    )
    .context("configuring the database pool")?;
    if args.migrate {
        db::create_database_if_missing(&args.database.database_url)
            .await
            .context("creating the database")?;
        db::MIGRATOR
            .run(&pool)
            .await
            .context("applying database migrations")?;
    }
    if args.seed {
        let created = seed::seed_demo_inventory(&pool).await?;
        tracing::info!(created, "demo inventory seeded");
    }
    ensure_topics_patiently(&args).await?;
    let producer = kafka::producer(&args.kafka)?;

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let connections = TaskTracker::new();

    let metrics = Metrics::new();
    let outbox = OutboxWaker::default();
    let relay = Relay::new(
        pool.clone(),
        producer.clone(),
        args.kafka.clone(),
        args.outbox_batch,
        metrics.clone(),
        outbox.clone(),
    );
    tasks.spawn(relay.run(shutdown.clone()));

    if args.components.runs_consumers() {
        let dead_letters = kafka::dead_letter_producer(&args.kafka)?;
        let inventory = group_loop(
            &args,
            "inventory",
            Stream::Inventory,
            InventoryHandler {
                pool: pool.clone(),
                outbox: outbox.clone(),
                metrics: metrics.clone(),
            },
            &dead_letters,
            &metrics,
        )?;
        tasks.spawn(inventory.run(shutdown.clone()));
        let orders = group_loop(
            &args,
            "orders",
            Stream::Orders,
            OrdersHandler {
                pool: pool.clone(),
                outbox: outbox.clone(),
                metrics: metrics.clone(),
            },
            &dead_letters,
            &metrics,
        )?;
        tasks.spawn(orders.run(shutdown.clone()));
    }

    let readiness = http::ops::Readiness::default();
    let probe = http::ops::Probe {
        pool: pool.clone(),
        producer: producer.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    // The first look before serving, so `/readyz` speaks from the start.
    probe.run_once().await;
    tasks.spawn(probe.run(shutdown.clone()));
    let mut ops = http::ops::OpsState {
        readiness,
        metrics: metrics.clone(),
        feeds: None,
    };

    let mut addr = None;
    if args.components.runs_api() {
        let feeds = LiveFeeds::new(args.live_buffer);
        let reader = LiveReader::start(&args.kafka, feeds.clone())
            .await
            .context("starting the live reader")?;
        tasks.spawn(reader.run(shutdown.clone()));
        ops.feeds = Some(feeds.clone());
        let requests = Arc::new(RequestRateLimiter::new(&args.limits));
        let schema = graphql::schema(
            pool.clone(),
            outbox.clone(),
            feeds,
            metrics.clone(),
            args.limits.clone(),
            requests.clone(),
        );
        let dev_token = args.auth.dev_mode.then(|| {
            keys.issue(
                "dev-staff",
                auth::Role::Staff,
                Duration::from_secs(7 * 24 * 3600),
            )
        });
        let mut state = HttpState::new(
            schema,
            keys,
            &args.limits,
            requests,
            shutdown.clone(),
            connections.clone(),
        );
        if let Some(token) = &dev_token {
            state.playground_headers = Arc::new(
                serde_json::json!({ "Authorization": format!("Bearer {token}") }).to_string(),
            );
            state.dashboard_token = Arc::new(token.clone());
        }
        let cors = http::cors(&args.cors_allowed_origins, args.auth.dev_mode)?;
        let beside_api = args.ops_listen_addr.is_none().then(|| ops.clone());
        let router = http::router(state, beside_api, cors);
        let local = serve(&mut tasks, &shutdown, args.listen_addr, router).await?;
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
        let router = http::with_common_layers(http::ops::router(ops));
        let local = serve(&mut tasks, &shutdown, ops_addr, router).await?;
        tracing::info!(addr = %local, "operator endpoints at http://{local}/healthz, /readyz and /metrics");
        ops_local = Some(local);
    }

    Ok(RunningApp {
        addr,
        ops_addr: ops_local,
        shutdown,
        tasks,
        connections,
        grace: args.shutdown_grace(),
    })
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
    dead_letters: &rdkafka::producer::FutureProducer,
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
    })
}

/// The broker may still be starting: keep asking for half a minute before giving up.
async fn ensure_topics_patiently(args: &ServeArgs) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match kafka::ensure_topics(&args.kafka).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < 15 => {
                tracing::warn!(error = ?error, attempt, "Kafka not ready yet; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(error) => return Err(error.context("Kafka topics could not be ensured")),
        }
    }
}
