//! Live status changes over real WebSockets, on both subprotocols and across instances.

use crate::helpers::{
    start_instance, wait_for_live_subscriptions, Deployment, Protocol, Subscription, TestApp,
};
use serde_json::json;

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_delivers_changes_too() {
    let app = TestApp::spawn().await;
    app.stock("CUP", 5).await;
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("CUP", 1)]).await;

    let mut legacy = Subscription::connect(&app, &alice, Protocol::LegacyWs).await;
    legacy
        .start(
            "subscription($id: ID!) { orderStatusChanged(orderId: $id, afterVersion: 0) { to version } }",
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(
        legacy.next_data().await,
        json!({ "to": "PENDING", "version": 1 })
    );
    assert_eq!(
        legacy.next_data().await,
        json!({ "to": "CONFIRMED", "version": 2 })
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn following_one_order_starts_with_its_current_state_then_continues_live() {
    let app = TestApp::spawn().await;
    app.stock("BAG", 5).await;
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("BAG", 1)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;

    let mut follower = Subscription::connect(&app, &alice, Protocol::TransportWs).await;
    follower
        .start(
            "subscription($id: ID!) { orderStatusChanged(orderId: $id) { from to version } }",
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(
        follower.next_data().await,
        json!({ "from": "PENDING", "to": "CONFIRMED", "version": 2 })
    );
    app.update_status(&alice, &order_id, "CANCELLED").await;
    assert_eq!(
        follower.next_data().await,
        json!({ "from": "CONFIRMED", "to": "CANCELLED", "version": 3 })
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_request_that_no_longer_applies_reaches_the_subscriber_as_refused() {
    let deployment = Deployment::new();
    let api = TestApp::spawn_in(deployment.clone(), &["--components=api"]).await;
    api.stock("TV", 2).await;
    let alice = api.customer("alice");
    let staff = api.staff();
    let order_id = api.place_order_id(&alice, &[("TV", 1)]).await;
    let consumers = start_instance(&deployment, &["--components=consumers"]).await;
    api.wait_for_status(&alice, &order_id, "CONFIRMED").await;
    api.update_status(&staff, &order_id, "RECEIVED").await;
    api.wait_for_status(&alice, &order_id, "RECEIVED").await;
    consumers.stop().await;

    // With no consumer running, both pass the API's check against RECEIVED; by the time the
    // cancellation is applied the order is OUT_FOR_DELIVERY, which can no longer be cancelled.
    let mut follower = api.follow_order(&alice, &order_id).await;
    assert_eq!(
        api.update_status(&staff, &order_id, "OUT_FOR_DELIVERY")
            .await["accepted"],
        true
    );
    assert_eq!(
        api.update_status(&alice, &order_id, "CANCELLED").await["accepted"],
        true
    );
    let consumers = start_instance(&deployment, &["--components=consumers"]).await;

    let refusal = loop {
        let change = follower.next_data().await;
        if change["outcome"] == "REFUSED" {
            break change;
        }
    };
    assert_eq!(refusal["requestedStatus"], "CANCELLED");
    assert_eq!(refusal["to"], "OUT_FOR_DELIVERY");
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("cannot become CANCELLED"),
        "{refusal}"
    );
    assert_eq!(api.stock_of("TV").await, 1, "no stock came back");
    consumers.stop().await;
    api.stop_and_drop_database().await;
}

#[tokio::test]
async fn impossible_subscription_arguments_are_refused_with_a_clear_error() {
    let app = TestApp::spawn().await;
    app.stock("PEG", 5).await;
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("PEG", 1)]).await;
    for (query, expected) in [
        (
            "subscription($id: ID!) { orderStatusChanged(orderId: $id, afterVersion: 99) { to } }",
            "afterVersion",
        ),
        (
            "subscription($id: ID!) { orderStatusChanged(orderId: $id, status: CONFIRMED) { to } }",
            "status",
        ),
        (
            "subscription { orderStatusChanged(afterVersion: 1) { to } }",
            "orderId",
        ),
    ] {
        let mut subscription = Subscription::connect(&app, &alice, Protocol::TransportWs).await;
        subscription.start(query, json!({ "id": order_id })).await;
        let refused = subscription.next_payload().await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{refused}"
        );
        assert!(
            refused["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{refused}"
        );
    }
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn staff_can_watch_every_order_reaching_one_status() {
    let app = TestApp::spawn().await;
    app.stock("HAT", 1).await;
    let staff = app.staff();
    let mut confirmations = Subscription::connect(&app, &staff, Protocol::TransportWs).await;
    confirmations
        .start(
            "subscription { orderStatusChanged(status: CONFIRMED) { orderId to } }",
            json!({}),
        )
        .await;
    wait_for_live_subscriptions(app.addr, 1).await;

    let confirmed = app
        .place_order_id(&app.customer("alice"), &[("HAT", 1)])
        .await;
    let change = confirmations.next_data().await;
    assert_eq!(change, json!({ "orderId": confirmed, "to": "CONFIRMED" }));
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn two_instances_each_deliver_every_change_to_their_own_subscribers() {
    let deployment = Deployment::new();
    let first = TestApp::spawn_in(deployment.clone(), &[]).await;
    let second = TestApp::spawn_in(deployment, &[]).await;
    first.stock("PHONE", 10).await;
    let staff = first.staff();
    let mut on_first = Subscription::connect(&first, &staff, Protocol::TransportWs).await;
    let mut on_second = Subscription::connect(&second, &staff, Protocol::TransportWs).await;
    for subscription in [&mut on_first, &mut on_second] {
        subscription
            .start(
                "subscription { orderStatusChanged { orderId to version } }",
                json!({}),
            )
            .await;
    }
    wait_for_live_subscriptions(first.addr, 1).await;
    wait_for_live_subscriptions(second.addr, 1).await;

    let order_id = first
        .place_order_id(&first.customer("alice"), &[("PHONE", 1)])
        .await;
    for subscription in [&mut on_first, &mut on_second] {
        assert_eq!(
            subscription.next_data().await,
            json!({ "orderId": order_id, "to": "PENDING", "version": 1 })
        );
        assert_eq!(
            subscription.next_data().await,
            json!({ "orderId": order_id, "to": "CONFIRMED", "version": 2 })
        );
    }
    second.stop().await;
    first.stop_and_drop_database().await;
}

const INVENTORY_CHANGES: &str = "subscription($sku: String) { inventoryChanged(sku: $sku) {
    sku quantity delta lowStockThreshold lowStock becameLowStock reason orderId version
    item { quantity }
} }";

#[tokio::test]
async fn staff_watch_stock_fall_to_its_threshold_and_come_back_whichever_instance_moves_it() {
    let deployment = Deployment::new();
    let api = TestApp::spawn_in(deployment.clone(), &["--components=api"]).await;
    let consumers = start_instance(&deployment, &["--components=consumers"]).await;
    let staff = api.staff();
    let alice = api.customer("alice");

    let mut every_item = Subscription::connect(&api, &staff, Protocol::LegacyWs).await;
    every_item.start(INVENTORY_CHANGES, json!({})).await;
    wait_for_live_subscriptions(api.addr, 1).await;
    api.set_item("LAMP", 3, Some(1)).await;
    api.stock("RUG", 9).await;
    let created = every_item.next_value_of("inventoryChanged").await;
    assert_eq!(
        (
            &created["sku"],
            &created["quantity"],
            &created["delta"],
            &created["reason"]
        ),
        (&json!("LAMP"), &json!(3), &json!(3), &json!("STOCK_SET"))
    );
    assert_eq!(
        every_item.next_value_of("inventoryChanged").await["sku"],
        "RUG"
    );

    let mut one_item = Subscription::connect(&api, &staff, Protocol::TransportWs).await;
    one_item
        .start(INVENTORY_CHANGES, json!({ "sku": "LAMP" }))
        .await;
    wait_for_live_subscriptions(api.addr, 2).await;

    // The consumers instance confirms the order and deducts the stock.
    let order_id = api.place_order_id(&alice, &[("LAMP", 2), ("RUG", 1)]).await;
    let lamp_deducted = json!({
        "sku": "LAMP", "quantity": 1, "delta": -2, "lowStockThreshold": 1, "lowStock": true,
        "becameLowStock": true, "reason": "ORDER_CONFIRMED", "orderId": order_id, "version": 2,
        "item": { "quantity": 1 },
    });
    assert_eq!(
        one_item.next_value_of("inventoryChanged").await,
        lamp_deducted
    );
    let mut deductions = [
        every_item.next_value_of("inventoryChanged").await,
        every_item.next_value_of("inventoryChanged").await,
    ];
    deductions.sort_by_key(|change| change["sku"].as_str().map(str::to_owned));
    assert_eq!(deductions[0], lamp_deducted);
    assert_eq!(
        (
            &deductions[1]["sku"],
            &deductions[1]["delta"],
            &deductions[1]["lowStock"]
        ),
        (&json!("RUG"), &json!(-1), &json!(false))
    );

    // Cancelling restores the stock: no longer low.
    api.wait_for_status(&alice, &order_id, "CONFIRMED").await;
    api.update_status(&alice, &order_id, "CANCELLED").await;
    let restored = one_item.next_value_of("inventoryChanged").await;
    assert_eq!(
        (
            &restored["quantity"],
            &restored["delta"],
            &restored["lowStock"],
            &restored["becameLowStock"],
            &restored["reason"],
            &restored["version"],
        ),
        (
            &json!(3),
            &json!(2),
            &json!(false),
            &json!(false),
            &json!("ORDER_CANCELLED"),
            &json!(3)
        )
    );

    // Staff setting the item comes through too, without an order.
    api.set_item("LAMP", 10, Some(12)).await;
    let set = one_item.next_value_of("inventoryChanged").await;
    assert_eq!(
        (
            &set["quantity"],
            &set["delta"],
            &set["reason"],
            &set["orderId"],
            &set["becameLowStock"]
        ),
        (
            &json!(10),
            &json!(7),
            &json!("STOCK_SET"),
            &json!(null),
            &json!(true)
        ),
        "raising the threshold above the stock makes the item low: {set}"
    );
    consumers.stop().await;
    api.stop_and_drop_database().await;
}
