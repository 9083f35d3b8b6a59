//! The operator endpoints: `/healthz` (alive), `/readyz` (ready to serve) and `/metrics`
//! (Prometheus). They never wait on the database or the broker: a probe task checks both in
//! the background and these endpoints answer from its latest report, so a scraper or a load
//! balancer's health checks cannot take connections from the API or block a runtime thread,
//! and an overloaded database cannot make them hang.

use crate::live::LiveFeeds;
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sqlx::PgPool;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the probe looks at the database and the broker.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// The longest one look may take before its dependency counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the operator endpoints need.
#[derive(Clone)]
pub struct OpsState {
    pub readiness: Readiness,
    pub metrics: Metrics,
    /// The live feeds, where this process serves subscriptions.
    pub feeds: Option<LiveFeeds>,
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The probe's latest report: the problems it found (none: ready).
#[derive(Clone, Default)]
pub struct Readiness {
    problems: Arc<RwLock<Option<Vec<String>>>>,
}

/// What the probe checks.
pub struct Probe {
    pub pool: PgPool,
    pub producer: rdkafka::producer::FutureProducer,
    pub metrics: Metrics,
    pub readiness: Readiness,
}

impl Probe {
    /// Looks once: the database (migrations applied), the broker (metadata answered) and the
    /// outbox backlog (for `/metrics`).
    pub async fn run_once(&self) {
        let mut problems = Vec::new();
        match tokio::time::timeout(PROBE_TIMEOUT, crate::db::pending_migrations(&self.pool)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(pending)) => {
                problems.push(format!("{pending} database migrations are not applied"))
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: database check failed");
                problems.push("database unreachable".to_owned());
            }
            Err(_) => problems.push("database not answering".to_owned()),
        }
        if let Ok(Ok((waiting, oldest_age))) =
            tokio::time::timeout(PROBE_TIMEOUT, crate::db::outbox::backlog(&self.pool)).await
        {
            self.metrics.outbox_backlog.set(waiting);
            self.metrics.outbox_oldest_age_seconds.set(oldest_age);
        }
        let producer = self.producer.clone();
        // librdkafka's metadata call blocks its thread for up to the timeout.
        let broker = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer
                .client()
                .fetch_metadata(None, PROBE_TIMEOUT)
                .map(|_| ())
        })
        .await;
        if !matches!(broker, Ok(Ok(()))) {
            problems.push("Kafka broker unreachable".to_owned());
        }
        *self.readiness.problems.write().expect("never poisoned") = Some(problems);
    }

    /// Looks every [`PROBE_INTERVAL`] until shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PROBE_INTERVAL) => self.run_once().await,
            }
        }
    }
}

/// Ready when the probe last found the database migrated and reachable and the broker
/// answering.
async fn readyz(State(state): State<OpsState>) -> Response {
    let report = state
        .readiness
        .problems
        .read()
        .expect("never poisoned")
        .clone();
    match report {
        Some(problems) if problems.is_empty() => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response(),
        Some(problems) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not ready", "problems": problems })),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "starting", "problems": ["not checked yet"] })),
        )
            .into_response(),
    }
}

/// Prometheus metrics; the outbox gauges are the probe's latest reading.
async fn metrics(State(state): State<OpsState>) -> Response {
    if let Some(feeds) = &state.feeds {
        // Every receiver of the live feed is one subscription.
        state
            .metrics
            .live_subscriptions
            .set(feeds.subscriber_count() as i64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
