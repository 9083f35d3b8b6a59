//! The HTTP surface: `POST|GET /graphql`, the WebSocket at `/graphql/ws` (both
//! `graphql-transport-ws` and the legacy `graphql-ws` subprotocols), the GraphiQL playground at
//! `/`, the live dashboard at `/dashboard`, and the operator endpoints (`ops`) unless they have
//! an address of their own.

pub mod access_log;
pub mod client;
pub mod ops;
mod parsed_documents;
pub mod persisted_queries;
pub mod playground;

use crate::auth::{Authenticator, Viewer};
use crate::config::ApiLimits;
use crate::error::AppError;
use crate::graphql::guard::DocumentLimits;
use crate::graphql::rate_limit::{Caller, RequestRateLimiter, WebSocketClient};
use crate::graphql::subscription::SubscriptionSlots;
use crate::graphql::OmsSchema;
use access_log::GraphqlRequest;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::{close_code, CloseFrame, Message};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use client::{ConnectionCounts, ConnectionSlot};
use futures_util::{SinkExt, StreamExt};
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
            .route("/graphql", get(graphql).post(graphql))
            .route("/graphql/ws", get(graphql_ws))
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

async fn graphql(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    request: Result<GraphQLRequest, async_graphql_axum::rejection::GraphQLRejection>,
) -> Response {
    let mut seen = GraphqlRequest {
        user: "anonymous".to_owned(),
        ..Default::default()
    };
    let mut response = answer(&state, peer, &method, &headers, request, &mut seen).await;
    if !response.status().is_success() {
        seen.errors = seen.errors.max(1);
    }
    response.extensions_mut().insert(seen);
    response
}

/// The answer to one GraphQL request over HTTP; `seen` gathers what the access log says of it.
async fn answer(
    state: &HttpState,
    peer: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
    request: Result<GraphQLRequest, async_graphql_axum::rejection::GraphQLRejection>,
    seen: &mut GraphqlRequest,
) -> Response {
    let request = match request {
        Ok(request) => request,
        Err(rejection) if matches!(rejection.0, async_graphql::ParseRequestError::PayloadTooLarge) => {
            return graphql_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                AppError::BadUserInput(format!("the request body is larger than {MAX_BODY_BYTES} bytes")),
            );
        }
        // The library's own rejection text names its internals; say what is expected instead.
        Err(_) => return graphql_error(
            StatusCode::BAD_REQUEST,
            AppError::BadUserInput(
                "the request must be JSON {\"query\": string, \"variables\": object, \"operationName\": string} (or the same as GET parameters); batches are not accepted".into(),
            ),
        ),
    };
    let mut request = request.into_inner();
    let mut viewer = None;
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let verified = match value.to_str() {
            Ok(value) => state.authenticator.verify_authorization(value).await,
            Err(_) => Err(crate::auth::AuthError::MalformedHeader),
        };
        match verified {
            Ok(verified) => {
                seen.user = verified.user_id.clone();
                viewer = Some(verified);
            }
            Err(error) => {
                return graphql_error(
                    StatusCode::UNAUTHORIZED,
                    AppError::Unauthenticated(error.to_string()),
                )
            }
        }
    }
    let caller = match &viewer {
        Some(viewer) => Caller::User(&viewer.user_id),
        None => Caller::Anonymous(state.client_ip(peer, headers)),
    };
    if let Err(retry_after) = state.requests.check(caller) {
        return rate_limited(retry_after);
    }
    if let Some(viewer) = viewer {
        request = request.data(viewer);
    }
    // A persisted query's document, before anything looks at it.
    if let Err(refusal) = state.persisted_queries.resolve(&mut request) {
        seen.errors = 1;
        return refused(&refusal.message, refusal.code);
    }
    // The text's size, tokens and nesting before anything here parses it (the schema's guard
    // checks the rest).
    if let Err(refusal) = crate::graphql::guard::check_text(&request.query, &state.document_limits)
    {
        seen.errors = 1;
        return refused(&refusal.message, refusal.code);
    }
    state.parsed_documents.parse(&mut request);
    (seen.operation, seen.kind) = operation_of(&mut request);
    if let Some(operation) = &seen.operation {
        tracing::Span::current().record("operation", operation.as_str());
    }
    if method == Method::GET && changes_state(&mut request) {
        return graphql_error(
            StatusCode::METHOD_NOT_ALLOWED,
            AppError::BadUserInput(
                "mutations and subscriptions need POST (or the WebSocket)".into(),
            ),
        );
    }
    if !state.limits.introspection && asks_for_introspection(&mut request) {
        seen.errors = 1;
        return refused(
            "introspection is disabled on this server",
            "INTROSPECTION_DISABLED",
        );
    }
    let mut response = state.schema.execute(request).await;
    seen.errors = response.errors.len();
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    label_errors(&mut response.errors, request_id);
    GraphQLResponse::from(response).into_response()
}

/// A request refused before execution: HTTP 200 with one error and its code, as GraphQL
/// clients read a failed operation.
fn refused(message: &str, code: &str) -> Response {
    let body = serde_json::json!({ "errors": [{
        "message": message, "extensions": { "code": code }
    }]});
    (StatusCode::OK, Json(body)).into_response()
}

/// HTTP 429 with `Retry-After`, and the same `RATE_LIMITED` error a WebSocket operation gets.
fn rate_limited(retry_after: Duration) -> Response {
    let error = AppError::RateLimited {
        what: "requests",
        retry_after,
    };
    let body = serde_json::json!({ "errors": [{
        "message": error.to_string(),
        "extensions": { "code": error.code(), "retryAfterMs": retry_after.as_millis() as u64 }
    }]});
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, seconds.to_string())],
        Json(body),
    )
        .into_response()
}

/// Every error leaves with a stable code (the schema labels its own; anything else is a failed
/// validation), and errors worth reporting carry the request id that is in the logs.
fn label_errors(errors: &mut [async_graphql::ServerError], request_id: &str) {
    for error in errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        let code = match extensions.get("code") {
            Some(code) => code.to_string().trim_matches('"').to_owned(),
            None => {
                extensions.set("code", "GRAPHQL_VALIDATION_FAILED");
                "GRAPHQL_VALIDATION_FAILED".to_owned()
            }
        };
        if matches!(code.as_str(), "INTERNAL" | "UNAVAILABLE") && !request_id.is_empty() {
            extensions.set("requestId", request_id);
        }
    }
}

/// The name and kind of the operation a request runs (the named one, or the only one).
fn operation_of(request: &mut async_graphql::Request) -> (Option<String>, &'static str) {
    use async_graphql::parser::types::OperationType;
    let wanted = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return (wanted, "");
    };
    let selected = document
        .operations
        .iter()
        .find(|(name, _)| wanted.is_none() || name.map(|n| n.as_str()) == wanted.as_deref());
    match selected {
        Some((name, operation)) => (
            name.map(|name| name.to_string()),
            match operation.node.ty {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            },
        ),
        None => (wanted, ""),
    }
}

/// Whether the operation a request would run is not a query (GraphQL over HTTP: GET must not
/// change anything).
fn changes_state(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::OperationType;
    let wanted = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false; // The schema reports the syntax error.
    };
    document.operations.iter().any(|(name, operation)| {
        let selected = wanted.is_none() || name.map(|n| n.as_str()) == wanted.as_deref();
        selected && operation.node.ty != OperationType::Query
    })
}

/// Whether a request selects `__schema` or `__type` at its top level.
fn asks_for_introspection(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::Selection;
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    document.operations.iter().any(|(_, operation)| {
        operation.node.selection_set.node.items.iter().any(|item| {
            matches!(&item.node, Selection::Field(field)
                if matches!(field.node.name.node.as_str(), "__schema" | "__type"))
        })
    })
}

async fn graphql_ws(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let ip = state.client_ip(peer, &headers);
    // Counted from the upgrade, so connections that never sign in (or never send
    // `connection_init`) are bounded too.
    let Some(ip_slot) = state.connections_per_ip.acquire(ip) else {
        return graphql_error(
            StatusCode::TOO_MANY_REQUESTS,
            AppError::RateLimited {
                what: "WebSocket connections from this address",
                retry_after: Duration::from_secs(1),
            },
        );
    };
    let connections = state.connections.clone();
    let max_message = state.limits.max_ws_message_bytes;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        // tungstenite's default 128 KiB read buffer per connection would dominate the memory of
        // an idle subscription; messages here are small, and the buffer grows when needed.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| {
            connections.track_future(async move {
                serve_websocket(state, protocol, socket, ip).await;
                drop(ip_slot);
            })
        })
}

/// Where a WebSocket connection stands with `connection_init`.
#[derive(Clone, Copy)]
enum Init {
    Waiting,
    /// Acknowledged; with a token, the time it stops being accepted.
    Done {
        expires_at: Option<u64>,
    },
}

/// One WebSocket connection: the GraphQL protocol, plus a writer that closes the socket with a
/// clear code when the service stops (1001), `connection_init` does not come in time (4408) or
/// the token expires (4401). Once the writer has closed, nothing more is read: the connection
/// ends whatever the client does.
async fn serve_websocket(
    state: Arc<HttpState>,
    protocol: GraphQLProtocol,
    socket: axum::extract::ws::WebSocket,
    ip: IpAddr,
) {
    let (socket_sink, socket_stream) = socket.split();
    // The protocol writes into a channel; the writer forwards it to the socket.
    let (outgoing, mut to_send) = futures_channel::mpsc::channel::<Message>(64);
    // Cancelled when the writer stops (shutdown, token expiry, a vanished client): the protocol
    // then reads nothing more, so nothing else runs on this connection, and once both halves are
    // dropped the TCP connection closes.
    let connection_closed = state.shutdown.child_token();
    let incoming = socket_stream.take_until(connection_closed.clone().cancelled_owned());
    let (init_tx, mut init) = tokio::sync::watch::channel(Init::Waiting);
    let init_state = state.clone();
    let protocol =
        GraphQLWebSocket::new_with_pair(outgoing, incoming, state.schema.clone(), protocol)
            .on_connection_init(move |payload| async move {
                let mut data = async_graphql::Data::default();
                data.insert(SubscriptionSlots::new(
                    init_state.limits.max_subscriptions_per_connection,
                ));
                data.insert(WebSocketClient { ip });
                let viewer = viewer_from_init_payload(&init_state.authenticator, &payload).await?;
                if let Some(viewer) = &viewer {
                    let slot = init_state
                        .connections_per_user
                        .acquire(viewer.user_id.clone())
                        .ok_or_else(|| {
                            async_graphql::Error::new(format!(
                                "{TOO_MANY_CONNECTIONS}: at most {} WebSocket connections per user",
                                init_state.connections_per_user.max()
                            ))
                        })?;
                    data.insert::<ConnectionSlot<String>>(slot);
                    data.insert(viewer.clone());
                }
                let _ = init_tx.send(Init::Done {
                    expires_at: viewer.map(|viewer| viewer.expires_at),
                });
                Ok(data)
            })
            .serve();
    let shutdown = state.shutdown.clone();
    let ping_interval_secs = state.limits.ws_ping_interval_secs;
    let init_timeout = Duration::from_secs(state.limits.ws_init_timeout_secs.max(1));
    let writer = async move {
        let mut sink = socket_sink;
        // Resolves with the close frame when the connection must end on its own terms.
        let must_close = async {
            let initialised = tokio::time::timeout(
                init_timeout,
                init.wait_for(|state| matches!(state, Init::Done { .. })),
            )
            .await
            .map(|state| state.map(|state| *state));
            let expires_at = match initialised {
                Err(_) => return close(4408, "connection_init was not sent in time"),
                Ok(Ok(Init::Done { expires_at })) => expires_at,
                // The protocol ended (a refused `connection_init`); the writer ends with it.
                Ok(_) => None,
            };
            let Some(at) = expires_at else {
                return std::future::pending().await;
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            tokio::time::sleep(Duration::from_secs(at.saturating_sub(now))).await;
            close(4401, "token expired; reconnect with a fresh token")
        };
        tokio::pin!(must_close);
        let ping_every = Duration::from_secs(ping_interval_secs.max(1));
        let mut pings =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        loop {
            tokio::select! {
                // Shutdown first: it also ends the protocol's stream, and then the close frame
                // must be ours (1001), not a bare close.
                biased;
                _ = shutdown.cancelled() => {
                    let _ = sink.send(close(close_code::AWAY, "server shutting down; reconnect")).await;
                    break;
                }
                frame = &mut must_close => {
                    let _ = sink.send(frame).await;
                    break;
                }
                _ = pings.tick(), if ping_interval_secs > 0 => {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break; // The client is gone.
                    }
                }
                message = to_send.next() => match message {
                    Some(message) => {
                        if sink.send(refusal_close_code(message)).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
        connection_closed.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    };
    futures_util::future::join(protocol, writer).await;
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

const TOO_MANY_CONNECTIONS: &str = "too many connections";

/// A refused `connection_init` is closed with a code that says why, not the library's generic
/// 1002: 4403 Forbidden for a bad token (as graphql-ws recommends), 1008 policy violation for
/// too many connections.
fn refusal_close_code(message: Message) -> Message {
    match message {
        Message::Close(Some(frame)) if frame.code == close_code::PROTOCOL => {
            let code = if frame.reason.starts_with(AUTH_REFUSED) {
                4403
            } else if frame.reason.starts_with(TOO_MANY_CONNECTIONS) {
                close_code::POLICY
            } else {
                frame.code
            };
            Message::Close(Some(CloseFrame {
                code,
                reason: frame.reason,
            }))
        }
        other => other,
    }
}

const AUTH_REFUSED: &str = "authentication failed";

/// Reads `{"Authorization": "Bearer ..."}` (any case; also under `headers`) from a WebSocket
/// `connection_init` payload. No token: an anonymous connection. A bad token: the connection
/// is refused.
async fn viewer_from_init_payload(
    authenticator: &Authenticator,
    payload: &serde_json::Value,
) -> async_graphql::Result<Option<Viewer>> {
    let find = |object: &serde_json::Value| {
        object.as_object().and_then(|map| {
            map.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))
                .map(|(_, value)| value.clone())
        })
    };
    let value = find(payload).or_else(|| payload.get("headers").and_then(find));
    match value {
        None => Ok(None),
        Some(serde_json::Value::String(value)) => authenticator
            .verify_authorization(&value)
            .await
            .map(Some)
            .map_err(|error| async_graphql::Error::new(format!("{AUTH_REFUSED}: {error}"))),
        Some(_) => Err(async_graphql::Error::new(format!(
            "{AUTH_REFUSED}: Authorization must be a string `Bearer <token>`"
        ))),
    }
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
