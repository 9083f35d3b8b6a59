//! What a dead letter leaves behind: never an order PENDING for ever, never a request accepted
//! and then silent. The database refuses the effect here through a trigger the test installs
//! (a check-violation, SQLSTATE 23514, as a constraint would raise), so the consumer sets the
//! event aside as it would any effect the database refuses.

use crate::helpers::{eventually, TestApp};
use oms::service::applying::{SET_ASIDE_REFUSAL, SET_ASIDE_REJECTION};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Makes the database refuse every change of an order to `status`.
async fn refuse_changes_to(app: &TestApp, status: &str) {
    sqlx::raw_sql(&format!(
        "create function refuse_change() returns trigger language plpgsql as $$
         begin
             if new.status = '{status}' then
                 raise exception 'changes to {status} refused by the test' using errcode = '23514';
             end if;
             return new;
         end $$;
         create trigger refuse_change before update on orders
             for each row execute function refuse_change();"
    ))
    .execute(&app.pool)
    .await
    .unwrap();
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

#[tokio::test]
async fn an_order_whose_placement_is_set_aside_is_rejected_saying_so_and_its_subscriber_hears_it() {
    let app = TestApp::spawn().await;
    app.stock("HORN", 5).await;
    refuse_changes_to(&app, "CONFIRMED").await;
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("HORN", 2)]).await;

    let history = app.wait_for_status(&alice, &order_id, "REJECTED").await;
    let rejected = history.last().unwrap();
    assert_eq!(rejected["reason"], SET_ASIDE_REJECTION, "{history:?}");
    assert_eq!(app.stock_of("HORN").await, 5);
    let dead = format!(
        "oms_dead_letters_total{{topic=\"inventory-{}\"}} 1",
        app.deployment.suffix
    );
    let page = metrics(&app).await;
    assert!(page.contains(&dead), "{page}");
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

/// A confirmed order of alice's (one HORN of five) whose cancellation the database refuses:
/// returns her token, the order and the change her subscription received for the request.
async fn set_aside_a_cancellation(app: &TestApp) -> (String, String, Value) {
    app.stock("HORN", 5).await;
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("HORN", 1)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;
    refuse_changes_to(app, "CANCELLED").await;

    let mut subscription = app.follow_order(&alice, &order_id).await;
    let asked = app.update_status(&alice, &order_id, "CANCELLED").await;
    assert_eq!(asked["accepted"], true, "{asked}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let change = tokio::time::timeout_at(deadline.into(), subscription.next_data())
            .await
            .expect("the refusal arrives");
        if change["outcome"] == "REFUSED" {
            break change;
        }
    };
    (alice, order_id, refused)
}

#[tokio::test]
async fn a_status_request_set_aside_is_announced_to_its_requester_as_refused() {
    let app = TestApp::spawn().await;
    let (_, _, refused) = set_aside_a_cancellation(&app).await;
    assert_eq!(refused["reason"], SET_ASIDE_REFUSAL, "{refused}");
    assert_eq!(refused["requestedStatus"], "CANCELLED", "{refused}");
    assert_eq!(refused["to"], "CONFIRMED", "{refused}");
    // The order and its stock are as they were.
    assert_eq!(app.stock_of("HORN").await, 4);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn how_long_the_oldest_pending_order_has_waited_is_in_the_metrics() {
    // Without consumers, a placed order waits for its check.
    let app = TestApp::spawn_in(crate::helpers::Deployment::new(), &["--components=api"]).await;
    app.stock("HORN", 5).await;
    let page = metrics(&app).await;
    assert!(
        page.contains("oms_orders_pending_oldest_seconds 0\n"),
        "{page}"
    );
    app.place_order_id(&app.customer("alice"), &[("HORN", 1)])
        .await;

    eventually(Duration::from_secs(15), || async {
        let page = metrics(&app).await;
        let waited: f64 = page
            .lines()
            .find_map(|line| line.strip_prefix("oms_orders_pending_oldest_seconds "))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0);
        if waited > 0.0 {
            Ok(())
        } else {
            Err(page)
        }
    })
    .await;
    app.stop_and_drop_database().await;
}

/// Runs `oms dlq <args>` against the deployment's topics.
async fn run_oms_dlq(app: &TestApp, args: &[&str]) -> std::process::Output {
    let kafka_flags: Vec<String> = crate::helpers::serve_flags(&app.deployment, &[])
        .into_iter()
        .filter(|flag| flag.starts_with("--kafka-"))
        .collect();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .arg("dlq")
        .args(args)
        .args(kafka_flags)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("oms runs")
}

/// Runs `oms dlq <args>`, which must succeed; returns its stdout lines.
async fn oms_dlq(app: &TestApp, args: &[&str]) -> Vec<String> {
    let output = run_oms_dlq(app, args).await;
    assert!(output.status.success(), "oms dlq {args:?}: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_operator_lists_a_set_aside_request_and_replays_it_once_the_cause_is_fixed() {
    let app = TestApp::spawn().await;
    let (alice, order_id, _) = set_aside_a_cancellation(&app).await;

    let listed = oms_dlq(&app, &["list", "--topic", "orders", "--json"]).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let letter: Value = serde_json::from_str(&listed[0]).unwrap();
    let s = &app.deployment.suffix;
    assert_eq!(letter["event_type"], "StatusChangeRequested", "{letter}");
    assert_eq!(letter["consumer"], "orders", "{letter}");
    assert_eq!(letter["original_topic"], format!("orders-{s}"), "{letter}");
    assert_eq!(letter["key"], order_id.as_str(), "{letter}");
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("changes to CANCELLED refused by the test"),
        "{letter}"
    );

    // The cause is fixed; the request is sent back and applied: stock restored once.
    sqlx::raw_sql("drop trigger refuse_change on orders")
        .execute(&app.pool)
        .await
        .unwrap();
    let event_id = letter["event_id"].as_str().unwrap();
    oms_dlq(
        &app,
        &["replay", "--topic", "orders", "--event-id", event_id],
    )
    .await;
    app.wait_for_status(&alice, &order_id, "CANCELLED").await;
    assert_eq!(app.stock_of("HORN").await, 5);

    // Replayed again, it changes nothing: the consumer applied that event already.
    let history = app.history_lengths().await;
    oms_dlq(&app, &["replay", "--topic", "orders", "--all"]).await;
    crate::helpers::wait_until_caught_up(&format!("oms-{s}-orders"), &format!("orders-{s}")).await;
    assert_eq!(app.history_lengths().await, history);
    assert_eq!(app.stock_of("HORN").await, 5);
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn replaying_without_saying_which_dead_letters_is_refused() {
    let app = TestApp::spawn().await;
    let output = run_oms_dlq(&app, &["replay", "--topic", "inventory"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("say which dead letters to replay"),
        "{stderr}"
    );
    app.stop_and_drop_database().await;
}
