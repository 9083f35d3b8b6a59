//! Faults: the broker down, the process told to stop.

use crate::helpers::{
    free_port, group_caught_up, signal, spawn_oms_process, wait_until_ready, DedicatedBroker,
    Deployment, Protocol, Subscription, TestApp,
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
    let histories = app.history_lengths().await;
    assert_eq!(
        histories,
        vec![2; 6],
        "PENDING then CONFIRMED, never doubled"
    );
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn sigterm_closes_websockets_with_going_away_and_exits_promptly() {
    let deployment = Deployment::new();
    let port = free_port();
    let listen = format!("--listen-addr=127.0.0.1:{port}");
    let mut process = spawn_oms_process(&deployment, &[&listen]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until_ready(addr).await;
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

#[tokio::test]
async fn a_postgres_restart_under_load_gives_clear_errors_meanwhile_and_loses_nothing() {
    let postgres = crate::helpers::DedicatedPostgres::start();
    let mut deployment = Deployment::new();
    deployment.database_url = postgres.url(&format!("oms_test_{}", deployment.suffix));
    let app = TestApp::spawn_in(deployment, &[]).await;
    app.stock("INK", 1000).await;
    let alice = app.customer("alice");

    // Load: one customer keeps placing orders while the database goes away and comes back.
    let load = async {
        let mut placed = Vec::new();
        let mut unavailable = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(12) {
            let (_, body) = app
                .post(
                    Some(&alice),
                    "mutation { placeOrder(input: {items: [{sku: \"INK\", quantity: 1}]}) { order { id } } }",
                    json!({}),
                )
                .await;
            match body["data"]["placeOrder"]["order"]["id"].as_str() {
                Some(id) => placed.push(id.to_owned()),
                None => unavailable.push(body),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (placed, unavailable)
    };
    let outage = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        postgres.down();
        tokio::time::sleep(Duration::from_secs(4)).await;
        postgres.up();
    };
    let ((placed, unavailable), ()) = tokio::join!(load, outage);

    assert!(!unavailable.is_empty(), "requests during the outage failed");
    for body in &unavailable {
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "UNAVAILABLE", "{body}");
        let message = error["message"].as_str().unwrap();
        assert!(
            !message.contains("sqlx") && !message.contains("connection"),
            "{message}"
        );
    }
    assert!(
        placed.len() > 20,
        "orders were placed before and after: {}",
        placed.len()
    );

    // Consumers and the relay resumed by themselves: every accepted order is decided.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let undecided: i64 =
            sqlx::query_scalar("select count(*) from orders where status = 'PENDING'")
                .fetch_one(&app.pool)
                .await
                .unwrap_or(i64::MAX);
        if undecided == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{undecided} orders still PENDING"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from orders")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, placed.len() as i64, "no order lost, none doubled");
    assert_eq!(app.stock_of("INK").await, 1000 - placed.len() as i64);
    app.assert_invariants_hold().await;
    app.stop().await;
}

#[tokio::test]
async fn a_consumer_killed_after_its_database_commit_but_before_its_offset_commit_is_harmless() {
    let deployment = Deployment::new();
    let api = TestApp::spawn_in(deployment.clone(), &["--components=api"]).await;
    api.stock("BELL", 20).await;
    let alice = api.customer("alice");
    // Offsets are committed only once a minute, so the kill certainly loses them.
    let mut consumers = spawn_oms_process(
        &deployment,
        &[
            "--components=consumers",
            "--kafka-commit-interval-ms=60000",
            "--kafka-session-timeout-ms=6000",
        ],
    );
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(api.place_order_id(&alice, &[("BELL", 2)]).await);
    }
    for id in &ids {
        api.wait_for_status(&alice, id, "CONFIRMED").await;
    }
    signal(consumers.id().unwrap(), "KILL");
    consumers.wait().await.unwrap();
    let group = format!("oms-{}-inventory", deployment.suffix);
    let topic = format!("inventory-{}", deployment.suffix);
    let committed = tokio::task::spawn_blocking(move || group_caught_up(&group, &topic))
        .await
        .unwrap();
    assert!(
        committed.is_err(),
        "the applied messages' offsets were never committed"
    );

    // A new consumer gets the same messages again, and one more.
    let restarted = crate::helpers::start_instance(
        &deployment,
        &["--components=consumers", "--kafka-session-timeout-ms=6000"],
    )
    .await;
    let last = api.place_order_id(&alice, &[("BELL", 2)]).await;
    // The group first waits out the dead member's session, then rebalances.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status: String = sqlx::query_scalar("select status from orders where id = $1::uuid")
            .bind(&last)
            .fetch_one(&api.pool)
            .await
            .unwrap();
        if status == "CONFIRMED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new consumer never took over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert_eq!(
        api.stock_of("BELL").await,
        20 - 6 * 2,
        "each order deducted once"
    );
    // The five were delivered again, and each recognised as applied.
    let ops = restarted.ops_addr.expect("the operator endpoints");
    let metrics = crate::helpers::metrics_at(ops).await;
    assert!(
        metrics.contains("oms_events_redelivered_total{consumer=\"inventory\"} 5\n"),
        "{metrics}"
    );
    let histories = api.history_lengths().await;
    assert_eq!(histories, vec![2; 6]);
    api.assert_invariants_hold().await;
    restarted.stop().await;
    api.stop_and_drop_database().await;
}

/// This instance's count of partition assignments to `group`.
async fn rebalances(ops: std::net::SocketAddr, group: &str) -> u64 {
    let page = crate::helpers::metrics_at(ops).await;
    let prefix = format!("oms_consumer_rebalances_total{{group=\"{group}\"}} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_database_stall_longer_than_the_poll_interval_keeps_the_group_stable_and_loses_nothing() {
    let deployment = Deployment::new();
    let api = TestApp::spawn_in(deployment.clone(), &["--components=api"]).await;
    api.stock("DESK", 50).await;
    let alice = api.customer("alice");
    // Two slots, and a group that drops a member not polling for 6 s.
    let consumers = crate::helpers::start_instance(
        &deployment,
        &[
            "--components=consumers",
            "--kafka-consumer-concurrency=2",
            "--inventory-batch-max=1",
            "--kafka-session-timeout-ms=6000",
            "--kafka-max-poll-interval-ms=6000",
        ],
    )
    .await;
    let first = api.place_order_id(&alice, &[("DESK", 1)]).await;
    api.wait_for_status(&alice, &first, "CONFIRMED").await;
    let ops = consumers.ops_addr.expect("the operator endpoints");
    let group = format!("oms-{}-inventory", deployment.suffix);
    let assigned = rebalances(ops, &group).await;
    assert!(assigned >= 1, "the consumer was assigned its partitions");

    // The inbox is locked: every inventory check waits on it, both slots are taken, and more
    // orders arrive.
    let mut stall = api.pool.begin().await.unwrap();
    sqlx::query("lock table processed_events in access exclusive mode")
        .execute(&mut *stall)
        .await
        .unwrap();
    let mut placed = Vec::new();
    for _ in 0..6 {
        placed.push(api.place_order_id(&alice, &[("DESK", 1)]).await);
    }
    crate::helpers::wait_until_outbox_empty(&api).await;
    // Both slots are stuck on the lock; from then on the stall outlasts the poll interval (6 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>(
        "select count(*) from pg_locks
         where not granted and relation = 'processed_events'::regclass",
    )
    .fetch_one(&api.pool)
    .await
    .unwrap()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the checks never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    stall.rollback().await.unwrap();

    for id in &placed {
        api.wait_for_status(&alice, id, "CONFIRMED").await;
    }
    assert_eq!(
        rebalances(ops, &group).await,
        assigned,
        "the consumer left its group during the stall"
    );
    assert_eq!(api.stock_of("DESK").await, 50 - 7);
    assert_eq!(api.history_lengths().await, vec![2; 7]);
    consumers.stop().await;
    api.stop_and_drop_database().await;
}
