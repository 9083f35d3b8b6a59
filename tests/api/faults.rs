//! Faults: the broker down, the database or the broker cut off for a minute, the process told
//! to stop.

use crate::helpers::eventually;
use crate::helpers::{
    free_port, group_caught_up, messages_per_partition, signal, spawn_oms_process,
    wait_for_live_subscriptions, wait_until_ready, DedicatedBroker, Deployment, Protocol,
    Subscription, TestApp,
};
use crate::proxy::{address_of, TcpProxy};
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
    // A period, not a wait: the relay's sends time out (1.5 s) and are retried meanwhile, and
    // nothing may leave the outbox while the broker is down.
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
    wait_for_live_subscriptions(addr, 1).await;

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
            // Pacing, not a wait: one order every 50 ms or so, before, during and after the outage.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (placed, unavailable)
    };
    // Periods, not waits: 3 s of load before the database goes, 4 s of load while it is down.
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
    eventually(Duration::from_secs(60), || async {
        let undecided: Result<i64, _> =
            sqlx::query_scalar("select count(*) from orders where status = 'PENDING'")
                .fetch_one(&app.pool)
                .await;
        match undecided {
            Ok(0) => Ok(()),
            Ok(undecided) => Err(format!("{undecided} orders still PENDING")),
            Err(error) => Err(format!("the PENDING orders cannot be counted: {error}")),
        }
    })
    .await;
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
    eventually(Duration::from_secs(90), || async {
        let status: String = sqlx::query_scalar("select status from orders where id = $1::uuid")
            .bind(&last)
            .fetch_one(&api.pool)
            .await
            .unwrap();
        match status.as_str() {
            "CONFIRMED" => Ok(()),
            _ => Err(format!(
                "the new consumer never took over: the last order is {status}"
            )),
        }
    })
    .await;

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

/// Locks the consumers' inbox from the test's own connection: every consumer that applies an
/// event waits on it until the returned transaction ends.
async fn lock_the_inbox(app: &TestApp) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut hold = app.pool.begin().await.unwrap();
    sqlx::query("lock table processed_events in access exclusive mode")
        .execute(&mut *hold)
        .await
        .unwrap();
    hold
}

/// Waits until `count` transactions wait on the inbox's lock.
async fn wait_for_inbox_waiters(app: &TestApp, count: i64) {
    eventually(Duration::from_secs(30), || async {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_locks
             where not granted and relation = 'processed_events'::regclass",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        (waiting >= count).then_some(()).ok_or(format!(
            "{waiting} of {count} consumers wait on the inbox's lock"
        ))
    })
    .await
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
    let stall = lock_the_inbox(&api).await;
    let mut placed = Vec::new();
    for _ in 0..6 {
        placed.push(api.place_order_id(&alice, &[("DESK", 1)]).await);
    }
    crate::helpers::wait_until_outbox_empty(&api).await;
    // Both slots are stuck on the lock; from then on the stall outlasts the poll interval (6 s).
    wait_for_inbox_waiters(&api, 2).await;
    // A period, not a wait: the stall itself, held past the poll interval.
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

/// How long the network outages below last: three times the poll interval they run with (20 s
/// by default), and longer than any retry backoff.
const OUTAGE: Duration = Duration::from_secs(60);

/// Waits until `/readyz` of `addr` answers `status`; returns its body.
async fn wait_for_readiness(addr: std::net::SocketAddr, status: u16) -> serde_json::Value {
    eventually(Duration::from_secs(30), || async {
        let response = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
        match response.status().as_u16() {
            answered if answered == status => Ok(response.json().await.unwrap()),
            answered => Err(format!("/readyz answered {answered}, not {status}")),
        }
    })
    .await
}

/// This instance's partition assignments of the inventory and orders consumer groups.
async fn assignments(ops: std::net::SocketAddr, deployment: &Deployment) -> (u64, u64) {
    let group = |consumer: &str| format!("oms-{}-{consumer}", deployment.suffix);
    (
        rebalances(ops, &group("inventory")).await,
        rebalances(ops, &group("orders")).await,
    )
}

#[tokio::test]
async fn a_database_cut_for_a_minute_costs_a_minute_keeps_the_groups_and_loses_nothing() {
    let deployment = Deployment::new();
    let proxy = TcpProxy::start(address_of(&deployment.database_url)).await;
    let through_proxy = format!("--database-url={}", proxy.url_for(&deployment.database_url));
    // A group drops a member that does not poll for 6 s: the outage lasts ten times that.
    let app = TestApp::spawn_in(
        deployment.clone(),
        &[
            &through_proxy,
            "--kafka-session-timeout-ms=6000",
            "--kafka-max-poll-interval-ms=6000",
        ],
    )
    .await;
    let ops = app.ops_addr().unwrap_or(app.addr);
    app.stock("LAMP", 100).await;
    let alice = app.customer("alice");
    let mut confirmed = Vec::new();
    for _ in 0..4 {
        let id = app.place_order_id(&alice, &[("LAMP", 1)]).await;
        app.wait_for_status(&alice, &id, "CONFIRMED").await;
        confirmed.push(id);
    }
    let assigned = assignments(ops, &deployment).await;
    assert!(assigned.0 >= 1 && assigned.1 >= 1, "{assigned:?}");

    // Work in flight when the network goes: six placements and two cancellations published to
    // Kafka, their consumers holding them and waiting on a lock of the inbox (held directly).
    let hold = lock_the_inbox(&app).await;
    let mut in_flight = Vec::new();
    for _ in 0..6 {
        in_flight.push(app.place_order_id(&alice, &[("LAMP", 2)]).await);
    }
    for id in &confirmed[..2] {
        let answer = app.update_status(&alice, id, "CANCELLED").await;
        assert_eq!(answer["accepted"], true, "{answer}");
    }
    crate::helpers::wait_until_outbox_empty(&app).await;
    wait_for_inbox_waiters(&app, 2).await;

    proxy.cut();
    hold.rollback().await.unwrap();
    let cut_at = Instant::now();
    let not_ready = wait_for_readiness(ops, 503).await;
    assert!(not_ready.to_string().contains("database"), "{not_ready}");
    // Clients keep asking; every answer meanwhile is UNAVAILABLE, with nothing internal in it.
    let mut answers = 0;
    while cut_at.elapsed() < OUTAGE {
        let (_, body) = app
            .post(
                Some(&alice),
                "mutation { placeOrder(input: {items: [{sku: \"LAMP\", quantity: 1}]}) { order { id } } }",
                json!({}),
            )
            .await;
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "UNAVAILABLE", "{body}");
        let message = error["message"].as_str().unwrap();
        assert!(
            !message.contains("sqlx") && !message.contains("connection"),
            "{message}"
        );
        answers += 1;
        // Pacing, not a wait: a request every half second for as long as the cut lasts.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(answers >= 10, "{answers} requests during the cut");
    assert!(proxy.refused() > 0, "oms kept trying to reach the database");
    proxy.restore();

    wait_for_readiness(ops, 200).await;
    for id in &in_flight {
        app.wait_for_status(&alice, id, "CONFIRMED").await;
    }
    for id in &confirmed[..2] {
        app.wait_for_status(&alice, id, "CANCELLED").await;
    }
    let after = app.place_order_id(&alice, &[("LAMP", 1)]).await;
    app.wait_for_status(&alice, &after, "CONFIRMED").await;

    assert_eq!(
        assignments(ops, &deployment).await,
        assigned,
        "a consumer left its group during the cut"
    );
    // Each change applied once: two cancelled (stock back), two confirmed, six confirmed in
    // flight, one after.
    assert_eq!(app.stock_of("LAMP").await, 100 - 2 - 6 * 2 - 1);
    assert_eq!(
        app.order_count().await,
        4 + 6 + 1,
        "no order doubled or lost"
    );
    assert_eq!(
        app.history_lengths().await,
        vec![2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3]
    );
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_broker_cut_for_a_minute_keeps_orders_coming_and_confirms_each_once_after() {
    let broker_port = free_port();
    let proxy = TcpProxy::start(format!("127.0.0.1:{broker_port}").parse().unwrap()).await;
    // The broker tells its clients to come back through the proxy.
    let _broker = DedicatedBroker::start_with(broker_port, proxy.port).await;
    let deployment = Deployment::new();
    let app = TestApp::spawn_in(
        deployment.clone(),
        &[
            &format!("--kafka-brokers=127.0.0.1:{}", proxy.port),
            "--kafka-session-timeout-ms=6000",
            "--kafka-max-poll-interval-ms=6000",
        ],
    )
    .await;
    let ops = app.ops_addr().unwrap_or(app.addr);
    app.stock("SOFA", 100).await;
    let alice = app.customer("alice");
    let before = app.place_order_id(&alice, &[("SOFA", 1)]).await;
    app.wait_for_status(&alice, &before, "CONFIRMED").await;
    let assigned = assignments(ops, &deployment).await;

    proxy.cut();
    let cut_at = Instant::now();
    // Orders keep coming: each is answered at once, stored PENDING, its event kept in the
    // outbox; a cancellation is accepted and kept too.
    let cancellation = app.update_status(&alice, &before, "CANCELLED").await;
    assert_eq!(cancellation["accepted"], true, "{cancellation}");
    let mut placed = Vec::new();
    while cut_at.elapsed() < OUTAGE {
        let asked = Instant::now();
        let payload = app.place_order(&alice, &[("SOFA", 2)], None).await;
        assert_eq!(payload["order"]["status"], "PENDING", "{payload}");
        // Seconds only on a machine busy with other tests; the broker's timeouts are 30 s.
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "the API waited for Kafka: {:?}",
            asked.elapsed()
        );
        placed.push(payload["order"]["id"].as_str().unwrap().to_owned());
        // Pacing, not a wait: an order every two seconds for as long as the cut lasts.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let not_ready = wait_for_readiness(ops, 503).await;
    assert!(not_ready.to_string().contains("Kafka"), "{not_ready}");
    let waiting: i64 = sqlx::query_scalar("select count(*) from outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        waiting > placed.len() as i64,
        "the events wait in the outbox ({waiting})"
    );
    assert!(proxy.refused() > 0, "oms kept trying to reach the broker");
    proxy.restore();

    app.wait_for_status(&alice, &before, "CANCELLED").await;
    for id in &placed {
        app.wait_for_status(&alice, id, "CONFIRMED").await;
    }
    wait_for_readiness(ops, 200).await;
    // The group coordinator (the broker) drops a member it has not heard from for the session
    // timeout, so each consumer joins again once, and only once: it kept polling throughout
    // (before, it paused up to 5 s after each receive error, overran the poll interval after
    // the cut and took more than 30 s to be assigned again).
    let (inventory, orders) = assignments(ops, &deployment).await;
    assert!(
        inventory <= assigned.0 + 1 && orders <= assigned.1 + 1,
        "assignments before the cut {assigned:?}, after ({inventory}, {orders})"
    );
    assert_eq!(app.stock_of("SOFA").await, 100 - 2 * placed.len() as i64);
    let mut histories = vec![2; placed.len()];
    histories.push(3);
    assert_eq!(
        app.history_lengths().await,
        histories,
        "each change applied once"
    );
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

/// This instance's `oms_consumer_fetching_paused` for `consumer`.
async fn fetching_paused(ops: std::net::SocketAddr, consumer: &str) -> Option<i64> {
    let page = crate::helpers::metrics_at(ops).await;
    let prefix = format!("oms_consumer_fetching_paused{{consumer=\"{consumer}\"}} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
}

async fn wait_for_fetching_paused(ops: std::net::SocketAddr, consumer: &str, paused: i64) {
    eventually(Duration::from_secs(30), || async {
        match fetching_paused(ops, consumer).await {
            Some(seen) if seen == paused => Ok(()),
            seen => Err(format!(
                "{consumer}'s fetching paused is {seen:?}, not {paused}"
            )),
        }
    })
    .await
}

#[tokio::test]
async fn a_consumer_whose_queue_fills_in_a_stall_pauses_fetching_and_resumes_after_it() {
    let deployment = Deployment::new();
    let api = TestApp::spawn_in(deployment.clone(), &["--components=api"]).await;
    api.stock("VASE", 100).await;
    let alice = api.customer("alice");
    // One slot, one order a batch, and at most eight received orders held.
    let consumers = crate::helpers::start_instance(
        &deployment,
        &[
            "--components=consumers",
            "--kafka-consumer-concurrency=1",
            "--inventory-batch-max=1",
            "--kafka-consumer-queue=8",
            "--kafka-session-timeout-ms=6000",
            "--kafka-max-poll-interval-ms=6000",
        ],
    )
    .await;
    let first = api.place_order_id(&alice, &[("VASE", 1)]).await;
    api.wait_for_status(&alice, &first, "CONFIRMED").await;
    let ops = consumers.ops_addr.expect("the operator endpoints");
    let group = format!("oms-{}-inventory", deployment.suffix);
    let assigned = rebalances(ops, &group).await;
    assert_eq!(fetching_paused(ops, "inventory").await, Some(0));

    let stall = lock_the_inbox(&api).await;
    let mut placed = Vec::new();
    for _ in 0..20 {
        placed.push(api.place_order_id(&alice, &[("VASE", 1)]).await);
    }
    wait_for_fetching_paused(ops, "inventory", 1).await;
    stall.rollback().await.unwrap();

    for id in &placed {
        api.wait_for_status(&alice, id, "CONFIRMED").await;
    }
    wait_for_fetching_paused(ops, "inventory", 0).await;
    assert_eq!(rebalances(ops, &group).await, assigned, "no rebalance");
    assert_eq!(api.stock_of("VASE").await, 100 - 21);
    assert_eq!(api.history_lengths().await, vec![2; 21]);
    api.assert_invariants_hold().await;
    consumers.stop().await;
    api.stop_and_drop_database().await;
}

/// The inventory partitions this instance reports lag for.
async fn lag_partitions(ops: std::net::SocketAddr, topic: &str) -> Vec<String> {
    let page = crate::helpers::metrics_at(ops).await;
    let prefix = "oms_consumer_lag_messages{partition=\"";
    let mut partitions: Vec<String> = page
        .lines()
        .filter(|line| line.contains(&format!("topic=\"{topic}\"")))
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|rest| rest.split('"').next().map(str::to_owned))
        .collect();
    partitions.sort();
    partitions
}

#[tokio::test]
async fn when_a_second_consumer_takes_a_partition_its_lag_is_reported_by_one_member_only() {
    let deployment = Deployment::new();
    let api = TestApp::spawn_in(deployment.clone(), &["--components=api"]).await;
    api.stock("CUP", 100).await;
    let alice = api.customer("alice");
    let topic = format!("inventory-{}", deployment.suffix);
    let first = crate::helpers::start_instance(
        &deployment,
        &["--components=consumers", "--kafka-session-timeout-ms=6000"],
    )
    .await;
    let first_ops = first.ops_addr.expect("the operator endpoints");
    // Orders until both partitions (keyed by order id) hold some, so each has a committed offset
    // and a lag: a fixed six all landed on one partition one run in 32.
    let mut placed = Vec::new();
    while placed.len() < 6 || messages_per_partition(&topic).await.contains(&0) {
        assert!(
            placed.len() < 50,
            "50 orders, and a partition still holds none"
        );
        placed.push(api.place_order_id(&alice, &[("CUP", 1)]).await);
    }
    for id in &placed {
        api.wait_for_status(&alice, id, "CONFIRMED").await;
    }
    eventually(Duration::from_secs(30), || async {
        let reported = lag_partitions(first_ops, &topic).await;
        (reported == ["0", "1"])
            .then_some(())
            .ok_or(format!("the first member reports lag for {reported:?}"))
    })
    .await;

    let second = crate::helpers::start_instance(
        &deployment,
        &["--components=consumers", "--kafka-session-timeout-ms=6000"],
    )
    .await;
    let second_ops = second.ops_addr.expect("the operator endpoints");
    // Each partition's lag from exactly one member, once the second has taken its share.
    eventually(Duration::from_secs(60), || async {
        let (mine, theirs) = (
            lag_partitions(first_ops, &topic).await,
            lag_partitions(second_ops, &topic).await,
        );
        let mut all = [mine.clone(), theirs.clone()].concat();
        all.sort();
        (!theirs.is_empty() && all == ["0", "1"])
            .then_some(())
            .ok_or(format!(
                "lag reported by the first member for {mine:?}, by the second for {theirs:?}"
            ))
    })
    .await;
    second.stop().await;
    first.stop().await;
    api.stop_and_drop_database().await;
}
