//! The GraphQL endpoint over WebSocket (`/graphql/ws`; `graphql-transport-ws` and the older
//! `graphql-ws`): connections counted per address and per user, the token of `connection_init`,
//! and a writer that closes the socket with a clear code when the service stops, `connection_init`
//! does not come in time or the token expires.

use super::client::ConnectionSlot;
use super::{graphql_error, HttpState};
use crate::auth::{Authenticator, Viewer};
use crate::error::AppError;
use crate::graphql::rate_limit::WebSocketClient;
use crate::graphql::subscription::SubscriptionSlots;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{close_code, CloseFrame, Message};
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn graphql_ws(
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
