//! The HTTP surface: `POST|GET /graphql`, the WebSocket at `/graphql/ws` (both
//! `graphql-transport-ws` and the legacy `graphql-ws` subprotocols), the GraphiQL playground at
//! `/`, the live dashboard at `/dashboard`, and the operator endpoints (`ops`) unless they have
//! an address of their own.
//!
//! Here: the router, its layers and the state the handlers share. The GraphQL endpoint over
//! HTTP is `graphql_endpoint`, over WebSocket `websocket`; the operator endpoints [`ops`];
//! the playground's page and assets [`playground`]. The per-address and per-user limits are in
//! [`HttpState`] (requests, WebSocket connections) and the schema (operations per connection).

pub mod access_log;
pub mod client;
mod graphql_endpoint;
pub mod ops;
mod parsed_documents;
pub mod persisted_queries;
pub mod playground;
mod websocket;

use crate::auth::Authenticator;
use crate::config::ApiLimits;
use crate::error::AppError;
use crate::graphql::guard::DocumentLimits;
use crate::graphql::rate_limit::RequestRateLimiter;
use crate::graphql::OmsSchema;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use client::ConnectionCounts;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

const DASHBOARD: &str = include_str!("../../web-playground/dashboard.html");

/// Largest request body accepted on `/graphql`.
const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct HttpState {
    pub schema: OmsSchema,
    pub authenticator: Authenticator,
    /// Headers the playground starts with (a staff token in development mode).
    pub playground_headers: Arc<String>,
    /// The token the dashboard's sign-in form starts with (a staff token in development mode,
    /// empty otherwise).
    pub dashboard_token: Arc<String>,
    /// Cancelled when the service stops: WebSockets are then closed with 1001 (going away).
    pub shutdown: CancellationToken,
    /// Tracks WebSocket connections, so shutdown can wait for their close frames.
    pub connections: TaskTracker,
    pub limits: ApiLimits,
    pub metrics: crate::metrics::Metrics,
    pub document_limits: Arc<DocumentLimits>,
    /// Requests per user, or per address for anonymous callers (shared with the schema, which
    /// counts WebSocket operations).
    pub requests: Arc<RequestRateLimiter>,
    /// WebSocket connections per user on this instance.
    pub connections_per_user: Arc<ConnectionCounts<String>>,
    /// WebSocket connections per IP address on this instance.
    pub connections_per_ip: Arc<ConnectionCounts<IpAddr>>,
    /// Documents kept by hash for automatic persisted queries.
    pub persisted_queries: Arc<persisted_queries::PersistedQueries>,
    /// Parsed documents kept by their text.
    parsed_documents: Arc<parsed_documents::ParsedDocuments>,
}

impl HttpState {
    pub fn new(
        schema: OmsSchema,
        authenticator: Authenticator,
        limits: &ApiLimits,
        requests: Arc<RequestRateLimiter>,
        metrics: crate::metrics::Metrics,
        shutdown: CancellationToken,
        connections: TaskTracker,
    ) -> Self {
        HttpState {
            schema,
            authenticator,
            playground_headers: Arc::new("{}".to_owned()),
            dashboard_token: Arc::new(String::new()),
            shutdown,
            connections,
            limits: limits.clone(),
            metrics,
            document_limits: Arc::new(DocumentLimits::from_api_limits(limits)),
            requests,
            connections_per_user: Arc::new(ConnectionCounts::new(limits.max_connections_per_user)),
            connections_per_ip: Arc::new(ConnectionCounts::new(limits.max_connections_per_ip)),
            parsed_documents: Arc::default(),
            persisted_queries: Arc::new(persisted_queries::PersistedQueries::new(
                limits.persisted_queries,
                limits.max_query_bytes,
            )),
        }
    }

    fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        client::client_ip(peer, headers, self.limits.trust_x_forwarded_for)
    }
}

/// The API's routes; with `ops`, the operator endpoints too.
pub fn router(
    state: HttpState,
    ops: Option<ops::OpsState>,
    cors: tower_http::cors::CorsLayer,
) -> Router {
    let metrics = state.metrics.clone();
    let api = with_request_layers(
        Router::new()
            .route("/", get(playground::page))
            .route("/playground.js", get(playground::script))
            .route("/assets/{name}", get(playground::asset))
            .route("/dashboard", get(dashboard))
            .route(
                "/graphql",
                get(graphql_endpoint::graphql).post(graphql_endpoint::graphql),
            )
            .route("/graphql/ws", get(websocket::graphql_ws))
            // Shared, so that each request holds one reference rather than a copy of every field.
            .with_state(Arc::new(state))
            .layer(axum::middleware::from_fn_with_state(
                metrics,
                access_log::log_request,
            )),
    );
    // The operator endpoints are merged after the request layers, so a load balancer's probes
    // of an instance that is not ready are not logged as failed requests every second.
    let routes = match ops {
        Some(ops) => api.merge(ops::router(ops)),
        None => api,
    };
    with_request_ids(routes).layer(cors)
}

/// Every request gets an id (or keeps the caller's `x-request-id`): it is in every log line of
/// the request and in the response, so a client's report can be found in the logs.
pub fn with_request_ids(routes: Router) -> Router {
    routes
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The API's request layers: the body limit, tracing (with the request id) and compression.
fn with_request_layers(routes: Router) -> Router {
    routes
        // gzip or brotli when the client asks (Accept-Encoding) and the answer is worth it
        // (over 32 bytes); a WebSocket upgrade has no body, so it is left alone.
        .layer(tower_http::compression::CompressionLayer::new())
        // GraphQLRequest reads the raw body, so the limit must wrap the body itself.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                let id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let span = tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id, operation = tracing::field::Empty, otel.kind = "server");
                // A client that traces (OpenTelemetry in the browser) makes this request part
                // of its trace.
                let traceparent = request.headers().get(crate::telemetry::TRACEPARENT).and_then(|v| v.to_str().ok());
                crate::telemetry::continue_trace(&span, traceparent);
                span
            }),
        )
        .layer(axum::middleware::map_response(json_for_too_large))
}

/// The live dashboard: one page, no external assets. It may hold a token, so it is not cached,
/// and it may only talk to this origin.
async fn dashboard(State(state): State<Arc<HttpState>>) -> Response {
    let page = DASHBOARD.replace("__OMS_DASHBOARD_TOKEN__", &state.dashboard_token);
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
            ),
        ],
        Html(page),
    )
        .into_response()
}

/// Which browser origins may call the API: none unless configured (any in development mode).
/// Browsers may call the API from `allowed_origins` (any in development mode without a list),
/// sending `Authorization`, `Content-Type` and `allowed_headers`, and may read `x-request-id`
/// from the answers.
pub fn cors(
    allowed_origins: &[String],
    allowed_headers: &[String],
    dev_mode: bool,
) -> anyhow::Result<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = if dev_mode && allowed_origins.is_empty() {
        AllowOrigin::any()
    } else {
        let parsed = allowed_origins
            .iter()
            .map(|origin| {
                origin.parse().map_err(|_| {
                    anyhow::anyhow!("CORS origin {origin:?} is not a valid header value")
                })
            })
            .collect::<anyhow::Result<Vec<axum::http::HeaderValue>>>()?;
        AllowOrigin::list(parsed)
    };
    let mut headers = vec![header::AUTHORIZATION, header::CONTENT_TYPE];
    for name in allowed_headers
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
    {
        headers.push(name.parse().map_err(|_| {
            anyhow::anyhow!("CORS_ALLOWED_HEADERS: {name:?} is not a valid header name")
        })?);
    }
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(headers)
        .expose_headers([REQUEST_ID])
        .max_age(Duration::from_secs(3600)))
}

/// A response carrying one GraphQL error, for failures before the request reaches the schema.
fn graphql_error(status: StatusCode, error: AppError) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": error.to_string(), "extensions": { "code": error.code() } }]
    });
    (status, Json(body)).into_response()
}

/// The body-limit layer answers 413 in plain text before any handler runs; clients get the
/// same JSON error shape as every other failure.
async fn json_for_too_large(response: Response) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    graphql_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        AppError::BadUserInput(format!(
            "the request body is larger than {MAX_BODY_BYTES} bytes"
        )),
    )
}
