//! Stock is never oversold and never restored twice, whatever runs at the same time.

use crate::helpers::{eventually, Deployment, TestApp};
use futures_util::future::join_all;
use serde_json::json;
use std::time::Duration;

/// Waits until no order is PENDING and the outbox is empty, both in one snapshot: every order
/// placed so far is decided and every event so far published (an order and its event are stored
/// together). What consumers apply after that (cancellations) is waited on by its own count.
async fn settled(app: &TestApp) {
    eventually(Duration::from_secs(300), || async {
        let (pending, outbox): (i64, i64) = sqlx::query_as(
            "select (select count(*) from orders where status = 'PENDING'),
                    (select count(*) from outbox)",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if pending == 0 && outbox == 0 {
            Ok(())
        } else {
            Err(format!(
                "the system did not settle in time: {pending} orders PENDING, \
                 {outbox} events in the outbox"
            ))
        }
    })
    .await
}

async fn deadlocks(app: &TestApp) -> i64 {
    sqlx::query_scalar("select deadlocks from pg_stat_database where datname = current_database()")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn count_with_status(app: &TestApp, status: &str) -> i64 {
    sqlx::query_scalar("select count(*) from orders where status = $1")
        .bind(status)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn five_hundred_concurrent_orders_for_one_hundred_units_confirm_exactly_one_hundred() {
    let app = TestApp::spawn_in(Deployment::new(), &["--database-max-connections=20"]).await;
    app.stock("HOT", 100).await;
    let deadlocks_before = deadlocks(&app).await;
    let customers: Vec<String> = (0..500).map(|i| app.customer(&format!("c{i}"))).collect();

    let placed = join_all(
        customers
            .iter()
            .map(|token| app.place_order(token, &[("HOT", 1)], None)),
    )
    .await;
    for payload in &placed {
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
    }
    settled(&app).await;

    assert_eq!(count_with_status(&app, "CONFIRMED").await, 100);
    assert_eq!(count_with_status(&app, "REJECTED").await, 400);
    assert_eq!(app.stock_of("HOT").await, 0);
    assert_eq!(deadlocks(&app).await, deadlocks_before, "no deadlocks");
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn random_multi_line_orders_cancellations_and_restocks_keep_stock_conserved() {
    let app = TestApp::spawn_in(Deployment::new(), &["--database-max-connections=20"]).await;
    let skus = ["H1", "H2", "H3", "H4"];
    for sku in skus {
        app.stock(sku, 40).await;
    }
    let deadlocks_before = deadlocks(&app).await;
    let mut rng = fastrand::Rng::with_seed(7);
    let orders: Vec<(String, Vec<(&str, i32)>)> = (0..200)
        .map(|i| {
            let mut lines: Vec<(&str, i32)> = Vec::new();
            for sku in skus {
                if rng.bool() {
                    lines.push((sku, rng.i32(1..=3)));
                }
            }
            if lines.is_empty() {
                lines.push((skus[rng.usize(..skus.len())], 1));
            }
            (app.customer(&format!("c{}", i % 20)), lines)
        })
        .collect();

    let placed = join_all(
        orders
            .iter()
            .map(|(token, lines)| app.place_order(token, lines, None)),
    )
    .await;
    // While the inventory check runs: customers cancel every third order, staff restock.
    let api = &app;
    let cancels = placed
        .iter()
        .zip(&orders)
        .step_by(3)
        .map(|(payload, (token, _))| {
            let id = payload["order"]["id"].as_str().unwrap().to_owned();
            async move { api.update_status(token, &id, "CANCELLED").await }
        });
    let restocks = skus.iter().map(|sku| app.stock(sku, 60));
    let (cancelled, _) = tokio::join!(join_all(cancels), join_all(restocks));
    for outcome in &cancelled {
        // Accepted, or refused because the order was already rejected.
        let refused_as_final = outcome["userErrors"][0]["code"] == "INVALID_TRANSITION";
        assert!(outcome["accepted"] == true || refused_as_final, "{outcome}");
    }
    settled(&app).await;
    // Every accepted cancellation has been applied once the orders topic is drained too.
    let accepted = cancelled.iter().filter(|c| c["accepted"] == true).count() as i64;
    eventually(Duration::from_secs(60), || async {
        let applied: i64 =
            sqlx::query_scalar("select count(*) from processed_events where consumer = 'orders'")
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if applied >= accepted {
            Ok(())
        } else {
            Err(format!("cancellations applied: {applied}/{accepted}"))
        }
    })
    .await;

    app.assert_invariants_hold().await;
    assert_eq!(deadlocks(&app).await, deadlocks_before, "no deadlocks");
    assert!(count_with_status(&app, "CANCELLED").await > 0);
    app.stop_and_drop_database().await;
}
