//! What a connection may do once its token expires, before it signs in, and how many of them
//! (and of requests) one address or user gets. The expiry test speaks the WebSocket protocol on
//! a raw TCP socket, so it can behave as a hostile client: ignore the server's close frame and
//! keep sending.

use crate::helpers::{eventually, Deployment, TestApp};
use oms::auth::Role;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(15);

/// A WebSocket client on a raw socket: it answers nothing by itself, closes nothing by itself.
struct RawWebSocket {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// A frame from the server.
#[derive(Debug)]
enum Frame {
    Text(String),
    Close(u16, String),
    Other,
}

/// The HTTP request that asks `addr` to upgrade to a `graphql-transport-ws` WebSocket.
fn upgrade_request(addr: std::net::SocketAddr) -> String {
    format!(
        "GET /graphql/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
    )
}

impl RawWebSocket {
    async fn connect(app: &TestApp) -> RawWebSocket {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(upgrade_request(app.addr).as_bytes())
            .await
            .unwrap();
        let mut socket = RawWebSocket {
            stream,
            buffer: Vec::new(),
        };
        let head = loop {
            if let Some(end) = socket.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&socket.buffer[..end]).into_owned();
                socket.buffer.drain(..end + 4);
                break head;
            }
            assert!(
                socket.fill().await > 0,
                "the server closed during the upgrade"
            );
        };
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        socket
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("the server answers or closes within the deadline")
            .unwrap_or(0);
        self.buffer.extend_from_slice(&chunk[..read]);
        read
    }

    /// Sends a masked text frame, as a client must; whether the server still reads is its
    /// business.
    async fn send_json(&mut self, message: Value) -> std::io::Result<()> {
        let payload = message.to_string().into_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await
    }

    /// The code and reason of the server's next close frame.
    async fn next_close(&mut self) -> (u16, String) {
        loop {
            match self.next_frame().await {
                Some(Frame::Close(code, reason)) => return (code, reason),
                Some(_) => continue,
                None => panic!("the connection ended without a close frame"),
            }
        }
    }

    /// The next frame, or `None` once the server has closed the TCP connection.
    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buffer) {
                self.buffer.drain(..used);
                return Some(frame);
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }
}

/// One unmasked server frame from the start of `bytes`, and its length.
fn parse_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
    if bytes.len() < 2 {
        return None;
    }
    let opcode = bytes[0] & 0x0f;
    let (len, start) = match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        126 => return None,
        127 if bytes.len() >= 10 => (
            u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
            10,
        ),
        127 => return None,
        n => (n as usize, 2),
    };
    if bytes.len() < start + len {
        return None;
    }
    let payload = &bytes[start..start + len];
    let frame = match opcode {
        1 => Frame::Text(String::from_utf8_lossy(payload).into_owned()),
        8 if payload.len() >= 2 => Frame::Close(
            u16::from_be_bytes([payload[0], payload[1]]),
            String::from_utf8_lossy(&payload[2..]).into_owned(),
        ),
        _ => Frame::Other,
    };
    Some((frame, start + len))
}

#[tokio::test]
async fn after_its_token_expires_a_connection_runs_nothing_more_and_is_cut_even_if_the_client_ignores_the_close(
) {
    let app = TestApp::spawn().await;
    let token = app.short_lived_token("staff-1", Role::Staff, Duration::from_secs(2));
    let mut socket = RawWebSocket::connect(&app).await;
    socket
        .send_json(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}))
        .await
        .unwrap();
    match socket.next_frame().await {
        Some(Frame::Text(text)) => assert!(text.contains("connection_ack"), "{text}"),
        other => panic!("no acknowledgement: {other:?}"),
    }
    // The server closes with 4401 when the token expires.
    let close = socket.next_close().await;
    assert_eq!(close.0, 4401, "{close:?}");

    // A client that ignores the close and goes on: nothing it sends is applied.
    let upsert = "mutation { upsertInventoryItem(input: {sku: \"AFTER-EXPIRY\", name: \"Late\", quantity: 5}) { item { sku } } }";
    let _ = socket
        .send_json(json!({"id": "1", "type": "subscribe", "payload": {"query": upsert}}))
        .await;
    // The server ends the TCP connection itself, answering nothing more.
    loop {
        match socket.next_frame().await {
            None => break,
            Some(Frame::Text(text)) => panic!("the server answered after the expiry: {text}"),
            Some(_) => continue,
        }
    }
    let stored: i64 =
        sqlx::query_scalar("select count(*) from inventory_items where sku = 'AFTER-EXPIRY'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0, "the mutation sent after the expiry was applied");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn after_4401_the_server_ends_the_connection_even_if_the_client_never_answers_the_close() {
    let app = TestApp::spawn().await;
    let token = app.short_lived_token("alice", Role::Customer, Duration::from_secs(1));
    let mut socket = RawWebSocket::connect(&app).await;
    socket
        .send_json(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}))
        .await
        .unwrap();
    let mut saw_4401 = false;
    // Reads until the server ends the TCP connection; `fill` fails the test at its deadline if
    // the server only half-closes and waits for the client.
    while let Some(frame) = socket.next_frame().await {
        if let Frame::Close(code, _) = frame {
            saw_4401 = code == 4401;
        }
    }
    assert!(saw_4401, "the connection ended without a 4401 close frame");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_websocket_that_never_sends_connection_init_is_closed_with_4408() {
    let app = TestApp::spawn_in(Deployment::new(), &["--ws-init-timeout-secs=1"]).await;
    let mut socket = RawWebSocket::connect(&app).await;
    let close = socket.next_close().await;
    assert_eq!(close.0, 4408, "{close:?}");
    assert!(close.1.contains("connection_init"), "{close:?}");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn one_address_holds_a_bounded_number_of_websockets_signed_in_or_not() {
    // Neither socket signs in; a long init timeout, so only closing one can free its place.
    let app = TestApp::spawn_in(
        Deployment::new(),
        &["--max-connections-per-ip=2", "--ws-init-timeout-secs=60"],
    )
    .await;
    let first = RawWebSocket::connect(&app).await;
    let _second = RawWebSocket::connect(&app).await;
    let refused = reqwest::Client::new()
        .get(format!("http://{}/graphql/ws", app.addr))
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Protocol", "graphql-transport-ws")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );

    // A closed connection frees its place.
    drop(first);
    eventually(DEADLINE, || async {
        let mut attempt = TcpStream::connect(app.addr).await.unwrap();
        attempt
            .write_all(upgrade_request(app.addr).as_bytes())
            .await
            .unwrap();
        let mut head = [0u8; 12];
        attempt.read_exact(&mut head).await.unwrap();
        match &head {
            b"HTTP/1.1 101" => Ok(()),
            refused => Err(format!(
                "the closed connection's place was never freed: {}",
                String::from_utf8_lossy(refused)
            )),
        }
    })
    .await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn requests_beyond_a_callers_rate_get_429_with_when_to_retry_per_user_and_per_anonymous_address(
) {
    let app = TestApp::spawn_in(
        Deployment::new(),
        &[
            "--requests-per-second=0.5",
            "--request-burst=3",
            "--anonymous-requests-per-second=0.5",
            "--anonymous-request-burst=2",
        ],
    )
    .await;
    let alice = app.customer("alice");
    for _ in 0..3 {
        app.query(&alice, "{ __typename }", json!({})).await;
    }
    let response = reqwest::Client::new()
        .post(format!("http://{}/graphql", app.addr))
        .bearer_auth(&alice)
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    assert!(
        body["errors"][0]["extensions"]["retryAfterMs"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Another user has an allowance of their own; anonymous callers share their address's.
    app.query(&app.customer("bob"), "{ __typename }", json!({}))
        .await;
    for _ in 0..2 {
        assert_eq!(app.post(None, "{ __typename }", json!({})).await.0, 200);
    }
    let (status, body) = app.post(None, "{ __typename }", json!({})).await;
    assert_eq!(status, 429, "{body}");

    // Operations over a WebSocket count too.
    let carol = app.customer("carol");
    let mut socket =
        crate::helpers::Subscription::connect(&app, &carol, crate::helpers::Protocol::TransportWs)
            .await;
    let mut codes = Vec::new();
    for id in 0..4 {
        socket
            .start_with_id(&id.to_string(), "{ __typename }", json!({}))
            .await;
        let message = socket.next_message().await.expect("an answer");
        let code = match message["type"].as_str() {
            Some("next") => {
                // graphql-transport-ws sends `complete` after a query's single result.
                let complete = socket.next_message().await.expect("complete");
                assert_eq!(complete["type"], "complete", "{complete}");
                message["payload"]["errors"][0]["extensions"]["code"].as_str()
            }
            Some("error") => message["payload"][0]["extensions"]["code"].as_str(),
            _ => panic!("unexpected {message}"),
        };
        codes.push(code.unwrap_or("ok").to_owned());
    }
    assert_eq!(codes, ["ok", "ok", "ok", "RATE_LIMITED"]);
    app.stop_and_drop_database().await;
}
