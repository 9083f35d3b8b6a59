//! The operator endpoints: `/healthz` (alive), `/readyz` (ready to serve) and `/metrics`
//! (Prometheus). They never wait on the database or the broker: a probe task checks both in
//! the background and these endpoints answer from its latest report, so a scraper or a load
//! balancer's health checks cannot take connections from the API or block a runtime thread,
//! and an overloaded database cannot make them hang.

use crate::db::Db;
use crate::live::LiveFeeds;
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
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

/// The probe's latest report, once it has looked.
#[derive(Clone, Default)]
pub struct Readiness {
    report: Arc<RwLock<Option<Report>>>,
}

#[derive(Clone)]
struct Report {
    /// What keeps the service from being ready (none: ready).
    problems: Vec<String>,
    /// What is missing without making it unready (the broker, with `OMS_READY_REQUIRES_KAFKA`
    /// off).
    degraded: Vec<String>,
}

/// What the probe checks.
pub struct Probe {
    pub pool: Db,
    pub producer: crate::kafka::Producer,
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// Whether an unreachable broker makes the service not ready (else it is only reported).
    pub requires_kafka: bool,
    /// Cancelled once the relay, consumers and live reader run.
    pub kafka_ready: CancellationToken,
    /// Where the broker is, for the report.
    pub brokers: String,
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
        if let Ok(Ok(age)) = tokio::time::timeout(
            PROBE_TIMEOUT,
            crate::db::orders::oldest_pending_age_seconds(&self.pool),
        )
        .await
        {
            self.metrics.orders_pending_oldest_seconds.set(age);
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
        let kafka_problem = if !self.kafka_ready.is_cancelled() {
            Some(format!(
                "waiting for Kafka at {} to create topics",
                self.brokers
            ))
        } else if !matches!(broker, Ok(Ok(()))) {
            Some("Kafka broker unreachable".to_owned())
        } else {
            None
        };
        let mut degraded = Vec::new();
        if let Some(problem) = kafka_problem {
            if self.requires_kafka {
                problems.push(problem);
            } else {
                degraded.push(problem);
            }
        }
        *self.readiness.report.write().expect("never poisoned") =
            Some(Report { problems, degraded });
    }

    /// Looks now, then every [`PROBE_INTERVAL`], and at once when the Kafka side starts, until
    /// shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut kafka_was_ready = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.run_once() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                _ = self.kafka_ready.cancelled(), if !kafka_was_ready => {}
            }
            kafka_was_ready = self.kafka_ready.is_cancelled();
        }
    }
}

/// Ready when the probe last found the database migrated and reachable and (unless the broker
/// is not required) the broker answering.
async fn readyz(State(state): State<OpsState>) -> Response {
    let report = state
        .readiness
        .report
        .read()
        .expect("never poisoned")
        .clone();
    let (status, body) = match report {
        Some(report) if report.problems.is_empty() && report.degraded.is_empty() => {
            (StatusCode::OK, serde_json::json!({ "status": "ready" }))
        }
        Some(report) if report.problems.is_empty() => (
            StatusCode::OK,
            serde_json::json!({ "status": "ready", "degraded": report.degraded }),
        ),
        Some(report) => {
            let mut problems = report.problems;
            problems.extend(report.degraded);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "status": "not ready", "problems": problems }),
            )
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "starting", "problems": ["not checked yet"] }),
        ),
    };
    (status, Json(body)).into_response()
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
