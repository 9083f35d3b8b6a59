//! Fuzzing the two doors into oms: random GraphQL documents (mutated valid ones, random text, and
//! shapes built to be costly) and variables over HTTP, and random Kafka payloads on the consumed
//! topics. Nothing may panic, no request may take longer than a bound, every error must carry a
//! code, no response may be a bare 500, and the consumers must keep working afterwards.

use crate::helpers::{brokers, TestApp};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::time::Duration;

/// Valid documents to mutate, so the fuzz reaches past the parser into validation and resolvers.
const TEMPLATES: &[&str] = &[
    "{ orders(first: 5) { edges { cursor node { id status lines { sku quantity item { name } } history { from to changedBy { role } } } } pageInfo { hasNextPage } } }",
    "query($id: ID!) { order(id: $id) { id status version rejectionReason } }",
    "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { order { id } userErrors { field code message } } }",
    "mutation($input: UpdateOrderStatusInput!) { updateOrderStatus(input: $input) { accepted userErrors { code } } }",
    "mutation($input: UpsertInventoryItemInput!) { upsertInventoryItem(input: $input) { item { sku } userErrors { code } } }",
    "{ inventoryItems(first: 3, after: \"A\") { edges { node { sku quantity lowStock } } } }",
    "query { __typename inventoryItem(sku: \"X\") { id } }",
];

fn document() -> impl Strategy<Value = String> {
    let mutated = (
        prop::sample::select(TEMPLATES),
        prop::collection::vec((any::<prop::sample::Index>(), ".{0,3}"), 0..6),
        prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    )
        .prop_map(|(template, inserts, deletes)| {
            let mut chars: Vec<char> = template.chars().collect();
            for index in deletes {
                if !chars.is_empty() {
                    chars.remove(index.index(chars.len()));
                }
            }
            for (index, text) in inserts {
                let at = index.index(chars.len() + 1);
                for (offset, c) in text.chars().enumerate() {
                    chars.insert(at + offset, c);
                }
            }
            chars.into_iter().collect()
        });
    prop_oneof![4 => mutated, 1 => ".{0,200}"]
}

/// Documents shaped to cost far more than their size: fragments that fan out (and may cycle),
/// deep nesting, wide aliases, many operations, many directives.
fn hostile_document() -> impl Strategy<Value = String> {
    let fan_out = (1usize..60, 2usize..5, any::<bool>()).prop_map(|(levels, fan, cycle)| {
        let mut query = String::from("query { ...F0 }\n");
        for i in 0..levels {
            let spreads = format!("...F{} ", i + 1).repeat(fan);
            query.push_str(&format!("fragment F{i} on Query {{ {spreads}}}\n"));
        }
        let last = if cycle { "...F0" } else { "__typename" };
        query.push_str(&format!("fragment F{levels} on Query {{ {last} }}\n"));
        query
    });
    let nesting = (1usize..3_000, prop::sample::select(vec!["{ a ", "[", "("]))
        .prop_map(|(depth, open)| format!("{{ a(x: {}) }}", open.repeat(depth)));
    let aliases = (1usize..6_000)
        .prop_map(|n| format!("{{ {} }}", "x: orders { edges { cursor } } ".repeat(n)));
    let operations = (1usize..2_000).prop_map(|n| {
        (0..n)
            .map(|i| format!("query Q{i} {{ __typename }} "))
            .collect()
    });
    let directives = (1usize..2_000)
        .prop_map(|n| format!("{{ __typename {} }}", "@include(if: true) ".repeat(n)));
    prop_oneof![fan_out, nesting, aliases, operations, directives]
}

/// No request may take longer than this: a hang detector with room for a loaded machine, far
/// below what the hostile documents took before the guard (seconds to days).
const REQUEST_BOUND: Duration = Duration::from_secs(5);

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from("01a21288-6894-77ef-bd43-bc111fdf9312")),
        Just(Value::from("CANCELLED")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "id",
                    "input",
                    "items",
                    "sku",
                    "quantity",
                    "orderId",
                    "status",
                    "reason",
                    "name",
                    "idempotencyKey",
                    "x"
                ]),
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(
                map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

/// POSTs and insists on a JSON body, whatever the status.
async fn post_raw(
    app: &TestApp,
    token: Option<&str>,
    query: &str,
    variables: &Value,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/graphql", app.addr))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!("status {status}, not JSON: {text:?} for {query:?} {variables}")
    });
    (status, body)
}

#[tokio::test]
async fn random_graphql_documents_and_variables_never_crash_and_always_get_a_coded_answer() {
    // The rate limits are not what is fuzzed here.
    let app = TestApp::spawn_in(
        crate::helpers::Deployment::new(),
        &[
            "--anonymous-request-burst=1000",
            "--request-burst=1000",
            "--mutation-burst=1000",
        ],
    )
    .await;
    app.stock("FUZZ-1", 1_000).await;
    let tokens = [None, Some(app.customer("alice")), Some(app.staff())];
    let mut runner = TestRunner::deterministic();
    let strategy = (
        prop_oneof![4 => document(), 1 => hostile_document()],
        json_value(),
        0usize..3,
    );
    for case in 0..500 {
        let (query, variables, who) = strategy.new_tree(&mut runner).unwrap().current();
        let variables = if case % 3 == 0 { json!({}) } else { variables };
        let (status, body) = tokio::time::timeout(
            REQUEST_BOUND,
            post_raw(&app, tokens[who].as_deref(), &query, &variables),
        )
        .await
        .unwrap_or_else(|_| panic!("no answer within {REQUEST_BOUND:?} to {query:.300}"));
        assert!(
            matches!(status, 200 | 400 | 401 | 405 | 413),
            "status {status} for {query:?} {variables}: {body}"
        );
        if let Some(errors) = body.get("errors").and_then(Value::as_array) {
            for error in errors {
                assert!(
                    error["extensions"]["code"].is_string(),
                    "an error without a code for {query:?} {variables}: {body}"
                );
                let message = error["message"].as_str().unwrap_or_default().to_lowercase();
                for internal in ["sqlx", "postgres", "panicked", ".rs:", "kafka"] {
                    assert!(!message.contains(internal), "{internal} in {message}");
                }
            }
        } else {
            assert!(
                body.get("data").is_some(),
                "neither data nor errors: {body}"
            );
        }
    }
    // Still serving, and nothing stored is broken.
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn random_kafka_payloads_never_stop_the_consumers() {
    let app = TestApp::spawn().await;
    app.stock("FUZZ-2", 10).await;
    let alice = app.customer("alice");
    let placed_before = app.place_order_id(&alice, &[("FUZZ-2", 1)]).await;
    app.wait_for_status(&alice, &placed_before, "CONFIRMED")
        .await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let mut runner = TestRunner::deterministic();
    // Envelopes naming the real order, with random data: they decode only sometimes.
    let order = placed_before.clone();
    let event_like = (json_value(), any::<u128>()).prop_map(move |(data, id)| {
        json!({"eventId": uuid::Uuid::from_u128(id), "schemaVersion": 1,
               "orderId": order, "version": 1,
               "occurredAt": "2026-01-01T00:00:00Z", "type": "StatusChangeRequested", "data": data})
        .to_string()
        .into_bytes()
    });
    // Well-formed requests for the real order, from random people for random statuses: they
    // reach the apply logic (permissions, the status machine, stock restored on cancel).
    let order = placed_before.clone();
    let statuses = [
        "PENDING",
        "CONFIRMED",
        "REJECTED",
        "RECEIVED",
        "OUT_FOR_DELIVERY",
        "DELIVERED",
        "CANCELLED",
    ];
    let request_like = (
        0..statuses.len(),
        prop_oneof![Just("alice"), Just("mallory"), Just("staff-1")],
        prop_oneof![Just("customer"), Just("staff")],
        any::<u128>(),
        proptest::option::of("\\PC{0,40}"),
    )
        .prop_map(move |(status, user, role, id, reason)| {
            json!({"eventId": uuid::Uuid::from_u128(id), "schemaVersion": 1,
                   "orderId": order, "version": 1, "occurredAt": "2026-01-01T00:00:00Z",
                   "type": "StatusChangeRequested",
                   "data": {"to": statuses[status], "reason": reason,
                            "requestedBy": {"userId": user, "role": role}}})
            .to_string()
            .into_bytes()
        });
    let payload = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        event_like,
        request_like,
    ];
    let s = &app.deployment.suffix;
    for (i, topic) in [format!("inventory-{s}"), format!("orders-{s}")]
        .iter()
        .cycle()
        .take(60)
        .enumerate()
    {
        let bytes = payload.new_tree(&mut runner).unwrap().current();
        let key = format!("fuzz-{i}");
        producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&bytes),
                Duration::from_secs(5),
            )
            .await
            .expect("the broker takes the payload");
    }

    // Both consumers carry on: an order behind the noise is confirmed, then cancelled.
    let order_id = app.place_order_id(&alice, &[("FUZZ-2", 2)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;
    app.update_status(&alice, &order_id, "CANCELLED").await;
    app.wait_for_status(&alice, &order_id, "CANCELLED").await;
    let s = &app.deployment.suffix;
    crate::helpers::wait_until_caught_up(&format!("oms-{s}-orders"), &format!("orders-{s}")).await;
    // The first order went wherever the well-formed requests took it: its stock is held only
    // while it is deducted, and the requests applied are those the status machine allows.
    let (deducted, changes): (bool, i64) = sqlx::query_as(
        "select stock_deducted, (version - 2)::bigint from orders where id = $1::uuid",
    )
    .bind(&placed_before)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(app.stock_of("FUZZ-2").await, if deducted { 9 } else { 10 });
    assert!(
        changes > 0,
        "no fuzzed request reached the apply logic and changed the order"
    );
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}
