//! Retrying placeOrder with the same idempotency key never makes a second order.

use crate::helpers::TestApp;

#[tokio::test]
async fn the_same_idempotency_key_twice_returns_the_same_order() {
    let app = TestApp::spawn().await;
    app.stock("BOOK", 10).await;
    let alice = app.customer("alice");

    let first = app
        .place_order(&alice, &[("BOOK", 2)], Some("checkout-42"))
        .await;
    let retry = app
        .place_order(&alice, &[("BOOK", 2)], Some("checkout-42"))
        .await;
    assert_eq!(first["userErrors"], serde_json::json!([]));
    assert_eq!(retry["order"]["id"], first["order"]["id"]);
    assert_eq!(app.order_count().await, 1);

    let different = app
        .place_order(&alice, &[("BOOK", 3)], Some("checkout-42"))
        .await;
    assert_eq!(different["order"], serde_json::Value::Null);
    assert_eq!(different["userErrors"][0]["code"], "IDEMPOTENCY_KEY_REUSED");

    // The same lines in another order are the same order.
    app.stock("PEN", 10).await;
    let two_lines = app
        .place_order(&alice, &[("BOOK", 1), ("PEN", 1)], Some("two-lines"))
        .await;
    let reordered = app
        .place_order(&alice, &[("PEN", 1), ("BOOK", 1)], Some("two-lines"))
        .await;
    assert_eq!(
        two_lines["userErrors"],
        serde_json::json!([]),
        "{two_lines}"
    );
    assert_eq!(
        reordered["order"]["id"], two_lines["order"]["id"],
        "{reordered}"
    );

    // Keys are per user: bob's identical key is his own order.
    let bob = app.customer("bob");
    let bobs = app
        .place_order(&bob, &[("BOOK", 2)], Some("checkout-42"))
        .await;
    assert_eq!(bobs["userErrors"], serde_json::json!([]), "{bobs}");
    assert_ne!(bobs["order"]["id"], first["order"]["id"]);
    assert_eq!(app.order_count().await, 3);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn concurrent_retries_with_one_key_make_one_order() {
    let app = TestApp::spawn().await;
    app.stock("BOOK", 10).await;
    let alice = app.customer("alice");
    let attempts = (0..8).map(|_| app.place_order(&alice, &[("BOOK", 1)], Some("double-click")));
    let results = futures_util::future::join_all(attempts).await;
    let first_id = &results[0]["order"]["id"];
    assert!(first_id.is_string(), "{}", results[0]);
    for result in &results {
        assert_eq!(&result["order"]["id"], first_id, "{result}");
    }
    assert_eq!(app.order_count().await, 1);
    app.stop_and_drop_database().await;
}
