//! The order flow end to end: placed, checked against stock, confirmed or rejected, advanced or
//! cancelled, with stock restored exactly once.

use crate::helpers::{Protocol, Subscription, TestApp};
use serde_json::json;

#[tokio::test]
async fn an_order_that_fits_is_confirmed_and_its_subscriber_sees_pending_then_confirmed_live() {
    let app = TestApp::spawn().await;
    app.stock("KB-1", 10).await;
    let alice = app.customer("alice");
    // Subscribed before the order exists: both changes must arrive live, not from history.
    let mut live = Subscription::connect(&app, &alice, Protocol::TransportWs).await;
    live.start(
        "subscription { orderStatusChanged { orderId from to version } }",
        json!({}),
    )
    .await;
    crate::helpers::wait_for_live_subscriptions(app.addr, 1).await;

    let placed = app.place_order(&alice, &[("KB-1", 3)], None).await;
    assert_eq!(placed["userErrors"], json!([]));
    assert_eq!(placed["order"]["status"], "PENDING");
    assert_eq!(placed["order"]["version"], 1);
    assert_eq!(placed["order"]["userId"], "alice");
    let order_id = placed["order"]["id"].as_str().unwrap();

    assert_eq!(
        live.next_data().await,
        json!({ "orderId": order_id, "from": null, "to": "PENDING", "version": 1 })
    );
    assert_eq!(
        live.next_data().await,
        json!({ "orderId": order_id, "from": "PENDING", "to": "CONFIRMED", "version": 2 })
    );
    assert_eq!(app.stock_of("KB-1").await, 7);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_pending_order_cancelled_before_its_inventory_check_moves_no_stock() {
    let deployment = crate::helpers::Deployment::new();
    let api = TestApp::spawn_in(deployment.clone(), &["--components=api"]).await;
    api.stock("DESK", 4).await;
    let alice = api.customer("alice");
    let order_id = api.place_order_id(&alice, &[("DESK", 3)]).await;
    let cancel = api.update_status(&alice, &order_id, "CANCELLED").await;
    assert_eq!(cancel["accepted"], true, "{cancel}");

    // The consumers start only now: the inventory check comes first, then the cancellation.
    let consumers = crate::helpers::start_instance(&deployment, &["--components=consumers"]).await;
    let changes = api.wait_for_status(&alice, &order_id, "CANCELLED").await;
    let path: Vec<_> = changes
        .iter()
        .map(|c| c["to"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        path == ["PENDING", "CANCELLED"] || path == ["PENDING", "CONFIRMED", "CANCELLED"],
        "{path:?}"
    );
    assert_eq!(api.stock_of("DESK").await, 4);
    api.assert_invariants_hold().await;
    consumers.stop().await;
    api.stop_and_drop_database().await;
}

#[tokio::test]
async fn an_order_that_does_not_fit_is_rejected_naming_the_short_sku_and_moves_no_stock() {
    let app = TestApp::spawn().await;
    app.stock("PLENTY", 50).await;
    app.stock("SCARCE", 2).await;
    let alice = app.customer("alice");

    let order_id = app
        .place_order_id(&alice, &[("PLENTY", 5), ("SCARCE", 3)])
        .await;
    let changes = app
        .wait_for_status(&alice, order_id.as_str(), "REJECTED")
        .await;

    let rejection = changes.last().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(rejection.contains("SCARCE"), "{rejection}");
    assert!(!rejection.contains("PLENTY"), "{rejection}");
    let order = app
        .query(
            &alice,
            "query($id: ID!) { order(id: $id) { status rejectionReason } }",
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(order["order"]["status"], "REJECTED");
    assert_eq!(order["order"]["rejectionReason"], rejection.as_str());
    assert_eq!(app.stock_of("PLENTY").await, 50);
    assert_eq!(app.stock_of("SCARCE").await, 2);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn cancelling_a_confirmed_order_restores_its_stock_exactly_once() {
    let app = TestApp::spawn().await;
    app.stock("MUG", 10).await;
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("MUG", 4)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;
    assert_eq!(app.stock_of("MUG").await, 6);

    // Two cancellations race through the API: the first is queued, the second either is
    // queued too (the order was still CONFIRMED) or is a no-op.
    let first = app.update_status(&alice, &order_id, "CANCELLED").await;
    let second = app.update_status(&alice, &order_id, "CANCELLED").await;
    assert_eq!(first["accepted"], true, "{first}");
    assert_eq!(second["accepted"], true, "{second}");
    app.wait_for_status(&alice, &order_id, "CANCELLED").await;

    // Both requests that were queued have been applied (the second as a no-op).
    let queued = [&first, &second]
        .iter()
        .filter(|r| r["order"]["status"] == "CONFIRMED")
        .count() as i64;
    app.wait_for_applied_requests(queued).await;

    // A third request after the fact changes nothing either.
    let third = app.update_status(&alice, &order_id, "CANCELLED").await;
    assert_eq!(third["accepted"], true, "{third}");
    assert_eq!(third["order"]["status"], "CANCELLED");
    assert_eq!(app.stock_of("MUG").await, 10);
    let restores: i64 =
        sqlx::query_scalar("select count(*) from stock_movements where reason = 'order_cancelled'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(restores, 1);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn staff_move_a_confirmed_order_to_delivered_and_its_history_is_the_path_it_took() {
    let app = TestApp::spawn().await;
    app.stock("LAMP", 5).await;
    let alice = app.customer("alice");
    let staff = app.staff();
    let order_id = app.place_order_id(&alice, &[("LAMP", 1)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;

    for status in ["RECEIVED", "OUT_FOR_DELIVERY", "DELIVERED"] {
        let update = app.update_status(&staff, &order_id, status).await;
        assert_eq!(update["accepted"], true, "{update}");
        app.wait_for_status(&staff, &order_id, status).await;
    }

    let data = app
        .query(
            &alice,
            "query($id: ID!) { order(id: $id) { status version history { from to version } } }",
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(data["order"]["status"], "DELIVERED");
    assert_eq!(data["order"]["version"], 5);
    let versions: Vec<_> = data["order"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["to"].as_str().unwrap().to_owned(),
                c["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            ("PENDING".to_owned(), 1),
            ("CONFIRMED".to_owned(), 2),
            ("RECEIVED".to_owned(), 3),
            ("OUT_FOR_DELIVERY".to_owned(), 4),
            ("DELIVERED".to_owned(), 5),
        ]
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn orders_list_newest_first_in_pages_and_can_be_filtered_by_status() {
    let app = TestApp::spawn().await;
    app.stock("PEN", 100).await;
    let alice = app.customer("alice");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.place_order_id(&alice, &[("PEN", 1)]).await);
    }
    app.wait_for_status(&alice, &ids[2], "CONFIRMED").await;
    let query = "query($after: String, $status: OrderStatus) {
                   orders(first: 2, after: $after, status: $status) {
                     edges { cursor node { id } } pageInfo { hasNextPage endCursor }
                   }
                 }";

    let first_page = app.query(&alice, query, json!({})).await;
    let page_ids: Vec<_> = first_page["orders"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(page_ids, [ids[2].clone(), ids[1].clone()]);
    assert_eq!(first_page["orders"]["pageInfo"]["hasNextPage"], true);

    let cursor = first_page["orders"]["pageInfo"]["endCursor"].clone();
    let second_page = app.query(&alice, query, json!({ "after": cursor })).await;
    assert_eq!(
        second_page["orders"]["edges"][0]["node"]["id"],
        ids[0].as_str()
    );
    assert_eq!(second_page["orders"]["pageInfo"]["hasNextPage"], false);

    // One of the three is cancelled: each status lists exactly its own orders.
    for id in &ids {
        app.wait_for_status(&alice, id, "CONFIRMED").await;
    }
    app.update_status(&alice, &ids[1], "CANCELLED").await;
    app.wait_for_status(&alice, &ids[1], "CANCELLED").await;
    let listed = |status: &'static str| {
        let app = &app;
        let alice = &alice;
        async move {
            let page = app.query(alice, query, json!({ "status": status })).await;
            page["orders"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed("CONFIRMED").await, [ids[2].clone(), ids[0].clone()]);
    assert_eq!(listed("CANCELLED").await, [ids[1].clone()]);
    assert!(listed("PENDING").await.is_empty());
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn an_api_only_instance_and_a_consumers_only_instance_together_run_the_flow() {
    let deployment = crate::helpers::Deployment::new();
    let api = TestApp::spawn_in(deployment.clone(), &["--components=api"]).await;
    api.stock("BOLT", 10).await;
    let alice = api.customer("alice");
    let order_id = api.place_order_id(&alice, &[("BOLT", 2)]).await;

    // Without consumers nothing decides the order, though its event has left for Kafka.
    crate::helpers::wait_until_outbox_empty(&api).await;
    let pending = api
        .query(
            &alice,
            "query($id: ID!) { order(id: $id) { status } }",
            json!({ "id": order_id }),
        )
        .await;
    assert_eq!(pending["order"]["status"], "PENDING");

    let consumers = crate::helpers::start_instance(&deployment, &["--components=consumers"]).await;
    assert!(
        consumers.addr.is_none(),
        "a consumers-only instance serves no HTTP"
    );
    api.wait_for_status(&alice, &order_id, "CONFIRMED").await;
    assert_eq!(api.stock_of("BOLT").await, 8);
    consumers.stop().await;
    api.stop_and_drop_database().await;
}

#[tokio::test]
async fn seeding_the_demo_inventory_twice_creates_it_once_with_its_stock_in_the_ledger() {
    let app = TestApp::spawn().await;
    let demo = oms::seed::DEMO_ITEMS;
    assert_eq!(
        oms::seed::seed_demo_inventory(&app.db()).await.unwrap(),
        demo.len()
    );
    assert_eq!(oms::seed::seed_demo_inventory(&app.db()).await.unwrap(), 0);
    let (sku, _, quantity, _) = demo[0];
    assert_eq!(app.stock_of(sku).await, i64::from(quantity));
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}
