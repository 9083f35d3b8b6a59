//! Faults: the broker down, the process told to stop.

use crate::helpers::{
    free_port, serve_flags, signal, DedicatedBroker, Deployment, Protocol, Subscription, TestApp,
};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn orders_placed_while_the_broker_is_down_are_accepted_and_confirmed_once_it_is_back() {
    let broker = DedicatedBroker::start().await;
    // A short producer timeout, so the relay's sends fail and are retried while it is down.
    let app = TestApp::spawn_in(
        Deployment::new(),
        &[
            &format!("--kafka-brokers={}", broker.address),
            "--kafka-message-timeout-ms=1500",
        ],
    )
    .await;
    app.stock("RUG", 20).await;
    let alice = app.customer("alice");
    let before = app.place_order_id(&alice, &[("RUG", 1)]).await;
    app.wait_for_status(&alice, &before, "CONFIRMED").await;

    broker.pause();
    let started = Instant::now();
    let mut placed = Vec::new();
    for _ in 0..5 {
        let payload = app.place_order(&alice, &[("RUG", 2)], None).await;
        assert_eq!(payload["order"]["status"], "PENDING", "{payload}");
        placed.push(payload["order"]["id"].as_str().unwrap().to_owned());
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the API does not wait for Kafka"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let waiting: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(waiting >= 5, "the events wait in the outbox ({waiting})");
    broker.resume();

    for order_id in &placed {
        app.wait_for_status(&alice, order_id, "CONFIRMED").await;
    }
    assert_eq!(
        app.stock_of("RUG").await,
        20 - 1 - 5 * 2,
        "each order deducted once"
    );
    let histories: Vec<i64> = sqlx::query_scalar(
        "select count(*) from order_status_history group by order_id order by 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        histories,
        vec![2; 6],
        "PENDING then CONFIRMED, never doubled"
    );
    let report = oms::service::audit::audit(&app.pool).await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn sigterm_closes_websockets_with_going_away_and_exits_promptly() {
    let deployment = Deployment::new();
    let port = free_port();
    let listen = format!("--listen-addr=127.0.0.1:{port}");
    let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .arg("serve")
        .args(serve_flags(&deployment, &[&listen]))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("oms starts");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = reqwest::get(format!("http://{addr}/readyz")).await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "oms did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let token = oms::auth::TokenKeys::new(crate::helpers::SECRET.as_bytes()).issue(
        "staff-1",
        oms::auth::Role::Staff,
        Duration::from_secs(60),
    );
    let mut subscription = Subscription::connect_to(addr, &token, Protocol::TransportWs).await;
    subscription
        .start("subscription { orderStatusChanged { orderId } }", json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let asked = Instant::now();
    signal(process.id().unwrap(), "TERM");
    let closed = subscription.next_message().await.expect("a close frame");
    assert_eq!(closed["close"], 1001, "{closed}");
    let status = tokio::time::timeout(Duration::from_secs(15), process.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(asked.elapsed() < Duration::from_secs(15));
    use sqlx::migrate::MigrateDatabase;
    let _ = sqlx::Postgres::force_drop_database(&deployment.database_url).await;
}
