//! Automatic persisted queries, spoken as Apollo Client's persisted-query link does: the hash
//! alone first (over GET, `useGETForHashedQueries`), the whole document once the server says it
//! does not know it, then the hash alone again.

use crate::helpers::TestApp;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const QUERY: &str = "query Stock($sku: String!) { inventoryItem(sku: $sku) { sku quantity } }";

fn hash_of(document: &str) -> String {
    Sha256::digest(document.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn extensions(hash: &str) -> Value {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

async fn get(app: &TestApp, token: &str, params: &[(&str, String)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("http://{}/graphql", app.addr))
        .query(params)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn post(app: &TestApp, token: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{}/graphql", app.addr))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_hash_alone_is_answered_once_the_document_was_sent_with_it() {
    let app = TestApp::spawn().await;
    app.stock("LAMP", 7).await;
    let token = app.customer("alice");
    let hash = hash_of(QUERY);
    let by_hash = [
        ("operationName", "Stock".to_owned()),
        ("variables", json!({"sku": "LAMP"}).to_string()),
        ("extensions", extensions(&hash).to_string()),
    ];

    let (status, unknown) = get(&app, &token, &by_hash).await;
    assert_eq!(status, 200);
    assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(
        unknown["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );

    // Apollo's link then sends the document with its hash (a POST).
    let registered = post(
        &app,
        &token,
        json!({"query": QUERY, "operationName": "Stock", "variables": {"sku": "LAMP"},
               "extensions": extensions(&hash)}),
    )
    .await;
    assert_eq!(
        registered["data"]["inventoryItem"]["quantity"], 7,
        "{registered}"
    );

    let (status, answered) = get(&app, &token, &by_hash).await;
    assert_eq!(status, 200);
    assert_eq!(
        answered["data"]["inventoryItem"],
        json!({"sku": "LAMP", "quantity": 7})
    );
    let posted = post(
        &app,
        &token,
        json!({"variables": {"sku": "LAMP"}, "extensions": extensions(&hash)}),
    )
    .await;
    assert_eq!(posted["data"]["inventoryItem"]["sku"], "LAMP", "{posted}");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn a_persisted_mutation_is_refused_over_get_and_a_wrong_hash_is_named() {
    let app = TestApp::spawn().await;
    let staff = app.staff();
    let mutation = "mutation { upsertInventoryItem(input: {sku: \"X-1\", name: \"X\", quantity: 1}) { item { sku } } }";
    let hash = hash_of(mutation);
    let registered = post(
        &app,
        &staff,
        json!({"query": mutation, "extensions": extensions(&hash)}),
    )
    .await;
    assert_eq!(
        registered["data"]["upsertInventoryItem"]["item"]["sku"], "X-1",
        "{registered}"
    );
    let (status, body) = get(
        &app,
        &staff,
        &[("extensions", extensions(&hash).to_string())],
    )
    .await;
    assert_eq!(status, 405, "{body}");

    let wrong = post(
        &app,
        &staff,
        json!({"query": QUERY, "variables": {"sku": "X-1"}, "extensions": extensions(&hash)}),
    )
    .await;
    assert_eq!(
        wrong["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{wrong}"
    );
    assert!(wrong["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not the SHA-256"));
    app.stop_and_drop_database().await;
}
