//! Orders placed together: while every statement placing orders is busy, the orders that arrive
//! wait and are then placed by one statement; an order that fails in such a batch fails alone.
//!
//! Each test makes the writers busy for as long as it likes: placing an order takes a key-share
//! lock on its items' rows (the lines' foreign key), so orders for an item the test holds
//! `for update` wait in their statements until the test lets go.

use crate::helpers::{wait_for_statements_waiting_on_locks, TestApp};
use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::sync::watch;

/// Statements placing orders at once per instance (`service::placer`), as the tests start it.
const WRITERS: usize = 4;

/// An order to place while the writers are busy: the customer's token, its lines (SKU,
/// quantity) and its idempotency key.
type Queued<'a> = (String, Vec<(&'a str, i32)>, Option<&'a str>);

/// Places `queued` (token, lines, idempotency key) while [`WRITERS`] orders for `held_sku` keep
/// every writer waiting on the test's lock, so that all of `queued` wait for a writer together;
/// then lets go. Returns the payloads of `queued`, in their order.
async fn place_while_the_writers_are_busy(
    app: &TestApp,
    held_sku: &str,
    queued: &[Queued<'_>],
) -> Vec<Value> {
    let mut lock = app.pool.begin().await.unwrap();
    // Unchecked: the test's own lock, taken beside oms rather than through it (the note at the top
    // of helpers/mod.rs on the tests' SQL).
    sqlx::query("select 1 from inventory_items where sku = $1 for update")
        .bind(held_sku)
        .execute(&mut *lock)
        .await
        .unwrap();
    let holders: Vec<String> = (0..WRITERS)
        .map(|n| app.customer(&format!("holder-{n}")))
        .collect();
    // Holder n places its order once `released` passes n, so each gets a writer of its own
    // (holders arriving together would share one); the queued orders once it passes them all.
    let (release, released) = watch::channel(0);
    let held_line = [(held_sku, 1)];
    let after = |step: usize| {
        let mut released = released.clone();
        async move {
            released.wait_for(|passed| *passed > step).await.unwrap();
        }
    };

    let blocked = join_all(holders.iter().enumerate().map(|(n, token)| {
        let turn = after(n);
        async move {
            turn.await;
            app.place_order(token, &held_line, None).await
        }
    }));
    let waiting = async {
        after(WRITERS).await;
        join_all(
            queued
                .iter()
                .map(|(token, lines, key)| app.place_order(token, lines, *key)),
        )
        .await
    };
    let control = async {
        for writer in 1..=WRITERS {
            release.send(writer).unwrap();
            wait_for_statements_waiting_on_locks(&app.pool, writer as i64).await;
        }
        release.send(WRITERS + 1).unwrap();
        app.wait_for_metric("oms_placements_waiting", queued.len() as f64)
            .await;
        lock.rollback().await.unwrap();
    };
    let (blocked, waiting, ()) = tokio::join!(blocked, waiting, control);
    for payload in blocked {
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
    }
    waiting
}

#[tokio::test]
async fn orders_arriving_while_every_writer_is_busy_are_placed_by_one_statement_each_as_asked() {
    let app = TestApp::spawn_in(
        crate::helpers::Deployment::new(),
        &["--components=api", &format!("--place-writers={WRITERS}")],
    )
    .await;
    app.stock("HELD", 100).await;
    app.stock("PEN", 1000).await;
    app.stock("INK", 1000).await;
    let queued: Vec<Queued> = (1..=40)
        .map(|n| {
            let lines = if n % 2 == 0 {
                vec![("PEN", n)]
            } else {
                vec![("INK", n), ("PEN", 1)]
            };
            (app.customer(&format!("customer-{n}")), lines, None)
        })
        .collect();

    let placed = place_while_the_writers_are_busy(&app, "HELD", &queued).await;

    for (n, payload) in (1..=40).zip(&placed) {
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
        let order = &payload["order"];
        assert_eq!(order["userId"], format!("customer-{n}"));
        assert_eq!(order["status"], "PENDING");
        let lines = if n % 2 == 0 {
            json!([{ "sku": "PEN", "quantity": n }])
        } else {
            json!([{ "sku": "INK", "quantity": n }, { "sku": "PEN", "quantity": 1 }])
        };
        assert_eq!(order["lines"], lines, "customer-{n}'s order");
    }
    // The four holders' statements, then one for all forty.
    assert_eq!(app.metric("oms_place_batch_orders_count").await, Some(5.0));
    assert_eq!(app.metric("oms_place_batch_orders_sum").await, Some(44.0));
    assert_eq!(app.order_count().await, 44);
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn an_order_that_fails_in_a_batch_is_refused_alone_and_its_neighbours_are_placed() {
    let app = TestApp::spawn_in(
        crate::helpers::Deployment::new(),
        &["--components=api", &format!("--place-writers={WRITERS}")],
    )
    .await;
    app.stock("HELD", 100).await;
    app.stock("PEN", 1000).await;
    app.stock("OLD", 10).await;
    let staff = app.staff();
    let retired = app
        .query(
            &staff,
            "mutation { retireInventoryItem(input: {sku: \"OLD\"}) { userErrors { code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        retired["retireInventoryItem"]["userErrors"],
        json!([]),
        "{retired}"
    );
    let mut queued: Vec<Queued> = (1..=20)
        .map(|n| (app.customer(&format!("good-{n}")), vec![("PEN", n)], None))
        .collect();
    queued.insert(3, (app.customer("unknown"), vec![("NOPE", 1)], None));
    queued.insert(11, (app.customer("retired"), vec![("OLD", 1)], None));
    // The same key twice in one batch (a client retrying at once): one order, told to both.
    let twice = app.customer("twice");
    queued.insert(7, (twice.clone(), vec![("PEN", 5)], Some("key-1")));
    queued.push((twice, vec![("PEN", 5)], Some("key-1")));

    let answers = place_while_the_writers_are_busy(&app, "HELD", &queued).await;

    let codes = |payload: &Value| -> Vec<String> {
        payload["userErrors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|error| error["code"].as_str().unwrap().to_owned())
            .collect()
    };
    let position = |sku: &str, key: Option<&str>| {
        queued
            .iter()
            .position(|(_, lines, k)| lines[0].0 == sku && *k == key)
            .unwrap()
    };
    let (unknown, retired, twice_first, twice_second) = (
        position("NOPE", None),
        position("OLD", None),
        position("PEN", Some("key-1")),
        queued.len() - 1,
    );
    assert_eq!(
        codes(&answers[unknown]),
        ["UNKNOWN_SKU"],
        "{}",
        answers[unknown]
    );
    assert_eq!(answers[unknown]["order"], Value::Null);
    assert_eq!(
        codes(&answers[retired]),
        ["ITEM_RETIRED"],
        "{}",
        answers[retired]
    );
    assert_eq!(answers[retired]["order"], Value::Null);
    assert!(
        codes(&answers[twice_first]).is_empty(),
        "{}",
        answers[twice_first]
    );
    assert_eq!(
        answers[twice_first]["order"]["id"], answers[twice_second]["order"]["id"],
        "both requests with one key get one order"
    );
    let good: Vec<&Value> = answers
        .iter()
        .enumerate()
        .filter(|(index, _)| ![unknown, retired, twice_first, twice_second].contains(index))
        .map(|(_, payload)| payload)
        .collect();
    assert_eq!(good.len(), 20);
    for (n, payload) in (1..=20).zip(good) {
        assert_eq!(payload["userErrors"], json!([]), "{payload}");
        assert_eq!(payload["order"]["userId"], format!("good-{n}"));
        assert_eq!(
            payload["order"]["lines"],
            json!([{ "sku": "PEN", "quantity": n }])
        );
    }
    // Failed statements were retried in smaller parts.
    let statements = app.metric("oms_place_batch_orders_count").await.unwrap();
    assert!(statements > 5.0, "{statements} statements");
    // The holders' four, the twenty good ones and the one for the key twice.
    assert_eq!(app.order_count().await, 4 + 20 + 1);
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}
