//! OpenTelemetry traces: oms runs as a process of its own (the tracer is process-wide) and
//! exports over OTLP/HTTP with JSON to a receiver the test runs on loopback.

use crate::helpers::{
    free_port, serve_locally, spawn_oms_process_with_env, wait_until_ready, Deployment, TestApp,
};
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One exported span: its trace, its name and its parent.
#[derive(Clone, Debug)]
struct ExportedSpan {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with JSON bodies.
struct OtlpReceiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    async fn start() -> OtlpReceiver {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route(
                "/v1/traces",
                post(
                    |State(spans): State<Arc<Mutex<Vec<ExportedSpan>>>>,
                     Json(body): Json<Value>| async move {
                        spans.lock().unwrap().extend(spans_of(&body));
                        Json(serde_json::json!({}))
                    },
                ),
            )
            .with_state(spans.clone());
        let (addr, server) = serve_locally(0, router).await;
        OtlpReceiver {
            endpoint: format!("http://{addr}"),
            spans,
            server,
        }
    }

    fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The spans of an OTLP JSON export request.
fn spans_of(body: &Value) -> Vec<ExportedSpan> {
    let empty = Vec::new();
    let array = |value: &Value, name: &str| value[name].as_array().unwrap_or(&empty).clone();
    let text = |value: &Value, name: &str| value[name].as_str().unwrap_or_default().to_owned();
    array(body, "resourceSpans")
        .iter()
        .flat_map(|resource| array(resource, "scopeSpans"))
        .flat_map(|scope| array(&scope, "spans"))
        .map(|span| ExportedSpan {
            trace_id: text(&span, "traceId"),
            span_id: text(&span, "spanId"),
            parent_span_id: text(&span, "parentSpanId"),
            name: text(&span, "name"),
        })
        .collect()
}

#[tokio::test]
async fn one_trace_follows_an_order_from_its_request_across_kafka_to_the_push_to_subscribers() {
    let receiver = OtlpReceiver::start().await;
    let deployment = Deployment::new();
    let port = free_port();
    let listen = format!("--listen-addr=127.0.0.1:{port}");
    let _process = spawn_oms_process_with_env(
        &deployment,
        &[&listen],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            // The spans the log filter enables are the spans exported.
            ("RUST_LOG", "warn,oms=info"),
        ],
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until_ready(addr).await;
    let app = TestApp::attach(addr, deployment).await;
    app.stock("HORN", 3).await;
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("HORN", 1)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;

    // Every step of the order, in one trace, wherever oms exported it from.
    let steps = [
        "http",
        "place order",
        "outbox publish",
        "consume",
        "inventory check",
        "push to subscribers",
    ];
    let trace = crate::helpers::eventually(Duration::from_secs(30), || async {
        let spans = receiver.spans();
        let placing = spans.iter().find(|span| span.name == "place order");
        let trace: Vec<ExportedSpan> = placing
            .map(|placing| {
                spans
                    .iter()
                    .filter(|span| span.trace_id == placing.trace_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let names: HashSet<&str> = trace.iter().map(|span| span.name.as_str()).collect();
        if steps.iter().all(|step| names.contains(step)) {
            Ok(trace)
        } else {
            Err(format!(
                "order {order_id}: the trace holds {names:?}, not all of {steps:?}"
            ))
        }
    })
    .await;
    // One root, the HTTP request; every other span hangs below a span of the same trace.
    let roots: Vec<&str> = trace
        .iter()
        .filter(|span| span.parent_span_id.is_empty())
        .map(|span| span.name.as_str())
        .collect();
    assert_eq!(roots, ["http"], "{trace:#?}");
    let ids: HashSet<&str> = trace.iter().map(|span| span.span_id.as_str()).collect();
    assert!(
        trace
            .iter()
            .filter(|span| !span.parent_span_id.is_empty())
            .all(|span| ids.contains(span.parent_span_id.as_str())),
        "{trace:#?}"
    );
    use sqlx::migrate::MigrateDatabase;
    let _ = sqlx::Postgres::force_drop_database(&app.deployment.database_url).await;
}
