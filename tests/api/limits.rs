//! What one request, connection or user may ask: query depth and complexity, introspection,
//! mutation rate, subscriptions per connection, connections per user, message size, token
//! lifetime on a WebSocket.

use crate::helpers::{eventually, Deployment, Protocol, Subscription, TestApp};
use oms::auth::Role;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn first_error(body: &Value) -> (&str, &str) {
    let error = &body["errors"][0];
    (
        error["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {body}")),
        error["message"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn queries_too_deep_or_too_complex_are_refused_naming_the_limit() {
    let app = TestApp::spawn_in(
        Deployment::new(),
        &[
            "--max-query-depth=6",
            "--max-query-complexity=300",
            "--introspection=false",
        ],
    )
    .await;
    let staff = app.staff();

    let deep = "{ orders { edges { node { history { order { history { order { id } } } } } } } }";
    let (_, body) = app.post(Some(&staff), deep, json!({})).await;
    let (code, message) = first_error(&body);
    assert_eq!(code, "QUERY_TOO_DEEP", "{body}");
    assert!(message.contains("maximum depth is 6"), "{message}");

    // Each alias of a 100-item page counts again.
    let wide = "{ a: orders(first: 100) { edges { node { id status } } }
                  b: orders(first: 100) { edges { node { id status } } } }";
    let (_, body) = app.post(Some(&staff), wide, json!({})).await;
    let (code, message) = first_error(&body);
    assert_eq!(code, "QUERY_TOO_COMPLEX", "{body}");
    assert!(message.contains("maximum complexity is 300"), "{message}");

    // The same over the WebSocket.
    let mut subscription = Subscription::connect(&app, &staff, Protocol::TransportWs).await;
    subscription
        .start(
            "subscription { orderStatusChanged { order { history { order { history { order { id } } } } } } }",
            json!({}),
        )
        .await;
    let refused = subscription.next_payload().await;
    let (code, message) = first_error(&refused);
    assert_eq!(code, "QUERY_TOO_DEEP", "{refused}");
    assert!(message.contains("maximum depth is 6"), "{message}");

    let fits = "{ orders(first: 10) { edges { node { id status } } } }";
    app.query(&staff, fits, json!({})).await;

    let (_, body) = app
        .post(Some(&staff), "{ __schema { types { name } } }", json!({}))
        .await;
    let (code, message) = first_error(&body);
    assert_eq!(code, "INTROSPECTION_DISABLED", "{body}");
    assert!(message.contains("introspection is disabled"), "{message}");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn mutations_beyond_a_users_rate_are_refused_with_when_to_retry() {
    let app = TestApp::spawn_in(
        Deployment::new(),
        &["--mutations-per-second=0.5", "--mutation-burst=3"],
    )
    .await;
    app.stock("GUM", 100).await;
    let alice = app.customer("alice");
    for _ in 0..2 {
        app.place_order_id(&alice, &[("GUM", 1)]).await; // the stock call above was staff's
    }
    app.place_order_id(&alice, &[("GUM", 1)]).await;
    let (_, body) = app
        .post(
            Some(&alice),
            "mutation { placeOrder(input: {items: [{sku: \"GUM\", quantity: 1}]}) { order { id } } }",
            json!({}),
        )
        .await;
    let (code, message) = first_error(&body);
    assert_eq!(code, "RATE_LIMITED", "{body}");
    assert!(message.contains("retry in"), "{message}");
    assert!(
        body["errors"][0]["extensions"]["retryAfterMs"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(
        app.order_count().await,
        3,
        "the refused mutation stored nothing"
    );

    // Other users have their own allowance.
    app.place_order_id(&app.customer("bob"), &[("GUM", 1)])
        .await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_connection_holds_a_bounded_number_of_subscriptions_and_a_user_of_connections() {
    let app = TestApp::spawn_in(
        Deployment::new(),
        &[
            "--max-subscriptions-per-connection=2",
            "--max-connections-per-user=2",
        ],
    )
    .await;
    let alice = app.customer("alice");
    let mut first = Subscription::connect(&app, &alice, Protocol::TransportWs).await;
    for id in ["1", "2", "3"] {
        first
            .start_with_id(
                id,
                "subscription { orderStatusChanged { orderId } }",
                json!({}),
            )
            .await;
    }
    // Which of the three is refused depends on the order they start in; exactly one is.
    let message = first.next_message().await.expect("an answer");
    let code = &message["payload"]["errors"][0]["extensions"]["code"];
    assert_eq!(code, "TOO_MANY_SUBSCRIPTIONS", "{message}");

    let _second = Subscription::connect(&app, &alice, Protocol::TransportWs).await;
    let third = Subscription::try_connect(
        &app,
        json!({ "Authorization": format!("Bearer {alice}") }),
        Protocol::TransportWs,
    )
    .await;
    let refused = third.err().expect("a third connection is refused");
    assert!(
        refused.contains("1008") && refused.contains("too many connections"),
        "{refused}"
    );
    // Bob is not affected by alice's connections.
    Subscription::connect(&app, &app.customer("bob"), Protocol::TransportWs).await;

    // Closing one frees its place.
    drop(first);
    eventually(Duration::from_secs(10), || async {
        let init = json!({ "Authorization": format!("Bearer {alice}") });
        Subscription::try_connect(&app, init, Protocol::TransportWs)
            .await
            .map(drop)
            .map_err(|_| "the closed connection's place was not freed".to_owned())
    })
    .await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_websocket_is_closed_with_4401_when_its_token_expires() {
    let app = TestApp::spawn().await;
    let token = app.short_lived_token("alice", Role::Customer, Duration::from_secs(2));
    let mut subscription = Subscription::connect(&app, &token, Protocol::TransportWs).await;
    subscription
        .start("subscription { orderStatusChanged { orderId } }", json!({}))
        .await;
    let started = Instant::now();
    let closed = subscription.next_message().await.expect("a close frame");
    assert_eq!(closed["close"], 4401, "{closed}");
    assert!(
        closed["reason"].as_str().unwrap().contains("expired"),
        "{closed}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn an_oversized_websocket_message_closes_the_connection() {
    let app = TestApp::spawn_in(Deployment::new(), &["--max-ws-message-bytes=4096"]).await;
    let mut subscription =
        Subscription::connect(&app, &app.customer("alice"), Protocol::TransportWs).await;
    let padding = "x".repeat(10_000);
    subscription
        .send_text(
            json!({"id": "1", "type": "subscribe", "payload": {"query": padding}}).to_string(),
        )
        .await;
    match subscription.next_message().await {
        None => {}
        Some(message) => assert!(message.get("close").is_some(), "{message}"),
    }
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = TestApp::spawn().await;
    let fresh = app.get("/healthz").await;
    let id = fresh.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let given = reqwest::Client::new()
        .get(format!("http://{}/healthz", app.addr))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "client-chosen-42");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn the_history_says_who_asked_for_each_change() {
    let app = TestApp::spawn().await;
    app.stock("OAR", 5).await;
    let alice = app.customer("alice");
    let staff = app.staff();
    let order_id = app.place_order_id(&alice, &[("OAR", 1)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;
    app.update_status(&staff, &order_id, "RECEIVED").await;
    app.wait_for_status(&alice, &order_id, "RECEIVED").await;
    app.update_status(&alice, &order_id, "CANCELLED").await;
    app.wait_for_status(&alice, &order_id, "CANCELLED").await;

    let query = "query($id: ID!) { order(id: $id) { history { to changedBy { userId role } } } }";
    let as_alice = app.query(&alice, query, json!({ "id": order_id })).await;
    assert_eq!(
        as_alice["order"]["history"],
        json!([
            { "to": "PENDING", "changedBy": { "userId": "alice", "role": "CUSTOMER" } },
            { "to": "CONFIRMED", "changedBy": null },
            { "to": "RECEIVED", "changedBy": { "userId": null, "role": "STAFF" } },
            { "to": "CANCELLED", "changedBy": { "userId": "alice", "role": "CUSTOMER" } },
        ])
    );
    let as_staff = app.query(&staff, query, json!({ "id": order_id })).await;
    assert_eq!(
        as_staff["order"]["history"][2]["changedBy"]["userId"],
        "staff-1"
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn oversized_and_malformed_request_bodies_get_clear_errors() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/graphql", app.addr);
    let huge = json!({ "query": format!("{{ __typename }} # {}", "x".repeat(300 * 1024)) });
    let response = http.post(&url).json(&huge).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let answer: Value = response.json().await.expect("a JSON error");
    let (code, message) = first_error(&answer);
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(message.contains("larger than"), "{message}");

    for body in [
        json!([{ "query": "{ __typename }" }]),
        json!({ "query": "{ __typename }", "variables": [1] }),
    ] {
        let response = http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.expect("a JSON error");
        let (code, message) = first_error(&answer);
        assert_eq!(code, "BAD_USER_INPUT");
        assert!(
            message.contains("variables") && !message.contains("BatchRequest"),
            "{message}"
        );
    }
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn idle_websockets_get_heartbeat_pings_on_both_protocols() {
    let app = TestApp::spawn_in(Deployment::new(), &["--ws-ping-interval-secs=1"]).await;
    let alice = app.customer("alice");
    for protocol in [Protocol::TransportWs, Protocol::LegacyWs] {
        let mut subscription = Subscription::connect(&app, &alice, protocol).await;
        subscription
            .start("subscription { orderStatusChanged { orderId } }", json!({}))
            .await;
        let started = Instant::now();
        subscription.wait_for_ping().await;
        subscription.wait_for_ping().await;
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    app.stop_and_drop_database().await;
}
