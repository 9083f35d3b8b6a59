//! Delivery guarantees: redelivery is harmless, poison messages are set aside, nothing is skipped.

use crate::helpers::{start_instance, Deployment, TestApp};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::time::Duration;

use crate::helpers::{brokers, read_messages, wait_until_caught_up};

/// Everything a replay could disturb: orders, history, stock, ledger, inbox.
async fn state(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar(
        "select format('order %s %s v%s deducted=%s', id, status, version, stock_deducted) from orders
         union all select format('item %s %s', sku, quantity) from inventory_items
         union all select format('history %s', count(*)) from order_status_history
         union all select format('ledger %s', count(*)) from stock_movements
         order by 1",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn replaying_the_consumed_topics_from_the_start_changes_nothing() {
    let deployment = Deployment::new();
    let app = TestApp::spawn_in(deployment.clone(), &[]).await;
    app.stock("GEAR", 5).await;
    let alice = app.customer("alice");
    // One at a time: orders of different keys may be checked in any order, and these compete
    // for the same five units.
    let confirmed = app.place_order_id(&alice, &[("GEAR", 2)]).await;
    app.wait_for_status(&alice, &confirmed, "CONFIRMED").await;
    let cancelled = app.place_order_id(&alice, &[("GEAR", 2)]).await;
    app.wait_for_status(&alice, &cancelled, "CONFIRMED").await;
    let rejected = app.place_order_id(&alice, &[("GEAR", 4)]).await;
    app.wait_for_status(&alice, &rejected, "REJECTED").await;
    app.update_status(&alice, &cancelled, "CANCELLED").await;
    app.wait_for_status(&alice, &cancelled, "CANCELLED").await;
    let before = state(&app).await;

    // New consumer groups read both topics again from offset 0.
    let replay_prefix = format!("replay-{}", deployment.suffix);
    let replay = start_instance(
        &deployment,
        &[
            "--components=consumers",
            &format!("--kafka-group-prefix={replay_prefix}"),
        ],
    )
    .await;
    let s = &deployment.suffix;
    wait_until_caught_up(
        &format!("{replay_prefix}-inventory"),
        &format!("inventory-{s}"),
    )
    .await;
    wait_until_caught_up(&format!("{replay_prefix}-orders"), &format!("orders-{s}")).await;

    assert_eq!(state(&app).await, before);
    assert_eq!(app.stock_of("GEAR").await, 3);
    app.assert_invariants_hold().await;
    replay.stop().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_consumer_carries_on() {
    let app = TestApp::spawn().await;
    app.stock("NUT", 5).await;
    let s = &app.deployment.suffix;
    let topic = format!("inventory-{s}");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let unknown_order = uuid::Uuid::now_v7();
    let poison: [(&str, String); 4] = [
        ("not JSON", "{{{ definitely not json".to_owned()),
        (
            "unknown type",
            format!(
                r#"{{"eventId":"{}","schemaVersion":1,"orderId":"{unknown_order}","version":1,"occurredAt":"2026-01-01T00:00:00Z","type":"OrderTeleported","data":{{}}}}"#,
                uuid::Uuid::now_v7()
            ),
        ),
        (
            "unknown order",
            format!(
                r#"{{"eventId":"{}","schemaVersion":1,"orderId":"{unknown_order}","version":1,"occurredAt":"2026-01-01T00:00:00Z","type":"OrderPlaced","data":{{"userId":"x","lines":[]}}}}"#,
                uuid::Uuid::now_v7()
            ),
        ),
        (
            "from the future",
            r#"{"schemaVersion":99,"type":"OrderPlaced"}"#.to_owned(),
        ),
    ];
    for (key, payload) in &poison {
        producer
            .send(
                FutureRecord::to(&topic).key(*key).payload(payload),
                Duration::from_secs(5),
            )
            .await
            .expect("the broker takes the poison");
    }

    // The consumer carries on: a real order behind the poison is confirmed.
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("NUT", 1)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;

    let dead_letters = read_all(&format!("{topic}.dlq"), poison.len()).await;
    for (key, _) in &poison {
        let headers = dead_letters
            .get(*key)
            .unwrap_or_else(|| panic!("{key} was not dead-lettered: {dead_letters:?}"));
        assert_eq!(headers["x-original-topic"], topic);
        assert_eq!(headers["x-dlq-consumer"], "inventory");
        assert!(!headers["x-dlq-reason"].is_empty());
        assert!(headers.contains_key("x-original-offset"));
    }
    assert!(dead_letters["from the future"]["x-dlq-reason"].contains("99"));
    assert!(dead_letters["unknown order"]["x-dlq-reason"].contains("does not exist"));
    app.stop_and_drop_database().await;
}

/// Reads `count` messages of `topic` from the start; returns each one's headers by key.
async fn read_all(topic: &str, count: usize) -> HashMap<String, HashMap<String, String>> {
    read_messages(topic, count)
        .await
        .into_iter()
        .map(|message| (message.key, message.headers))
        .collect()
}

#[tokio::test]
async fn with_two_instances_each_orders_status_events_reach_kafka_in_version_order() {
    let deployment = Deployment::new();
    let first = TestApp::spawn_in(deployment.clone(), &[]).await;
    let second = TestApp::spawn_in(deployment.clone(), &[]).await;
    first.stock("CLOCK", 100).await;
    let staff = first.staff();

    // Each order's steps alternate between the instances, all orders at once, and each step
    // waits only for the previous one to be stored, not published: one order's events pile up
    // in the outbox while both instances' relays run, so only the relay lock keeps them in
    // order on the topic.
    let lifecycles = (0..20).map(|i| {
        let (a, b) = if i % 2 == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        let customer = a.customer(&format!("c{i}"));
        let staff = staff.clone();
        async move {
            let id = a.place_order_id(&customer, &[("CLOCK", 1)]).await;
            for (instance, token, status) in [
                (b, &staff, "RECEIVED"),
                (a, &staff, "OUT_FOR_DELIVERY"),
                (b, &staff, "DELIVERED"),
            ] {
                let from = match status {
                    "RECEIVED" => "CONFIRMED",
                    "OUT_FOR_DELIVERY" => "RECEIVED",
                    _ => "OUT_FOR_DELIVERY",
                };
                stored_status(instance, &customer, &id, from).await;
                let asked = instance.update_status(token, &id, status).await;
                assert_eq!(asked["accepted"], true, "{status}: {asked}");
            }
            stored_status(a, &customer, &id, "DELIVERED").await;
            id
        }
    });
    let ids = futures_util::future::join_all(lifecycles).await;

    let topic = format!("order-status-{}", deployment.suffix);
    let events = read_payloads(&topic, ids.len() * 5).await;
    let mut versions: HashMap<String, Vec<i64>> = HashMap::new();
    for event in &events {
        if event["type"] == "OrderStatusChanged" {
            let order = event["orderId"].as_str().unwrap().to_owned();
            versions
                .entry(order)
                .or_default()
                .push(event["version"].as_i64().unwrap());
        }
    }
    for id in &ids {
        let mut seen = versions[id].clone();
        seen.dedup(); // at-least-once: a redelivered event may repeat, but never go back
        assert_eq!(seen, [1, 2, 3, 4, 5], "order {id}: {:?}", versions[id]);
    }
    second.stop().await;
    first.stop_and_drop_database().await;
}

/// Waits until `order_id` is stored with `status` (read through the API, which reads the
/// database: committed, whether or not its event was published yet).
async fn stored_status(app: &TestApp, token: &str, order_id: &str, status: &str) {
    crate::helpers::eventually(Duration::from_secs(30), || async {
        let data = app
            .query(
                token,
                "query($id: ID!) { order(id: $id) { status } }",
                serde_json::json!({ "id": order_id }),
            )
            .await;
        if data["order"]["status"] == status {
            Ok(())
        } else {
            Err(format!("order {order_id} never reached {status}: {data}"))
        }
    })
    .await
}

/// Reads at least `count` JSON payloads of `topic` from the start, in partition order.
async fn read_payloads(topic: &str, count: usize) -> Vec<serde_json::Value> {
    let messages = read_messages(topic, count).await;
    assert!(
        messages.len() >= count,
        "read {} of {count}",
        messages.len()
    );
    messages
        .iter()
        .map(|message| serde_json::from_slice(&message.payload).unwrap())
        .collect()
}
