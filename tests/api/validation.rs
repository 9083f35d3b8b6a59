//! Bad input gets a specific userError and stores nothing.

use crate::helpers::TestApp;
use serde_json::{json, Value};

fn codes(payload: &Value) -> Vec<String> {
    payload["userErrors"]
        .as_array()
        .unwrap_or_else(|| panic!("no userErrors in {payload}"))
        .iter()
        .map(|e| e["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn unknown_skus_bad_quantities_and_empty_orders_each_get_a_user_error_and_store_nothing() {
    let app = TestApp::spawn().await;
    app.stock("REAL", 10).await;
    let alice = app.customer("alice");

    let unknown = app
        .place_order(&alice, &[("REAL", 1), ("GHOST", 1)], None)
        .await;
    assert_eq!(codes(&unknown), ["UNKNOWN_SKU"]);
    assert_eq!(
        unknown["userErrors"][0]["field"],
        json!(["items", "1", "sku"])
    );
    assert!(unknown["userErrors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("GHOST"));
    assert_eq!(unknown["order"], Value::Null);

    let zero = app.place_order(&alice, &[("REAL", 0)], None).await;
    assert_eq!(codes(&zero), ["INVALID_QUANTITY"]);
    assert_eq!(
        zero["userErrors"][0]["field"],
        json!(["items", "0", "quantity"])
    );

    let negative = app.place_order(&alice, &[("REAL", -2)], None).await;
    assert_eq!(codes(&negative), ["INVALID_QUANTITY"]);

    let empty = app.place_order(&alice, &[], None).await;
    assert_eq!(codes(&empty), ["EMPTY_ORDER"]);

    let twice = app
        .place_order(&alice, &[("REAL", 1), ("REAL", 2)], None)
        .await;
    assert_eq!(codes(&twice), ["DUPLICATE_SKU"]);

    let malformed = app
        .place_order(&alice, &[("no spaces allowed", 1)], None)
        .await;
    assert_eq!(codes(&malformed), ["INVALID_SKU"]);

    assert_eq!(app.order_count().await, 0);
    assert_eq!(app.stock_of("REAL").await, 10);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn an_invalid_transition_is_a_user_error_and_queues_nothing() {
    let app = TestApp::spawn().await;
    app.stock("CHAIR", 3).await;
    let alice = app.customer("alice");
    let staff = app.staff();
    let order_id = app.place_order_id(&alice, &[("CHAIR", 1)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;

    let skipping = app.update_status(&staff, &order_id, "DELIVERED").await;
    assert_eq!(skipping["accepted"], false);
    assert_eq!(codes(&skipping), ["INVALID_TRANSITION"]);
    assert!(skipping["userErrors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("CONFIRMED cannot become DELIVERED"));

    let reserved = app.update_status(&staff, &order_id, "REJECTED").await;
    assert_eq!(codes(&reserved), ["INVALID_TRANSITION"]);

    let customer_advancing = app.update_status(&alice, &order_id, "RECEIVED").await;
    assert_eq!(codes(&customer_advancing), ["NOT_PERMITTED"]);

    let not_an_id = app.update_status(&staff, "not-a-uuid", "CANCELLED").await;
    assert_eq!(codes(&not_an_id), ["INVALID_ID"]);

    // One valid request after them: once it is applied, anything queued before it (same order,
    // same partition) would have been applied too. Only this one was.
    let valid = app.update_status(&staff, &order_id, "RECEIVED").await;
    assert_eq!(valid["accepted"], true);
    app.wait_for_status(&staff, &order_id, "RECEIVED").await;
    app.wait_for_applied_requests(1).await;
    let history: Vec<String> = sqlx::query_scalar(
        "select to_status from order_status_history where order_id = $1::uuid order by version",
    )
    .bind(&order_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(history, ["PENDING", "CONFIRMED", "RECEIVED"]);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn inventory_input_is_checked_and_page_sizes_are_bounded() {
    let app = TestApp::spawn().await;
    let staff = app.staff();
    let data = app
        .query(
            &staff,
            "mutation { upsertInventoryItem(input: {sku: \"BAD SKU\", name: \"\", quantity: -1}) {
               item { sku } userErrors { field code }
             } }",
            json!({}),
        )
        .await;
    assert_eq!(
        codes(&data["upsertInventoryItem"]),
        ["INVALID_SKU", "INVALID_NAME", "INVALID_QUANTITY"]
    );

    let (_, body) = app
        .post(
            Some(&staff),
            "{ orders(first: 1000) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("100"));

    for query in [
        "{ inventoryItem(sku: \"nul\\u0000byte\") { sku } }",
        "{ inventoryItems(after: \"nul\\u0000byte\") { edges { cursor } } }",
    ] {
        let (_, body) = app.post(Some(&staff), query, json!({})).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
    }
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn unicode_tricks_in_free_text_are_refused_and_store_nothing() {
    let app = TestApp::spawn().await;
    app.stock("CUP", 3).await;
    let alice = app.customer("alice");
    let staff = app.staff();
    let order_id = app.place_order_id(&alice, &[("CUP", 1)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;

    for reason in [
        "refund \u{202E}gnp.exe",
        "zero\u{200B}width",
        "nul\u{0}byte",
        &"r".repeat(501),
    ] {
        let data = app
            .query(
                &alice,
                "mutation($input: UpdateOrderStatusInput!) {
                   updateOrderStatus(input: $input) { accepted userErrors { field code } }
                 }",
                json!({ "input": { "orderId": order_id, "status": "CANCELLED", "reason": reason } }),
            )
            .await;
        let payload = &data["updateOrderStatus"];
        assert_eq!(payload["accepted"], false, "{reason:?}");
        assert_eq!(codes(payload), ["INVALID_REASON"], "{reason:?}");
    }
    let item = app
        .query(
            &staff,
            "mutation { upsertInventoryItem(input: {sku: \"NEW\", name: \"Lamp\\u2066\", quantity: 1}) {
               item { sku } userErrors { code }
             } }",
            json!({}),
        )
        .await;
    assert_eq!(codes(&item["upsertInventoryItem"]), ["INVALID_NAME"]);

    let key = app
        .place_order(&alice, &[("CUP", 1)], Some("key\u{FEFF}"))
        .await;
    assert_eq!(codes(&key), ["INVALID_IDEMPOTENCY_KEY"]);
    assert_eq!(app.order_count().await, 1);
    assert_eq!(app.stock_of("CUP").await, 2, "no cancellation was queued");
    app.stop_and_drop_database().await;
}
