//! One log line per API request at info (target `oms::access`): method, path, status, duration,
//! request id and, for GraphQL, the operation's name and kind and who asked; and the GraphQL
//! request metrics by operation.

use crate::metrics::Metrics;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// What the GraphQL handler knows of a request, handed to the access log in the response.
#[derive(Clone, Debug, Default)]
pub struct GraphqlRequest {
    /// The operation's name, when it has one.
    pub operation: Option<String>,
    /// `query`, `mutation` or `subscription` (empty when the document did not parse).
    pub kind: &'static str,
    /// The caller's user id, or `anonymous`.
    pub user: String,
    /// GraphQL errors in the answer.
    pub errors: usize,
}

/// The middleware: times the request, then logs it and records its metrics.
pub async fn log_request(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    match response.extensions().get::<GraphqlRequest>() {
        Some(graphql) => {
            let outcome = if status >= 400 || graphql.errors > 0 {
                "error"
            } else {
                "ok"
            };
            metrics.record_graphql_request(
                graphql.operation.as_deref(),
                graphql.kind,
                outcome,
                elapsed,
            );
            tracing::info!(
                target: "oms::access",
                %method,
                path,
                status,
                duration_ms,
                request_id,
                operation = graphql.operation.as_deref().unwrap_or(""),
                kind = graphql.kind,
                user = graphql.user,
                errors = graphql.errors,
                "request"
            );
        }
        None => tracing::info!(
            target: "oms::access",
            %method,
            path,
            status,
            duration_ms,
            request_id,
            "request"
        ),
    }
    response
}
