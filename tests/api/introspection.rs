//! Introspection: every standard GraphQL tool can read the schema while introspection is on,
//! introspection costs what the schema's own size allows and no more, and with it off the
//! schema stays hidden, suggestions and type names included.

use crate::helpers::{Deployment, TestApp};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `tests/browser/introspect.mjs` (graphql-js's `getIntrospectionQuery` with every option,
/// then `buildClientSchema`) against the app; returns what it printed.
async fn introspect_with_graphql_js(app: &TestApp, token: Option<&str>) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/graphql").is_dir(),
        "the graphql npm package is missing; run scripts/test, which installs it (npm ci --prefix tests/browser)"
    );
    let mut command = tokio::process::Command::new("node");
    command
        .arg(dir.join("introspect.mjs"))
        .arg(format!("http://{}/graphql", app.addr))
        .current_dir(&dir)
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("OMS_TOKEN", token);
    }
    let output = tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("node finishes")
        .expect("node runs");
    assert!(
        output.status.success(),
        "introspect.mjs failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON line")
}

#[tokio::test]
async fn the_standard_introspection_query_with_every_option_builds_a_client_schema() {
    let app = TestApp::spawn().await;
    for token in [None, Some(app.staff())] {
        let schema = introspect_with_graphql_js(&app, token.as_deref()).await;
        assert_eq!(schema["status"], 200, "{schema}");
        assert_eq!(schema["queryType"], "Query", "{schema}");
        assert_eq!(schema["mutationType"], "Mutation", "{schema}");
        assert_eq!(schema["subscriptionType"], "Subscription", "{schema}");
        assert_eq!(schema["hasOrder"], true, "{schema}");
        // The whole answer is bounded by the schema's size.
        assert!(schema["bytes"].as_u64().unwrap() < 512 * 1024, "{schema}");
    }
    app.stop_and_drop_database().await;
}

/// `__schema { types { fields { type { fields { type ... } } } } }`, `levels` times round.
fn circular_introspection(levels: usize) -> String {
    format!(
        "{{ __schema {{ types {{ name {}name{} }} }} }}",
        "fields { name type { name ".repeat(levels),
        " } }".repeat(levels)
    )
}

#[tokio::test]
async fn circular_introspection_is_refused_however_deep_and_counts_like_any_query() {
    let app = TestApp::spawn().await;
    for levels in [10, 20, 40] {
        let (status, body) = tokio::time::timeout(
            DEADLINE,
            app.post(None, &circular_introspection(levels), json!({})),
        )
        .await
        .expect("answered in time");
        assert_eq!(status, 200);
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP",
            "{levels} levels: {body}"
        );
    }
    // One level round (types, fields, their types) is what schema tools ask: answered.
    let (_, body) = app.post(None, &circular_introspection(1), json!({})).await;
    assert!(body["data"]["__schema"]["types"].is_array(), "{body}");

    // Introspection counts toward the complexity like any other field: each `__type` below
    // counts 4 (itself, `name`, `fields` and their `name`).
    let small = TestApp::spawn_in(Deployment::new(), &["--max-query-complexity=50"]).await;
    let types = |n: usize| {
        let aliases: Vec<String> = (0..n)
            .map(|i| format!("t{i}: __type(name: \"Order\") {{ name fields {{ name }} }}"))
            .collect();
        format!("{{ {} }}", aliases.join(" "))
    };
    let (_, body) = small.post(None, &types(10), json!({})).await;
    assert_eq!(
        body["data"]["t9"]["name"], "Order",
        "40 is within 50: {body}"
    );
    let (_, body) = small.post(None, &types(20), json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "QUERY_TOO_COMPLEX",
        "80 is over 50: {body}"
    );
    small.stop_and_drop_database().await;
    app.stop_and_drop_database().await;
}

/// Every name the schema defines (types, fields, arguments, enum values).
fn schema_names() -> HashSet<String> {
    let sdl = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql"))
        .expect("schema.graphql");
    sdl.split(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .filter(|word| word.len() > 1)
        .map(str::to_owned)
        .collect()
}

/// The quoted parts of every error message in `body`.
fn quoted_in_messages(body: &Value) -> Vec<String> {
    let mut quoted = Vec::new();
    for error in body["errors"].as_array().into_iter().flatten() {
        let message = error["message"].as_str().unwrap_or_default();
        for (i, part) in message.split('"').enumerate() {
            if i % 2 == 1 {
                quoted.push(part.to_owned());
            }
        }
    }
    quoted
}

const MISSPELLED: &[(&str, &str)] = &[
    ("a field", "{ orderz { id } }"),
    (
        "a nested field",
        "{ orders { edges { node { statuz lines { skuu } } } } }",
    ),
    ("an argument", "{ orders(frist: 1) { edges { cursor } } }"),
    ("a type", "query($s: OrderStatuss) { __typename }"),
    (
        "an enum value",
        "{ orders(status: PENDINGG) { edges { cursor } } }",
    ),
    (
        "an input field",
        "mutation { placeOrder(input: {itemz: []}) { order { id } } }",
    ),
    (
        "a fragment's type",
        "{ ...F } fragment F on Querry { __typename }",
    ),
    (
        "introspection itself",
        "{ __type(name: \"Order\") { name } }",
    ),
];

#[tokio::test]
async fn with_introspection_off_no_answer_names_what_the_request_did_not() {
    let app = TestApp::spawn_in(Deployment::new(), &["--introspection=false"]).await;
    let staff = app.staff();
    let names = schema_names();
    for (what, query) in MISSPELLED {
        let (_, body) = app.post(Some(&staff), query, json!({})).await;
        assert!(body["errors"].is_array(), "{what}: {body}");
        let text = body.to_string();
        assert!(!text.contains("Did you mean"), "{what}: {body}");
        for quoted in quoted_in_messages(&body) {
            let leaked = names.contains(&quoted) && !query.contains(quoted.as_str());
            assert!(!leaked, "{what}: the answer names {quoted:?}: {body}");
        }
    }
    // A variable of a misspelled enum value: the type named is the one the request named.
    let (_, body) = app
        .post(
            Some(&staff),
            "query($s: OrderStatus) { orders(status: $s) { edges { cursor } } }",
            json!({ "s": "PENDINGG" }),
        )
        .await;
    assert!(body["errors"].is_array(), "{body}");
    for quoted in quoted_in_messages(&body) {
        let leaked = names.contains(&quoted)
            && !"query($s: OrderStatus) { orders(status: $s) { edges { cursor } } }"
                .contains(quoted.as_str());
        assert!(!leaked, "the answer names {quoted:?}: {body}");
    }
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn with_introspection_on_misspellings_get_suggestions() {
    let app = TestApp::spawn().await;
    let (_, body) = app
        .post(Some(&app.staff()), "{ orderz { id } }", json!({}))
        .await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("Did you mean \"order"), "{body}");
    app.stop_and_drop_database().await;
}
