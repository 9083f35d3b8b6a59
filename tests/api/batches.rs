//! Batched inventory checks: several placed orders decided in one transaction, in arrival order,
//! against the stock the ones before them left; and a batch that fails is applied again in
//! halves, so one bad event never holds back its neighbours.

use crate::helpers::{brokers, start_instance, Deployment, TestApp};
use oms::domain::events::{Event, EventBody, OrderPlaced};
use oms::domain::status::OrderStatus;
use oms::outbox::OutboxWaker;
use oms::service::applying::{apply_inventory_checks, Applied, ApplyError};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::time::Duration;
use uuid::Uuid;

/// An app that takes orders but checks none: their placement events wait for the test.
async fn app_without_consumers() -> TestApp {
    TestApp::spawn_in(Deployment::new(), &["--components=api"]).await
}

fn status_of(applied: &Applied) -> Option<OrderStatus> {
    match applied {
        Applied::Changed(order) => Some(order.status),
        _ => None,
    }
}

#[tokio::test]
async fn a_batch_mixing_hot_and_cold_skus_decides_each_order_in_arrival_order_against_what_the_ones_before_left(
) {
    let app = app_without_consumers().await;
    app.stock("HOT", 2).await;
    app.stock("COLD", 10).await;
    let alice = app.customer("alice");
    let mut orders = Vec::new();
    for lines in [
        &[("HOT", 1), ("COLD", 1)][..],
        &[("HOT", 1), ("COLD", 1)],
        &[("HOT", 1), ("COLD", 1)],
        &[("COLD", 2)],
    ] {
        orders.push(app.place_order_id(&alice, lines).await);
    }
    let batch: Vec<(Uuid, Uuid)> = orders
        .iter()
        .map(|id| (Uuid::now_v7(), id.parse().unwrap()))
        .collect();

    let outcomes = apply_inventory_checks(&app.db(), &OutboxWaker::default(), &batch)
        .await
        .unwrap();
    let statuses: Vec<_> = outcomes.iter().map(status_of).collect();
    use OrderStatus::{Confirmed, Rejected};
    // The third order finds no HOT left; the fourth, needing only COLD, still fits.
    assert_eq!(
        statuses,
        [
            Some(Confirmed),
            Some(Confirmed),
            Some(Rejected),
            Some(Confirmed)
        ]
    );
    let Applied::Changed(rejected) = &outcomes[2] else {
        unreachable!()
    };
    assert_eq!(
        rejected.rejection_reason.as_deref(),
        Some("insufficient stock for SKU HOT: requested 1, available 0")
    );
    assert_eq!(app.stock_of("HOT").await, 0);
    assert_eq!(app.stock_of("COLD").await, 6);

    // Delivered again, the whole batch changes nothing.
    let again = apply_inventory_checks(&app.db(), &OutboxWaker::default(), &batch)
        .await
        .unwrap();
    assert!(
        again.iter().all(|outcome| *outcome == Applied::Duplicate),
        "{again:?}"
    );
    assert_eq!(app.stock_of("COLD").await, 6);
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_batch_naming_an_order_that_does_not_exist_applies_nothing_of_itself() {
    let app = app_without_consumers().await;
    app.stock("COLD", 10).await;
    let alice = app.customer("alice");
    let placed: Uuid = app
        .place_order_id(&alice, &[("COLD", 3)])
        .await
        .parse()
        .unwrap();
    let missing = Uuid::now_v7();
    let batch = [(Uuid::now_v7(), placed), (Uuid::now_v7(), missing)];

    let failed = apply_inventory_checks(&app.db(), &OutboxWaker::default(), &batch).await;
    assert!(
        matches!(failed, Err(ApplyError::UnknownOrder(id)) if id == missing),
        "{failed:?}"
    );
    assert_eq!(app.stock_of("COLD").await, 10);
    // Without it, the same event applies (the failed batch did not mark it as done).
    let outcomes = apply_inventory_checks(&app.db(), &OutboxWaker::default(), &batch[..1])
        .await
        .unwrap();
    assert_eq!(status_of(&outcomes[0]), Some(OrderStatus::Confirmed));
    assert_eq!(app.stock_of("COLD").await, 7);
    app.stop_and_drop_database().await;
}

/// The `oms_consumer_batch_events` histogram's count and sum for `topic` in a metrics page.
fn batch_events(metrics: &str, topic: &str) -> (f64, f64) {
    let value = |name: &str| {
        metrics
            .lines()
            .find(|line| line.starts_with(name) && line.contains(&format!("topic=\"{topic}\"")))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("oms_consumer_batch_events_count"),
        value("oms_consumer_batch_events_sum"),
    )
}

#[tokio::test]
async fn a_poisoned_event_inside_a_batch_is_dead_lettered_and_its_neighbours_are_confirmed() {
    let app = app_without_consumers().await;
    app.stock("COLD", 20).await;
    let alice = app.customer("alice");
    let mut orders = Vec::new();
    for _ in 0..4 {
        orders.push(app.place_order_id(&alice, &[("COLD", 1)]).await);
    }
    // Among them on the topic, a well-formed placement of an order that does not exist.
    let s = &app.deployment.suffix;
    let topic = format!("inventory-{s}");
    let ghost = Event::new(
        Uuid::now_v7(),
        1,
        EventBody::OrderPlaced(OrderPlaced {
            user_id: "alice".into(),
            lines: vec![],
        }),
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to(&topic)
                .key(&ghost.order_id.to_string())
                .payload(&serde_json::to_vec(&ghost).unwrap()),
            Duration::from_secs(5),
        )
        .await
        .expect("the broker takes the event");
    for _ in 0..4 {
        orders.push(app.place_order_id(&alice, &[("COLD", 1)]).await);
    }
    // Everything is on the topic before a consumer starts, so it finds a backlog.
    crate::helpers::wait_until_outbox_empty(&app).await;

    let consumers = start_instance(&app.deployment, &["--components=consumers"]).await;
    for order_id in &orders {
        app.wait_for_status(&alice, order_id, "CONFIRMED").await;
    }
    assert_eq!(app.stock_of("COLD").await, 12);
    let ops = consumers.ops_addr.expect("the operator endpoints");
    let metrics = crate::helpers::metrics_at(ops).await;
    let dead = format!("oms_dead_letters_total{{topic=\"{topic}\"}} 1");
    assert!(metrics.contains(&dead), "{metrics}");
    // Nine events in fewer units than nine: some were taken together.
    let (units, events) = batch_events(&metrics, &topic);
    assert_eq!(events, 9.0, "{metrics}");
    assert!(units < events, "{units} units for {events} events");
    consumers.stop().await;
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_batch_of_status_requests_decides_each_as_alone_and_restores_stock_once() {
    use oms::auth::Role;
    use oms::domain::events::{Actor, StatusChangeRequested};
    use oms::service::applying::apply_requested_changes;
    let app = TestApp::spawn().await;
    app.stock("LAMP", 10).await;
    let alice = app.customer("alice");
    let mut orders = Vec::new();
    for _ in 0..3 {
        let id = app.place_order_id(&alice, &[("LAMP", 2)]).await;
        app.wait_for_status(&alice, &id, "CONFIRMED").await;
        orders.push(id.parse::<Uuid>().unwrap());
    }
    assert_eq!(app.stock_of("LAMP").await, 4);
    let asked = |to: OrderStatus, user: &str, role: Role| StatusChangeRequested {
        to,
        reason: None,
        requested_by: Actor {
            user_id: user.to_owned(),
            role,
        },
    };
    let cancel = asked(OrderStatus::Cancelled, "alice", Role::Customer);
    let receive = asked(OrderStatus::Received, "staff-1", Role::Staff);
    let customer_receive = asked(OrderStatus::Received, "alice", Role::Customer);
    let batch = [
        (Uuid::now_v7(), orders[0], &cancel),
        (Uuid::now_v7(), orders[1], &receive),
        (Uuid::now_v7(), orders[2], &customer_receive),
    ];

    let outcomes = apply_requested_changes(&app.db(), &OutboxWaker::default(), &batch)
        .await
        .unwrap();
    assert_eq!(status_of(&outcomes[0]), Some(OrderStatus::Cancelled));
    assert_eq!(status_of(&outcomes[1]), Some(OrderStatus::Received));
    assert!(
        matches!(&outcomes[2], Applied::Refused { message } if message.contains("cancel")),
        "{:?}",
        outcomes[2]
    );
    // The cancelled order's two units came back, once.
    assert_eq!(app.stock_of("LAMP").await, 6);
    let again = apply_requested_changes(&app.db(), &OutboxWaker::default(), &batch)
        .await
        .unwrap();
    assert!(
        again.iter().all(|outcome| *outcome == Applied::Duplicate),
        "{again:?}"
    );
    assert_eq!(app.stock_of("LAMP").await, 6);
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}
