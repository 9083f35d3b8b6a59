//! Status changes requested together: while every statement queueing requests is busy, the
//! requests that arrive wait and are then queued by one statement, each as it was asked.
//!
//! The test makes the writers busy for as long as it likes: it holds the outbox in share mode,
//! which lets the relay read it but keeps every insert waiting until the test lets go.

use crate::helpers::{
    read_messages, wait_for_statements_waiting_on_locks, wait_until_outbox_empty, TestApp,
};
use futures_util::future::join_all;
use oms::domain::events::{decode, EventBody};
use oms::domain::status::OrderStatus;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use tokio::sync::watch;

/// Statements queueing requests at once per instance (`service::status_requests`), as the test
/// starts it.
const WRITERS: usize = 2;
/// Requests that arrive while both writers are busy.
const QUEUED: usize = 30;

/// Asks, as the customer who placed it, for the customer's order to be cancelled.
async fn cancel(app: &TestApp, (token, order_id): &(String, String)) -> Value {
    app.update_status(token, order_id, "CANCELLED").await
}

#[tokio::test]
async fn requests_arriving_while_every_writer_is_busy_are_queued_by_one_statement_each_as_asked() {
    // The API alone: no consumer applies the requests, so each order stays PENDING and its
    // owner may cancel it.
    let app = TestApp::spawn_in(
        crate::helpers::Deployment::new(),
        &[
            "--components=api",
            &format!("--status-request-writers={WRITERS}"),
        ],
    )
    .await;
    app.stock("PEN", 1000).await;
    let mut customers = Vec::new();
    for n in 0..WRITERS + QUEUED {
        let token = app.customer(&format!("customer-{n}"));
        let order_id = app.place_order_id(&token, &[("PEN", 1)]).await;
        customers.push((token, order_id));
    }
    wait_until_outbox_empty(&app).await;
    let (holders, queued) = customers.split_at(WRITERS);

    let mut lock = app.pool.begin().await.unwrap();
    // Unchecked: the test's own lock, taken beside oms rather than through it (the note at the top
    // of helpers/mod.rs on the tests' SQL).
    sqlx::query("lock table outbox in share mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    // Holder n asks once `released` passes n, so each takes a writer of its own and waits on
    // the lock (holders arriving together would share one); the queued requests once it passes
    // them all, so they find no writer free.
    let (release, released) = watch::channel(0);
    let after = |step: usize| {
        let mut released = released.clone();
        async move {
            released.wait_for(|passed| *passed > step).await.unwrap();
        }
    };
    let app_ref = &app;
    let held = join_all(holders.iter().enumerate().map(|(n, customer)| {
        let turn = after(n);
        async move {
            turn.await;
            cancel(app_ref, customer).await
        }
    }));
    let waiting = async {
        after(WRITERS).await;
        join_all(queued.iter().map(|customer| cancel(app_ref, customer))).await
    };
    let control = async {
        for writer in 1..=WRITERS {
            release.send(writer).unwrap();
            wait_for_statements_waiting_on_locks(&app.pool, writer as i64).await;
        }
        release.send(WRITERS + 1).unwrap();
        app.wait_for_metric("oms_status_requests_waiting", QUEUED as f64)
            .await;
        lock.rollback().await.unwrap();
    };
    let (held, answers, ()) = tokio::join!(held, waiting, control);

    for answer in held.iter().chain(&answers) {
        assert_eq!(answer["accepted"], true, "{answer}");
        assert_eq!(answer["userErrors"], json!([]), "{answer}");
    }
    // The two holders' statements, then one for all thirty.
    assert_eq!(
        app.metric("oms_status_request_batch_requests_count").await,
        Some(WRITERS as f64 + 1.0)
    );
    assert_eq!(
        app.metric("oms_status_request_batch_requests_sum").await,
        Some((WRITERS + QUEUED) as f64)
    );
    // Every request reached the orders topic, each for the order it was asked for.
    let topic = format!("orders-{}", app.deployment.suffix);
    let messages = read_messages(&topic, WRITERS + QUEUED).await;
    let requested: BTreeSet<String> = messages
        .iter()
        .map(|message| {
            let event = decode(Some(&message.payload)).unwrap();
            assert!(
                matches!(&event.body, EventBody::StatusChangeRequested(request) if request.to == OrderStatus::Cancelled),
                "{event:?}"
            );
            assert_eq!(event.order_id.to_string(), message.key);
            message.key.clone()
        })
        .collect();
    let asked: BTreeSet<String> = customers.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(requested, asked);
    app.stop_and_drop_database().await;
}
