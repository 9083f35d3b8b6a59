//! Relay's Node interface: orders and inventory items refetched by ids unique across types.

use crate::helpers::TestApp;
use serde_json::json;

const NODES: &str = "query($ids: [ID!]!) {
    nodes(ids: $ids) {
      __typename id
      ... on Order { status userId }
      ... on InventoryItem { sku quantity }
    }
  }";

#[tokio::test]
async fn node_and_nodes_refetch_orders_and_items_by_ids_unique_across_types() {
    let app = TestApp::spawn().await;
    app.stock("LAMP", 5).await;
    let alice = app.customer("alice");
    let order = app.place_order_id(&alice, &[("LAMP", 1)]).await;
    app.wait_for_status(&alice, &order, "CONFIRMED").await;
    let staff = app.staff();

    let item_id = app
        .query(&staff, "{ inventoryItem(sku: \"LAMP\") { id } }", json!({}))
        .await["inventoryItem"]["id"]
        .clone();
    assert_eq!(item_id, "InventoryItem:LAMP");
    let unknown = uuid::Uuid::now_v7().to_string();
    let nodes = app
        .query(
            &staff,
            NODES,
            json!({"ids": [order, item_id, unknown, "InventoryItem:NONE"]}),
        )
        .await["nodes"]
        .clone();
    assert_eq!(
        nodes,
        json!([
            {"__typename": "Order", "id": order, "status": "CONFIRMED", "userId": "alice"},
            {"__typename": "InventoryItem", "id": "InventoryItem:LAMP", "sku": "LAMP", "quantity": 4},
            null,
            null,
        ])
    );
    let node = app
        .query(
            &alice,
            "query($id: ID!) { node(id: $id) { id ... on Order { status } } }",
            json!({"id": order}),
        )
        .await;
    assert_eq!(node["node"], json!({"id": order, "status": "CONFIRMED"}));
    // The order's id is the one `order(id)` has always taken.
    let by_order = app
        .query(
            &alice,
            "query($id: ID!) { order(id: $id) { id } }",
            json!({"id": order}),
        )
        .await;
    assert_eq!(by_order["order"]["id"], order);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_customer_cannot_fetch_anothers_order_as_a_node_and_bad_ids_are_named() {
    let app = TestApp::spawn().await;
    app.stock("LAMP", 5).await;
    let bobs = app
        .place_order_id(&app.customer("bob"), &[("LAMP", 1)])
        .await;
    let alice = app.customer("alice");
    let nodes = app.query(&alice, NODES, json!({"ids": [bobs]})).await;
    assert_eq!(
        nodes["nodes"],
        json!([null]),
        "bob's order is not hers to see"
    );

    for bad in ["not-an-id", "InventoryItem:has space", "Order:1"] {
        let (_, body) = app.post(Some(&alice), NODES, json!({"ids": [bad]})).await;
        let error = &body["errors"][0];
        assert_eq!(
            error["extensions"]["code"], "BAD_USER_INPUT",
            "{bad}: {body}"
        );
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("is not a node id"),
            "{body}"
        );
    }
    let too_many: Vec<String> = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let (_, body) = app
        .post(Some(&alice), NODES, json!({"ids": too_many}))
        .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most"),
        "{body}"
    );
    app.stop_and_drop_database().await;
}
