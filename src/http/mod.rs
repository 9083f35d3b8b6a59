//! The HTTP surface: `POST|GET /graphql`, the WebSocket at `/graphql/ws` (both
//! `graphql-transport-ws` and the legacy `graphql-ws` subprotocols), the GraphiQL playground at
//! `/`, and `/healthz` / `/readyz`.

use crate::auth::{TokenKeys, Viewer};
use crate::error::AppError;
use crate::graphql::OmsSchema;
use crate::live::StatusFeed;
use crate::metrics::Metrics;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::{close_code, CloseFrame, Message};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const PLAYGROUND: &str = include_str!("../../web-playground/index.html");

/// Largest request body accepted on `/graphql`.
const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct HttpState {
    pub schema: OmsSchema,
    pub keys: TokenKeys,
    pub pool: PgPool,
    pub producer: rdkafka::producer::FutureProducer,
    /// Headers the playground starts with (a staff token in development mode).
    pub playground_headers: Arc<String>,
    /// Cancelled when the service stops: WebSockets are then closed with 1001 (going away).
    pub shutdown: CancellationToken,
    /// Tracks WebSocket connections, so shutdown can wait for their close frames.
    pub connections: TaskTracker,
    pub metrics: Metrics,
    pub feed: StatusFeed,
}

pub fn router(state: HttpState, cors: tower_http::cors::CorsLayer) -> Router {
    Router::new()
        .route("/", get(playground))
        .route("/graphql", get(graphql).post(graphql))
        .route("/graphql/ws", get(graphql_ws))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // GraphQLRequest reads the raw body, so the limit must wrap the body itself.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(cors)
        .with_state(state)
}

async fn playground(State(state): State<HttpState>) -> Html<String> {
    Html(PLAYGROUND.replace("__OMS_DEFAULT_HEADERS__", &state.playground_headers))
}

/// Which browser origins may call the API: none unless configured (any in development mode).
pub fn cors(
    allowed_origins: &[String],
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
    Ok(CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
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
    State(state): State<HttpState>,
    method: Method,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let mut request = request.into_inner();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let viewer = value
            .to_str()
            .map_err(|_| crate::auth::AuthError::MalformedHeader)
            .and_then(|value| state.keys.verify_authorization(value));
        match viewer {
            Ok(viewer) => request = request.data(viewer),
            Err(error) => {
                return graphql_error(
                    StatusCode::UNAUTHORIZED,
                    AppError::Unauthenticated(error.to_string()),
                )
            }
        }
    }
    if method == Method::GET && changes_state(&mut request) {
        return graphql_error(
            StatusCode::METHOD_NOT_ALLOWED,
            AppError::BadUserInput(
                "mutations and subscriptions need POST (or the WebSocket)".into(),
            ),
        );
    }
    GraphQLResponse::from(state.schema.execute(request).await).into_response()
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

async fn graphql_ws(
    State(state): State<HttpState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let keys = state.keys.clone();
    let connections = state.connections.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            connections.track_future(async move {
                let (socket_sink, socket_stream) = socket.split();
                // The protocol writes into a channel; the writer forwards it to the socket and,
                // when the service stops, sends a close frame instead of just dropping the TCP
                // connection, so clients know to reconnect elsewhere.
                let (outgoing, mut to_send) = futures_channel::mpsc::channel::<Message>(64);
                let incoming = socket_stream.take_until(state.shutdown.clone().cancelled_owned());
                let protocol = GraphQLWebSocket::new_with_pair(
                    outgoing,
                    incoming,
                    state.schema.clone(),
                    protocol,
                )
                .on_connection_init(move |payload| async move {
                    let mut data = async_graphql::Data::default();
                    if let Some(viewer) = viewer_from_init_payload(&keys, &payload)? {
                        data.insert(viewer);
                    }
                    Ok(data)
                })
                .serve();
                let shutdown = state.shutdown.clone();
                let writer = async move {
                    let mut sink = socket_sink;
                    loop {
                        tokio::select! {
                            // Shutdown first: it also ends the protocol's stream, and then the
                            // close frame must be ours (1001), not a bare close.
                            biased;
                            _ = shutdown.cancelled() => {
                                let _ = sink.send(Message::Close(Some(CloseFrame {
                                    code: close_code::AWAY,
                                    reason: "server shutting down; reconnect".into(),
                                }))).await;
                                break;
                            }
                            message = to_send.next() => match message {
                                Some(message) => {
                                    if sink.send(refusal_as_forbidden(message)).await.is_err() {
                                        break;
                                    }
                                }
                                None => break,
                            },
                        }
                    }
                    let _ = sink.close().await;
                };
                futures_util::future::join(protocol, writer).await;
            })
        })
}

/// A connection refused for a bad token is closed with 4403 Forbidden (as graphql-ws
/// recommends for a rejected `connection_init`), not the library's generic 1002.
fn refusal_as_forbidden(message: Message) -> Message {
    match message {
        Message::Close(Some(frame))
            if frame.code == close_code::PROTOCOL && frame.reason.starts_with(AUTH_REFUSED) =>
        {
            Message::Close(Some(CloseFrame {
                code: 4403,
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
fn viewer_from_init_payload(
    keys: &TokenKeys,
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
        Some(serde_json::Value::String(value)) => keys
            .verify_authorization(&value)
            .map(Some)
            .map_err(|error| async_graphql::Error::new(format!("{AUTH_REFUSED}: {error}"))),
        Some(_) => Err(async_graphql::Error::new(format!(
            "{AUTH_REFUSED}: Authorization must be a string `Bearer <token>`"
        ))),
    }
}

/// Prometheus metrics; the state gauges are read now.
async fn metrics(State(state): State<HttpState>) -> Response {
    match crate::db::outbox::backlog(&state.pool).await {
        Ok((waiting, oldest_age)) => {
            state.metrics.outbox_backlog.set(waiting);
            state.metrics.outbox_oldest_age_seconds.set(oldest_age);
        }
        Err(error) => tracing::warn!(%error, "metrics: reading the outbox backlog failed"),
    }
    // Every receiver of the live feed is one subscription.
    state
        .metrics
        .live_subscriptions
        .set(state.feed.subscriber_count() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Ready when the database answers with every migration applied and the broker answers.
async fn readyz(State(state): State<HttpState>) -> Response {
    let mut problems = Vec::new();
    match crate::db::pending_migrations(&state.pool).await {
        Ok(0) => {}
        Ok(pending) => problems.push(format!("{pending} database migrations are not applied")),
        Err(error) => {
            tracing::warn!(%error, "readiness: database check failed");
            problems.push("database unreachable".to_owned());
        }
    }
    let producer = state.producer.clone();
    let broker = tokio::task::spawn_blocking(move || {
        use rdkafka::producer::Producer;
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|_| ())
    })
    .await;
    if !matches!(broker, Ok(Ok(()))) {
        problems.push("Kafka broker unreachable".to_owned());
    }
    if problems.is_empty() {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready" })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not ready", "problems": problems })),
        )
            .into_response()
    }
}
