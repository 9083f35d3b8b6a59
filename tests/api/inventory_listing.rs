//! Listing inventory items: by SKU or name prefix, the low-stock ones, and both.

use crate::helpers::TestApp;
use serde_json::{json, Value};

const ITEMS: &str = "query($filter: InventoryItemFilter, $first: Int, $after: String) {
    inventoryItems(filter: $filter, first: $first, after: $after) {
      pageInfo { hasNextPage endCursor } nodes { sku name lowStock }
    }
  }";

async fn skus(app: &TestApp, variables: Value) -> Vec<String> {
    app.query(&app.customer("alice"), ITEMS, variables).await["inventoryItems"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["sku"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn items_are_found_by_sku_or_name_prefix_and_by_low_stock() {
    let app = TestApp::spawn().await;
    let staff = app.staff();
    for (sku, name, quantity, threshold) in [
        ("LAMP-1", "Desk lamp", 3, 5),
        ("LAMP-2", "Floor lamp", 50, 5),
        ("DESK-1", "Oak desk", 1, 2),
        ("MUG_1", "Lamp-shaped mug", 40, 0),
        ("MUGX1", "Mug", 40, 0),
    ] {
        let data = app
            .query(
                &staff,
                "mutation($input: UpsertInventoryItemInput!) {
                   upsertInventoryItem(input: $input) { userErrors { message } } }",
                json!({"input": {"sku": sku, "name": name, "quantity": quantity,
                                 "lowStockThreshold": threshold}}),
            )
            .await;
        assert_eq!(data["upsertInventoryItem"]["userErrors"], json!([]));
    }

    assert_eq!(
        skus(&app, json!({"filter": {"search": "lamp"}})).await,
        vec!["LAMP-1", "LAMP-2", "MUG_1"],
        "SKU or name, ignoring case"
    );
    assert_eq!(
        skus(&app, json!({"filter": {"search": "desk"}})).await,
        vec!["DESK-1", "LAMP-1"]
    );
    assert_eq!(
        skus(&app, json!({"filter": {"search": "mug_"}})).await,
        vec!["MUG_1"],
        "an underscore is a character, not a wildcard"
    );
    assert_eq!(
        skus(&app, json!({"filter": {"search": "%"}})).await,
        Vec::<String>::new()
    );
    assert_eq!(
        skus(&app, json!({"filter": {"lowStock": true}})).await,
        vec!["DESK-1", "LAMP-1"]
    );
    assert_eq!(
        skus(
            &app,
            json!({"filter": {"lowStock": true, "search": "lamp"}})
        )
        .await,
        vec!["LAMP-1"]
    );
    // Pages of a filtered list follow the same filter.
    let first = app
        .query(
            &staff,
            ITEMS,
            json!({"filter": {"search": "lamp"}, "first": 2}),
        )
        .await["inventoryItems"]
        .clone();
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let rest = skus(
        &app,
        json!({"filter": {"search": "lamp"}, "after": first["pageInfo"]["endCursor"]}),
    )
    .await;
    assert_eq!(rest, vec!["MUG_1"]);

    let (_, body) = app
        .post(Some(&staff), ITEMS, json!({"filter": {"search": ""}}))
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("search must be 1 to 64"));
    app.stop_and_drop_database().await;
}
