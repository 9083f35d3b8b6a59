//! Retiring an inventory item: no new order may name it, everything that names it stays, its
//! stock stays, subscribers hear of it, and staff can bring it back.

use crate::helpers::{wait_for_live_subscriptions, Protocol, Subscription, TestApp};
use serde_json::json;

const RETIRE: &str = "mutation($sku: String!) { retireInventoryItem(input: {sku: $sku}) {
    item { sku quantity retired retiredAt } userErrors { field code message } } }";

const PLACE: &str = "mutation($items: [OrderLineInput!]!) { placeOrder(input: {items: $items}) {
    order { id } userErrors { field code message } } }";

#[tokio::test]
async fn a_retired_item_cannot_be_ordered_stays_in_earlier_orders_and_can_come_back() {
    let app = TestApp::spawn().await;
    let staff = app.staff();
    let alice = app.customer("alice");
    app.stock("OLD-LAMP", 10).await;
    app.stock("NEW-LAMP", 10).await;
    let earlier = app.place_order_id(&alice, &[("OLD-LAMP", 2)]).await;
    app.wait_for_status(&alice, &earlier, "CONFIRMED").await;

    let mut changes = Subscription::connect(&app, &staff, Protocol::TransportWs).await;
    changes
        .start(
            "subscription { inventoryChanged(sku: \"OLD-LAMP\") { sku quantity delta reason retired } }",
            json!({}),
        )
        .await;
    wait_for_live_subscriptions(app.addr, 1).await;

    let retired = app.query(&staff, RETIRE, json!({"sku": "OLD-LAMP"})).await;
    let item = &retired["retireInventoryItem"]["item"];
    assert_eq!(retired["retireInventoryItem"]["userErrors"], json!([]));
    assert_eq!(
        (&item["retired"], &item["quantity"]),
        (&json!(true), &json!(8))
    );
    assert!(item["retiredAt"].is_string());
    // The earlier order's deduction may reach the subscriber first.
    let mut change = changes.next_value_of("inventoryChanged").await;
    if change["reason"] == "ORDER_CONFIRMED" {
        assert_eq!(change["delta"], -2, "{change}");
        change = changes.next_value_of("inventoryChanged").await;
    }
    assert_eq!(
        change,
        json!({"sku": "OLD-LAMP", "quantity": 8, "delta": 0, "reason": "ITEM_RETIRED", "retired": true})
    );

    // A new order naming it is refused, naming the line; nothing is stored.
    let refused = app
        .query(
            &alice,
            PLACE,
            json!({"items": [{"sku": "NEW-LAMP", "quantity": 1}, {"sku": "OLD-LAMP", "quantity": 1}]}),
        )
        .await;
    assert_eq!(refused["placeOrder"]["order"], json!(null));
    assert_eq!(
        refused["placeOrder"]["userErrors"],
        json!([{"field": ["items", "1", "sku"], "code": "ITEM_RETIRED",
                "message": "OLD-LAMP is retired and cannot be ordered"}])
    );
    assert_eq!(app.order_count().await, 1);

    // The earlier order still names it; it is listed only when asked for.
    let order = app
        .query(
            &alice,
            "query($id: ID!) { order(id: $id) { lines { sku item { retired } } } }",
            json!({"id": earlier}),
        )
        .await;
    assert_eq!(
        order["order"]["lines"],
        json!([{"sku": "OLD-LAMP", "item": {"retired": true}}])
    );
    let listed = |include: bool| {
        let app = &app;
        let alice = alice.clone();
        async move {
            app.query(
                &alice,
                "query($include: Boolean!) { inventoryItems(filter: {includeRetired: $include}) { nodes { sku } } }",
                json!({"include": include}),
            )
            .await["inventoryItems"]["nodes"]
                .clone()
        }
    };
    assert_eq!(listed(false).await, json!([{"sku": "NEW-LAMP"}]));
    assert_eq!(
        listed(true).await,
        json!([{"sku": "NEW-LAMP"}, {"sku": "OLD-LAMP"}])
    );

    // Retiring again changes nothing; cancelling the earlier order still restores its stock.
    let again = app.query(&staff, RETIRE, json!({"sku": "OLD-LAMP"})).await;
    assert_eq!(again["retireInventoryItem"]["item"]["quantity"], 8);
    app.update_status(&alice, &earlier, "CANCELLED").await;
    app.wait_for_status(&alice, &earlier, "CANCELLED").await;
    assert_eq!(app.stock_of("OLD-LAMP").await, 10);
    app.assert_invariants_hold().await;

    // Staff bring it back by setting it.
    app.stock("OLD-LAMP", 5).await;
    let back = app.place_order_id(&alice, &[("OLD-LAMP", 1)]).await;
    app.wait_for_status(&alice, &back, "CONFIRMED").await;
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn only_staff_retire_items_and_unknown_skus_are_named() {
    let app = TestApp::spawn().await;
    app.stock("LAMP", 1).await;
    let (_, body) = app
        .post(Some(&app.customer("alice")), RETIRE, json!({"sku": "LAMP"}))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    let unknown = app
        .query(&app.staff(), RETIRE, json!({"sku": "NO-SUCH"}))
        .await;
    assert_eq!(
        unknown["retireInventoryItem"]["userErrors"],
        json!([{"field": ["sku"], "code": "UNKNOWN_SKU", "message": "no inventory item has SKU NO-SUCH"}])
    );
    app.stop_and_drop_database().await;
}
