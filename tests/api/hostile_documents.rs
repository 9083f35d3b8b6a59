//! Documents built to cost far more than their size: fragment fan-out, fragment cycles, wide
//! aliases, deep nesting, huge literals, many operations, deep variables. Each is refused with
//! a named code before it can hold the instance, on HTTP and on the WebSocket, and the
//! instance keeps serving everyone else meanwhile.

use crate::helpers::{
    free_port, spawn_oms_process, wait_until_ready, Deployment, Protocol, Subscription, SECRET,
};
use oms::auth::{Role, TokenKeys};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// Longer than any refusal takes by orders of magnitude, shorter than the hostile documents
/// took before the guard (a 22-level fan-out: 3.3 s; 40 levels: days).
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// `query { ...F0 }` where each fragment spreads the next one twice: 2^levels fields.
fn fan_out(levels: usize) -> String {
    let mut query = String::from("query { ...F0 }\n");
    for i in 0..levels {
        query.push_str(&format!(
            "fragment F{i} on Query {{ ...F{next} ...F{next} }}\n",
            next = i + 1
        ));
    }
    query.push_str(&format!("fragment F{levels} on Query {{ __typename }}\n"));
    query
}

/// oms in a process of its own: a document that stalled it must not stall the test's clock,
/// so a regression fails at the deadline instead of hanging.
struct Server {
    addr: SocketAddr,
    deployment: Deployment,
    _process: tokio::process::Child,
}

impl Server {
    async fn start(extra: &[&str]) -> Server {
        let deployment = Deployment::new();
        let listen = format!("--listen-addr=127.0.0.1:{}", free_port());
        let mut flags = vec![listen.as_str()];
        flags.extend_from_slice(extra);
        let process = spawn_oms_process(&deployment, &flags);
        let addr: SocketAddr = listen["--listen-addr=".len()..].parse().unwrap();
        wait_until_ready(addr).await;
        Server {
            addr,
            deployment,
            _process: process,
        }
    }

    async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/graphql", self.addr))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = tokio::time::timeout(ANSWER_DEADLINE, request.send())
            .await
            .unwrap_or_else(|_| panic!("no answer within {ANSWER_DEADLINE:?} to {query:.200}"))
            .expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    fn staff(&self) -> String {
        TokenKeys::new(SECRET.as_bytes()).issue("staff-1", Role::Staff, Duration::from_secs(600))
    }

    async fn stop(self) {
        drop(self._process);
        use sqlx::migrate::MigrateDatabase;
        let _ = sqlx::Postgres::force_drop_database(&self.deployment.database_url).await;
    }
}

fn code_of(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

#[tokio::test]
async fn a_forty_level_fragment_fan_out_is_refused_at_once_while_others_are_served() {
    let server = Server::start(&[]).await;
    let staff = server.staff();
    let hostile = fan_out(40);
    assert!(hostile.len() < 2_048, "under 2 KB");

    // Four at once (more than the runtime's worker threads on this machine), and a staff
    // query beside them.
    let attacks = (0..4).map(|_| server.post(None, &hostile, json!({})));
    let (answers, (_, served)) = tokio::join!(
        futures_util::future::join_all(attacks),
        server.post(Some(&staff), "{ __typename }", json!({})),
    );
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}");
        assert_eq!(code_of(&body), "QUERY_TOO_COMPLEX", "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("maximum complexity"),
            "{body}"
        );
    }
    assert_eq!(served["data"]["__typename"], "Query", "{served}");

    // The same document over an anonymous WebSocket.
    let mut socket = Subscription::try_connect_to(server.addr, json!({}), Protocol::TransportWs)
        .await
        .expect("anonymous connections are acknowledged");
    socket.start(&hostile, json!({})).await;
    let refused = tokio::time::timeout(ANSWER_DEADLINE, socket.next_payload())
        .await
        .expect("refused in time");
    assert_eq!(code_of(&refused), "QUERY_TOO_COMPLEX", "{refused}");
    server.stop().await;
}

#[tokio::test]
async fn every_other_costly_shape_is_refused_with_a_named_code() {
    // Twenty shapes from one address: the anonymous rate limit is not what is tried here.
    let server = Server::start(&["--anonymous-request-burst=100"]).await;
    let aliases = |n: usize| {
        let fields: Vec<String> = (0..n).map(|i| format!("a{i}: __typename")).collect();
        format!("{{ {} }}", fields.join(" "))
    };
    let operations = |n: usize| {
        (0..n)
            .map(|i| format!("query Q{i} {{ __typename }}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let cases: Vec<(&str, String, Value, &str)> = vec![
        (
            "a fragment cycle that fans out",
            "query { ...A } fragment A on Query { ...B ...B } fragment B on Query { ...A ...A }"
                .into(),
            json!({}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "a fragment that spreads itself",
            "query { ...A } fragment A on Query { __typename ...A }".into(),
            json!({}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "40 aliases of a 100-item page",
            format!(
                "{{ {} }}",
                (0..40)
                    .map(|i| format!("p{i}: inventoryItems(first: 100) {{ edges {{ node {{ sku }} }} }}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            json!({}),
            "QUERY_TOO_COMPLEX",
        ),
        (
            "two aliases of a 100-order page with lines and history",
            "{ a: orders(first: 100) { edges { node { id lines { sku quantity item { name } } history { from to } } } }
               b: orders(first: 100) { edges { node { id lines { sku quantity item { name } } history { from to } } } } }"
                .into(),
            json!({}),
            "QUERY_TOO_COMPLEX",
        ),
        (
            "4,000 aliases",
            aliases(4_000),
            json!({}),
            "QUERY_TOO_LARGE",
        ),
        (
            "1,200 operations in one document",
            operations(1_200),
            json!({}),
            "QUERY_TOO_LARGE",
        ),
        (
            "a string literal of 200 KB",
            format!("{{ inventoryItem(sku: \"{}\") {{ sku }} }}", "x".repeat(200_000)),
            json!({}),
            "QUERY_TOO_LARGE",
        ),
        (
            "brackets nested 2,000 deep in an argument",
            format!(
                "{{ inventoryItem(sku: {}\"A\"{}) {{ sku }} }}",
                "[".repeat(2_000),
                "]".repeat(2_000)
            ),
            json!({}),
            "QUERY_TOO_DEEP",
        ),
        (
            "selections nested 5,000 deep",
            format!("{}{}", "{ a ".repeat(5_000), "}".repeat(5_000)),
            json!({}),
            "QUERY_TOO_DEEP",
        ),
        (
            "fields nested 30 deep through fragments",
            format!(
                "{{ ...D }} fragment D on Query {{ {}__typename{} }}",
                "orders { edges { node { history { order { ".repeat(6),
                " } } } } }".repeat(6)
            ),
            json!({}),
            "QUERY_TOO_DEEP",
        ),
        (
            "a directive repeated on one field",
            "{ __typename @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) }".into(),
            json!({}),
            "TOO_MANY_DIRECTIVES",
        ),
        (
            "two whole introspections",
            "{ a: __schema { types { name } } b: __schema { types { name } } }".into(),
            json!({}),
            "QUERY_TOO_COMPLEX",
        ),
    ];
    for (shape, query, variables, code) in cases {
        let (status, body) = server.post(None, &query, variables).await;
        assert!(
            status == 200 || status == 400,
            "{shape}: status {status}: {body}"
        );
        assert_eq!(code_of(&body), code, "{shape}: {body}");
    }

    // Wide but cheap: 1,600 aliases of `__typename` (4,800 tokens) are answered in full.
    let (_, body) = server.post(None, &aliases(1_600), json!({})).await;
    assert_eq!(body["data"]["a1599"], "Query", "{body}");

    // Variables nested deeper than the JSON reader goes are refused as a bad request.
    let mut deep = json!("A");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let (status, body) = server
        .post(
            None,
            "query($s: [String]) { __typename }",
            json!({ "s": deep }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code_of(&body), "BAD_USER_INPUT", "{body}");

    // Still serving.
    let (_, body) = server
        .post(Some(&server.staff()), "{ __typename }", json!({}))
        .await;
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
    server.stop().await;
}
