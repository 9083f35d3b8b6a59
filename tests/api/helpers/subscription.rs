//! A GraphQL client over WebSocket, in either subprotocol, as the tests drive it.

use super::*;

#[derive(Copy, Clone)]
pub enum Protocol {
    /// `graphql-transport-ws` (graphql-ws, Apollo, urql).
    TransportWs,
    /// The legacy `graphql-ws` (subscriptions-transport-ws).
    LegacyWs,
}

/// A GraphQL subscription over a real WebSocket.
pub struct Subscription {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    protocol: Protocol,
}

impl Subscription {
    /// Connects and sends `connection_init` with the token; waits for the acknowledgement.
    pub async fn connect(app: &TestApp, token: &str, protocol: Protocol) -> Subscription {
        Self::connect_to(app.addr, token, protocol).await
    }

    pub async fn connect_to(
        addr: std::net::SocketAddr,
        token: &str,
        protocol: Protocol,
    ) -> Subscription {
        let init = json!({ "Authorization": format!("Bearer {token}") });
        Self::try_connect_to(addr, init, protocol)
            .await
            .expect("connection acknowledged")
    }

    /// Connects with an arbitrary `connection_init` payload; the first message that is not an
    /// acknowledgement comes back as the error.
    pub async fn try_connect(
        app: &TestApp,
        init_payload: Value,
        protocol: Protocol,
    ) -> Result<Subscription, String> {
        Self::try_connect_to(app.addr, init_payload, protocol).await
    }

    pub async fn try_connect_to(
        addr: std::net::SocketAddr,
        init_payload: Value,
        protocol: Protocol,
    ) -> Result<Subscription, String> {
        let mut request = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .unwrap();
        let name = match protocol {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        };
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", name.parse().unwrap());
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket connects");
        let mut subscription = Subscription { socket, protocol };
        subscription
            .send(json!({ "type": "connection_init", "payload": init_payload }))
            .await;
        match subscription.next_message().await {
            Some(message) if message["type"] == "connection_ack" => Ok(subscription),
            Some(other) => Err(other.to_string()),
            None => Err("the socket closed without a message".to_owned()),
        }
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("WebSocket send");
    }

    /// The next protocol message (keep-alives skipped); `None` when the socket closed, with the
    /// close frame's code and reason in `{"close": code, "reason": ...}`.
    pub async fn next_message(&mut self) -> Option<Value> {
        // One deadline for the message, not per frame: the server's ping frames keep coming.
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("a WebSocket message within the timeout");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).expect("JSON message");
                    if matches!(message["type"].as_str(), Some("ping" | "pong" | "ka")) {
                        continue;
                    }
                    return Some(message);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(json!({
                        "close": frame.as_ref().map(|f| u16::from(f.code)),
                        "reason": frame.as_ref().map(|f| f.reason.to_string()),
                    }))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn start(&mut self, query: &str, variables: Value) {
        self.start_with_id("1", query, variables).await;
    }

    /// Starts one more subscription on this connection, under its own id.
    pub async fn start_with_id(&mut self, id: &str, query: &str, variables: Value) {
        let kind = match self.protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        };
        self.send(json!({
            "id": id, "type": kind, "payload": { "query": query, "variables": variables }
        }))
        .await;
    }

    /// Waits for the server's next ping frame (tungstenite answers it with a pong by itself).
    pub async fn wait_for_ping(&mut self) {
        loop {
            let frame = tokio::time::timeout(EVENT_TIMEOUT, self.socket.next())
                .await
                .expect("a ping within the timeout");
            match frame {
                Some(Ok(Message::Ping(_))) => return,
                Some(Ok(_)) => continue,
                other => panic!("the socket ended before a ping: {other:?}"),
            }
        }
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: String) {
        let _ = self.socket.send(Message::Text(text.into())).await;
    }

    /// The next `next`/`data` message's payload (errors included) for the subscription.
    pub async fn next_payload(&mut self) -> Value {
        let message = self.next_message().await.expect("socket open");
        match message["type"].as_str() {
            Some("next" | "data") => message["payload"].clone(),
            Some("error") => json!({ "errors": message["payload"] }),
            _ => panic!("unexpected message {message}"),
        }
    }

    /// The next status change (the `orderStatusChanged` value); panics on errors.
    pub async fn next_data(&mut self) -> Value {
        self.next_value_of("orderStatusChanged").await
    }

    /// The next value of the subscription field `field`; panics on errors.
    pub async fn next_value_of(&mut self, field: &str) -> Value {
        let payload = self.next_payload().await;
        assert!(
            payload.get("errors").is_none(),
            "subscription error: {payload}"
        );
        payload["data"][field].clone()
    }
}
