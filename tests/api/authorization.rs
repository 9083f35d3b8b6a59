//! Who may do what: no token is refused, a customer sees only their own orders, staff see all.

use crate::helpers::{Protocol, Subscription, TestApp};
use serde_json::{json, Value};

fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

#[tokio::test]
async fn requests_without_a_token_are_refused_as_unauthenticated() {
    let app = TestApp::spawn().await;
    for query in [
        "{ orders { edges { cursor } } }",
        "{ inventoryItems { edges { cursor } } }",
        "{ order(id: \"0190c0c0-0000-7000-8000-000000000000\") { id } }",
        "mutation { placeOrder(input: {items: [{sku: \"A\", quantity: 1}]}) { order { id } } }",
        "{ inventoryItem(sku: \"A\") { sku } }",
        "mutation { updateOrderStatus(input: {orderId: \"0190c0c0-0000-7000-8000-000000000000\", status: CANCELLED}) { accepted } }",
        "mutation { upsertInventoryItem(input: {sku: \"A\", name: \"A\", quantity: 1}) { item { sku } } }",
    ] {
        let (status, body) = app.post(None, query, json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{query}: {body}");
        assert!(body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer"));
    }

    let mut anonymous = Subscription::try_connect(&app, json!({}), Protocol::TransportWs)
        .await
        .expect("an anonymous connection is acknowledged");
    anonymous
        .start("subscription { orderStatusChanged { orderId } }", json!({}))
        .await;
    let refused = anonymous.next_payload().await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    assert_eq!(app.order_count().await, 0);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_bad_token_is_refused_on_http_and_on_the_websocket() {
    let app = TestApp::spawn().await;
    let forged = oms::auth::TokenKeys::new(b"not-the-service-secret-but-long-enough").issue(
        "mallory",
        oms::auth::Role::Staff,
        std::time::Duration::from_secs(60),
    );
    let (status, body) = app
        .post(Some(&forged), "{ orders { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("bad signature"));

    let refused = Subscription::try_connect(
        &app,
        json!({ "Authorization": format!("Bearer {forged}") }),
        Protocol::TransportWs,
    )
    .await;
    let closed: serde_json::Value =
        serde_json::from_str(&refused.err().expect("the connection is refused")).unwrap();
    assert_eq!(closed["close"], 4403, "{closed}");
    assert!(
        closed["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("authentication failed")
                && reason.contains("bad signature")),
        "{closed}"
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_customer_cannot_read_cancel_or_subscribe_to_another_customers_order() {
    let app = TestApp::spawn().await;
    app.stock("VASE", 5).await;
    let alice = app.customer("alice");
    let mallory = app.customer("mallory");
    let order_id = app.place_order_id(&alice, &[("VASE", 1)]).await;

    let read = app
        .query(
            &mallory,
            "query($id: ID!) { order(id: $id) { id } }",
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(read["order"], Value::Null);

    let listed = app
        .query(&mallory, "{ orders { edges { node { id } } } }", json!({}))
        .await;
    assert_eq!(listed["orders"]["edges"], json!([]));

    let cancel = app.update_status(&mallory, &order_id, "CANCELLED").await;
    assert_eq!(cancel["accepted"], false);
    assert_eq!(cancel["order"], Value::Null);
    assert_eq!(cancel["userErrors"][0]["code"], "ORDER_NOT_FOUND");

    let mut subscription = Subscription::connect(&app, &mallory, Protocol::TransportWs).await;
    subscription
        .start(
            "subscription($id: ID!) { orderStatusChanged(orderId: $id) { to } }",
            json!({ "id": order_id }),
        )
        .await;
    let refused = subscription.next_payload().await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{refused}"
    );

    // Staff see it; its owner still can, and it was never cancelled.
    let staff_view = app
        .query(
            &app.staff(),
            "query($id: ID!) { order(id: $id) { userId } }",
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(staff_view["order"]["userId"], "alice");
    let changes = app.wait_for_status(&alice, &order_id, "CONFIRMED").await;
    assert!(changes.iter().all(|c| c["to"] != "CANCELLED"));
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_customers_all_orders_subscription_carries_only_their_own_orders() {
    let app = TestApp::spawn().await;
    app.stock("SOCK", 50).await;
    let alice = app.customer("alice");
    let bob = app.customer("bob");
    let mut bobs_feed = Subscription::connect(&app, &bob, Protocol::TransportWs).await;
    bobs_feed
        .start(
            "subscription { orderStatusChanged { orderId to } }",
            json!({}),
        )
        .await;
    crate::helpers::wait_for_live_subscriptions(app.addr, 1).await;

    let alices_order = app.place_order_id(&alice, &[("SOCK", 1)]).await;
    app.wait_for_status(&alice, &alices_order, "CONFIRMED")
        .await;
    let bobs_order = app.place_order_id(&bob, &[("SOCK", 1)]).await;

    loop {
        let change = bobs_feed.next_data().await;
        assert_eq!(change["orderId"], bobs_order.as_str(), "bob saw {change}");
        if change["to"] == "CONFIRMED" {
            break;
        }
    }
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn only_staff_manage_inventory() {
    let app = TestApp::spawn().await;
    let (_, body) = app
        .post(
            Some(&app.customer("alice")),
            "mutation { upsertInventoryItem(input: {sku: \"X\", name: \"X\", quantity: 1}) { item { sku } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    let count: i64 = sqlx::query_scalar("select count(*) from inventory_items")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn an_expired_token_is_refused_and_says_so() {
    let app = TestApp::spawn().await;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "alice", "role": "customer", "exp": 1_000_000_000 }),
        &jsonwebtoken::EncodingKey::from_secret(crate::helpers::SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, body) = app
        .post(Some(&expired), "{ orders { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );

    let refused = Subscription::try_connect(
        &app,
        json!({ "Authorization": format!("Bearer {expired}") }),
        Protocol::TransportWs,
    )
    .await;
    let closed = refused.err().expect("the connection is refused");
    assert!(
        closed.contains("\"close\":4403") && closed.contains("expired"),
        "{closed}"
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_token_that_was_accepted_is_refused_once_it_expires() {
    let app = TestApp::spawn().await;
    let token = app.short_lived_token(
        "alice",
        oms::auth::Role::Customer,
        std::time::Duration::from_secs(2),
    );
    let query = "{ viewer { id } }";
    let (_, accepted) = app.post(Some(&token), query, json!({})).await;
    assert_eq!(accepted["data"]["viewer"]["id"], "alice", "{accepted}");

    let refused = crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
        let (status, body) = app.post(Some(&token), query, json!({})).await;
        if body["data"]["viewer"]["id"] == "alice" {
            Err("the token is still accepted".to_owned())
        } else {
            Ok((status, body))
        }
    })
    .await;
    assert_eq!(refused.0, 401, "{}", refused.1);
    assert_eq!(error_code(&refused.1), "UNAUTHENTICATED");
    assert!(refused.1.to_string().contains("expired"), "{}", refused.1);
    app.stop_and_drop_database().await;
}
