//! Prices: staff price items; each order line keeps its unit price and the order its total,
//! whatever happens to prices afterwards; one order, one currency.

use crate::helpers::TestApp;
use serde_json::{json, Value};

const SET: &str =
    "mutation($input: UpsertInventoryItemInput!) { upsertInventoryItem(input: $input) {
    item { sku price { amount currency } } userErrors { field code message } } }";

const PLACE: &str = "mutation($items: [OrderLineInput!]!) { placeOrder(input: {items: $items}) {
    order { id total { amount currency } lines { sku quantity unitPrice { amount currency } } }
    userErrors { field code message } } }";

async fn set_item(app: &TestApp, sku: &str, price: Value) -> Value {
    let mut input = json!({"sku": sku, "name": format!("Item {sku}"), "quantity": 100});
    if !price.is_string() {
        input["price"] = price;
    }
    app.query(&app.staff(), SET, json!({"input": input})).await["upsertInventoryItem"].clone()
}

#[tokio::test]
async fn an_order_keeps_the_prices_it_was_placed_at_and_its_total_never_changes() {
    let app = TestApp::spawn().await;
    let lamp = set_item(&app, "LAMP", json!({"amount": 2500, "currency": "EUR"})).await;
    assert_eq!(
        lamp["item"]["price"],
        json!({"amount": 2500, "currency": "EUR"})
    );
    set_item(&app, "BULB", json!({"amount": 399, "currency": "EUR"})).await;
    let alice = app.customer("alice");

    let placed = app
        .query(
            &alice,
            PLACE,
            json!({"items": [{"sku": "LAMP", "quantity": 2}, {"sku": "BULB", "quantity": 3}]}),
        )
        .await["placeOrder"]
        .clone();
    assert_eq!(placed["userErrors"], json!([]));
    let order = &placed["order"];
    assert_eq!(
        order["total"],
        json!({"amount": 2 * 2500 + 3 * 399, "currency": "EUR"})
    );
    assert_eq!(
        order["lines"],
        json!([
            {"sku": "LAMP", "quantity": 2, "unitPrice": {"amount": 2500, "currency": "EUR"}},
            {"sku": "BULB", "quantity": 3, "unitPrice": {"amount": 399, "currency": "EUR"}},
        ])
    );
    let id = order["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&alice, &id, "CONFIRMED").await;

    // The lamp gets dearer, and its stock is set without touching the price (kept).
    set_item(&app, "LAMP", json!({"amount": 2900, "currency": "EUR"})).await;
    let kept = set_item(&app, "LAMP", json!("keep")).await;
    assert_eq!(
        kept["item"]["price"],
        json!({"amount": 2900, "currency": "EUR"})
    );
    let again = app
        .query(
            &alice,
            "query($id: ID!) { order(id: $id) { total { amount } lines { unitPrice { amount } } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(
        again["order"]["total"]["amount"],
        2 * 2500 + 3 * 399,
        "placed totals never change"
    );
    assert_eq!(again["order"]["lines"][0]["unitPrice"]["amount"], 2500);
    let later = app
        .query(
            &alice,
            PLACE,
            json!({"items": [{"sku": "LAMP", "quantity": 1}]}),
        )
        .await;
    assert_eq!(later["placeOrder"]["order"]["total"]["amount"], 2900);

    // No price: the line has none and the order no total.
    set_item(&app, "LAMP", json!(null)).await;
    let unpriced = app
        .query(
            &alice,
            PLACE,
            json!({"items": [{"sku": "LAMP", "quantity": 1}, {"sku": "BULB", "quantity": 1}]}),
        )
        .await["placeOrder"]["order"]
        .clone();
    assert_eq!(unpriced["total"], json!(null));
    assert_eq!(unpriced["lines"][0]["unitPrice"], json!(null));
    assert_eq!(unpriced["lines"][1]["unitPrice"]["amount"], 399);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn one_order_takes_one_currency_and_bad_prices_are_named() {
    let app = TestApp::spawn().await;
    set_item(&app, "EURO-MUG", json!({"amount": 900, "currency": "EUR"})).await;
    set_item(
        &app,
        "DOLLAR-MUG",
        json!({"amount": 1000, "currency": "USD"}),
    )
    .await;
    let alice = app.customer("alice");
    let mixed = app
        .query(&alice, PLACE, json!({"items": [{"sku": "EURO-MUG", "quantity": 1}, {"sku": "DOLLAR-MUG", "quantity": 1}]}))
        .await["placeOrder"]
        .clone();
    assert_eq!(mixed["order"], json!(null));
    assert_eq!(
        mixed["userErrors"][0]["code"], "CURRENCY_MISMATCH",
        "{mixed}"
    );
    assert_eq!(app.order_count().await, 0, "nothing stored");

    set_item(
        &app,
        "GOLD-MUG",
        json!({"amount": 1_000_000, "currency": "USD"}),
    )
    .await;
    let too_much = app
        .query(
            &alice,
            PLACE,
            json!({"items": [{"sku": "GOLD-MUG", "quantity": 10_000}]}),
        )
        .await["placeOrder"]
        .clone();
    assert_eq!(
        too_much["userErrors"][0]["code"], "TOTAL_TOO_LARGE",
        "{too_much}"
    );

    let bad = set_item(&app, "X-1", json!({"amount": -1, "currency": "EURO"})).await;
    assert_eq!(
        bad["userErrors"],
        json!([
            {"field": ["price", "amount"], "code": "INVALID_PRICE", "message": "a price is 0 to 2147483647 minor units, got -1"},
            {"field": ["price", "currency"], "code": "INVALID_PRICE", "message": "\"EURO\" is not an ISO 4217 currency code (such as EUR or USD)"},
        ])
    );
    app.stop_and_drop_database().await;
}
