//! `order(id)` reads an order with its lines in one statement when the query asks for them, and
//! the orders of concurrent requests (or of one document's aliases) in the same statement: each
//! order must still come with its own lines, and only to whoever may see it.

use crate::helpers::TestApp;
use futures_util::future::join_all;
use serde_json::{json, Value};

/// The lines customer `n` orders: `n % 3 + 1` lines, of quantities that name the customer.
fn lines_of_customer(n: i32) -> Vec<(&'static str, i32)> {
    [("PEN", n + 1), ("INK", n + 100), ("PAD", n + 200)]
        .into_iter()
        .take((n % 3 + 1) as usize)
        .collect()
}

fn as_json(lines: &[(&str, i32)]) -> Value {
    lines
        .iter()
        .map(|(sku, quantity)| json!({ "sku": sku, "quantity": quantity }))
        .collect()
}

#[tokio::test]
async fn orders_read_together_each_come_with_their_own_lines_and_only_to_whoever_may_see_them() {
    let app = TestApp::spawn_in(crate::helpers::Deployment::new(), &["--components=api"]).await;
    for sku in ["PEN", "INK", "PAD"] {
        app.stock(sku, 10_000).await;
    }
    let mut orders = Vec::new();
    for n in 0..12 {
        let token = app.customer(&format!("customer-{n}"));
        let id = app.place_order_id(&token, &lines_of_customer(n)).await;
        orders.push((n, token, id));
    }

    // Every customer reads their own order at once, with its lines and without them.
    let app_ref = &app;
    let reads = join_all(orders.iter().map(|(_, token, id)| async move {
        let with_lines = app_ref.query(
            token,
            "query($id: ID!) { order(id: $id) { id userId lines { sku quantity } } }",
            json!({ "id": id }),
        );
        let without_lines = app_ref.query(
            token,
            "query($id: ID!) { order(id: $id) { id userId } }",
            json!({ "id": id }),
        );
        tokio::join!(with_lines, without_lines)
    }))
    .await;
    for ((n, _, id), (with_lines, without_lines)) in orders.iter().zip(reads) {
        let order = &with_lines["order"];
        assert_eq!(order["id"], *id);
        assert_eq!(order["userId"], format!("customer-{n}"));
        assert_eq!(
            order["lines"],
            as_json(&lines_of_customer(*n)),
            "customer-{n}"
        );
        assert_eq!(
            without_lines["order"],
            json!({ "id": id, "userId": format!("customer-{n}") })
        );
    }

    // One document asking for every order (staff), by aliases resolved together.
    let document = format!(
        "{{ {} }}",
        orders
            .iter()
            .map(|(n, _, id)| format!(
                r#"o{n}: order(id: "{id}") {{ userId lines {{ sku quantity }} }}"#
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let all = app.query(&app.staff(), &document, json!({})).await;
    for (n, _, _) in &orders {
        assert_eq!(
            all[format!("o{n}")],
            json!({ "userId": format!("customer-{n}"), "lines": as_json(&lines_of_customer(*n)) })
        );
    }

    // Another customer's order, asked for with its lines, is not there for them.
    let (_, first_token, _) = &orders[0];
    let (_, _, second_id) = &orders[1];
    let other = app
        .query(
            first_token,
            "query($id: ID!) { order(id: $id) { id lines { sku quantity } } }",
            json!({ "id": second_id }),
        )
        .await;
    assert_eq!(other["order"], Value::Null);
    app.stop_and_drop_database().await;
}
