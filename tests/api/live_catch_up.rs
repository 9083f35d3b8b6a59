//! A customer's all-orders subscription that falls behind its buffer catches up from the
//! database and carries on, instead of ending. Driven through oms's GraphQL schema with its
//! live feed (an in-process tokio channel, fed here the way the live reader feeds it) and a
//! real database.

use crate::helpers::{eventually, serve_args, Deployment};
use async_graphql::{Request, Response};
use futures_util::{Stream, StreamExt};
use oms::auth::{Role, Viewer};
use oms::domain::events::{Event, EventBody, OrderStatusChanged};
use oms::domain::order::RequestedLine;
use oms::domain::status::OrderStatus;
use oms::live::LiveFeeds;
use oms::metrics::Metrics;
use oms::outbox::OutboxWaker;
use oms::service::inventory::{upsert_item, ItemInput};
use oms::service::placer::Placer;
use oms::service::placing::place_order;
use oms::service::status_requests::StatusRequests;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

fn customer(user_id: &str) -> Viewer {
    Viewer {
        user_id: user_id.into(),
        role: Role::Customer,
        expires_at: u64::MAX,
        profile: Default::default(),
    }
}

/// The next item of a subscription stream, as JSON (data or errors).
async fn next_response(stream: &mut (impl Stream<Item = Response> + Unpin)) -> Value {
    let response = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the subscription answers")
        .expect("the subscription goes on");
    if response.errors.is_empty() {
        response.data.into_json().unwrap()
    } else {
        json!({ "errors": response.errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>() })
    }
}

fn pending(order_id: Uuid, customer: &str) -> Event {
    Event::new(
        order_id,
        1,
        EventBody::OrderStatusChanged(OrderStatusChanged {
            user_id: customer.into(),
            from: None,
            to: OrderStatus::Pending,
            reason: None,
            changed_by: None,
        }),
    )
}

#[tokio::test]
async fn a_customer_subscription_that_falls_behind_catches_up_from_the_database_and_goes_on() {
    let deployment = Deployment::new();
    let pool = deployment.migrated_db().await;
    let outbox = OutboxWaker::default();
    let item = ItemInput {
        sku: "LAMP".into(),
        name: "Lamp".into(),
        quantity: 100,
        low_stock_threshold: None,
        price: oms::db::inventory::PriceChange::Keep,
    };
    upsert_item(&pool, &outbox, item)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    // Two live events kept per subscriber: the third unread one makes it fall behind.
    let feeds = LiveFeeds::new(2);
    let limits = serve_args(&deployment, &[]).limits;
    let placer = Placer::start_placing(pool.clone(), 1, 1, &oms::metrics::Metrics::new());
    let schema = oms::graphql::schema(
        pool.clone(),
        oms::graphql::Writers {
            placer: placer.clone(),
            status_requests: StatusRequests::start_queueing(
                pool.clone(),
                outbox.clone(),
                1,
                1,
                &Metrics::new(),
            ),
            outbox: outbox.clone(),
        },
        feeds.clone(),
        Metrics::new(),
        limits.clone(),
        std::sync::Arc::new(oms::graphql::rate_limit::RequestRateLimiter::new(&limits)),
    );
    let mut alices_orders = schema.execute_stream(
        Request::new("subscription { orderStatusChanged { orderId version to } }")
            .data(customer("alice")),
    );
    // Poll the subscription until it listens on the feed (it then waits for its first event).
    tokio::select! {
        early = alices_orders.next() => panic!("nothing was published yet: {early:?}"),
        () = eventually(Duration::from_secs(10), || async {
            match feeds.subscriber_count() {
                1 => Ok(()),
                count => Err(format!("{count} subscriptions listen on the feeds, not 1")),
            }
        }) => {}
    }

    let mut placed = Vec::new();
    for _ in 0..3 {
        let line = RequestedLine {
            sku: "LAMP".into(),
            quantity: 1,
        };
        let order = place_order(
            &pool,
            &placer,
            &outbox,
            &customer("alice"),
            vec![line],
            None,
        )
        .await
        .unwrap()
        .into_result()
        .unwrap();
        feeds.status.publish(pending(order.id, "alice"));
        placed.push(order.id.to_string());
    }

    let mut received = Vec::new();
    for _ in 0..3 {
        let response = next_response(&mut alices_orders).await;
        let change = &response["orderStatusChanged"];
        assert_eq!(
            (&change["version"], &change["to"]),
            (&json!(1), &json!("PENDING")),
            "{response}"
        );
        received.push(change["orderId"].as_str().unwrap().to_owned());
    }
    received.sort();
    placed.sort();
    assert_eq!(received, placed);

    // And it carries on live, without repeating what it sent.
    let later = Uuid::now_v7();
    feeds
        .status
        .publish(pending(placed[0].parse().unwrap(), "alice"));
    feeds.status.publish(pending(later, "alice"));
    assert_eq!(
        next_response(&mut alices_orders).await["orderStatusChanged"]["orderId"],
        json!(later.to_string())
    );
    deployment.drop_database(pool).await;
}
