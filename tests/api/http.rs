//! The HTTP surface around GraphQL: health, readiness, the playground, GET semantics.

use crate::helpers::TestApp;

#[tokio::test]
async fn health_and_readiness_report_a_running_service() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    crate::helpers::wait_until_ready(app.addr).await;
    let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn the_playground_is_served_at_the_root_and_points_at_the_websocket() {
    let app = TestApp::spawn().await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(!html.contains("__OMS_DEFAULT_HEADERS__"));
    assert!(
        html.contains(r#"data-default-headers="{}""#),
        "no token is pre-filled outside development mode"
    );
    let script = app.get("/playground.js").await.text().await.unwrap();
    assert!(
        script.contains("'/ws'") && script.contains("graphqlWs.createClient"),
        "the playground subscribes over /graphql/ws"
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn the_playground_loads_everything_from_this_server_under_a_strict_policy() {
    let app = TestApp::spawn().await;
    let page = app.get("/").await;
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self';"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    let sources: Vec<&str> = html
        .split(['"', '\''])
        .filter(|part| part.starts_with("/assets/") || part.contains("://"))
        .collect();
    assert!(
        sources.iter().all(|source| source.starts_with("/assets/")),
        "{sources:?}"
    );
    assert_eq!(sources.len(), 5, "{sources:?}");
    for source in sources {
        let asset = app.get(source).await;
        assert_eq!(asset.status(), 200, "{source}");
        assert!(asset.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert!(asset.bytes().await.unwrap().len() > 1000, "{source}");
    }
    assert_eq!(app.get("/assets/nothing.js").await.status(), 404);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn queries_work_over_get_but_mutations_need_post() {
    let app = TestApp::spawn().await;
    let token = app.staff();
    let http = reqwest::Client::new();
    let url = format!("http://{}/graphql", app.addr);
    let query = http
        .get(&url)
        .query(&[("query", "{ inventoryItems { edges { cursor } } }")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    let body: serde_json::Value = query.json().await.unwrap();
    assert_eq!(
        body["data"]["inventoryItems"]["edges"],
        serde_json::json!([]),
        "{body}"
    );

    let mutation = http
        .get(&url)
        .query(&[(
            "query",
            "mutation { upsertInventoryItem(input: {sku: \"X\", name: \"X\", quantity: 1}) { item { sku } } }",
        )])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(mutation.status(), 405);
    let body: serde_json::Value = mutation.json().await.unwrap();
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("POST"));
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn metrics_count_orders_by_outcome_and_show_the_outbox_where_events_waited_and_live_subscriptions(
) {
    let app = crate::helpers::TestApp::spawn().await;
    app.stock("FAN", 1).await;
    let alice = app.customer("alice");
    // One unit for two orders: whichever is checked first is confirmed, the other rejected.
    let first = app.place_order_id(&alice, &[("FAN", 1)]).await;
    let second = app.place_order_id(&alice, &[("FAN", 1)]).await;
    let _watching = app.follow_order(&alice, &first).await;
    for id in [&first, &second] {
        let mut follower = app.follow_order(&alice, id).await;
        while !matches!(
            follower.next_data().await["to"].as_str(),
            Some("CONFIRMED" | "REJECTED")
        ) {}
    }

    // The decisions may have been read from the history before the relay published them, and
    // the outbox gauges are the probe's latest look (every 2 s): scrape until all 8 events
    // (FAN stocked, 2 orders x (placed, status), 2 decisions, the confirmed order's deduction)
    // are published and the probe has seen the outbox empty, and until the live reader has
    // received the four status events, which reach it a broker hop after they are published.
    let series = |text: &str, series: &str| -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(series))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let text = crate::helpers::eventually(std::time::Duration::from_secs(30), || async {
        let response = app.get("/metrics").await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        if series(&text, "oms_outbox_published_total") >= Some(8.0)
            && series(&text, "oms_outbox_backlog ") == Some(0.0)
            && series(&text, "oms_event_transit_seconds_count{topic=\"order-status-") >= Some(4.0)
        {
            Ok(text)
        } else {
            Err(format!(
                "the outbox never drained, or the live reader never timed the status events:\n{text}"
            ))
        }
    })
    .await;
    let value = |name: &str| -> f64 {
        series(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(value("oms_orders_placed_total"), 2.0);
    assert_eq!(
        value("oms_order_status_changes_total{status=\"CONFIRMED\"}"),
        1.0
    );
    assert_eq!(
        value("oms_order_status_changes_total{status=\"REJECTED\"}"),
        1.0
    );
    assert!(value("oms_live_subscriptions") >= 1.0);
    assert_eq!(
        value("oms_outbox_published_total"),
        8.0,
        "FAN stocked + 2 orders x (placed, status) + 2 decisions + the confirmed order's deduction"
    );
    assert!(value("oms_consumer_processing_seconds_count{topic=\"inventory-") >= 2.0);
    // Where the time between placing and hearing of it goes: every published event was timed
    // in the outbox; the inventory consumer timed both placed events from publication to
    // arrival and to applying; the live reader timed the status events it pushed (each
    // order's placed event comes before its decision, which the followers saw).
    assert_eq!(value("oms_outbox_wait_seconds_count"), 8.0);
    assert!(value("oms_event_transit_seconds_count{topic=\"inventory-") >= 2.0);
    assert!(value("oms_event_handling_delay_seconds_count{topic=\"inventory-") >= 2.0);
    assert!(value("oms_event_transit_seconds_count{topic=\"order-status-") >= 4.0);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn the_operator_endpoints_move_off_the_public_port_when_given_an_address_of_their_own() {
    let deployment = crate::helpers::Deployment::new();
    let app = TestApp::spawn_in(deployment.clone(), &["--ops-listen-addr=127.0.0.1:0"]).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            app.get(path).await.status(),
            404,
            "{path} on the public port"
        );
    }
    let ops = app.ops_addr().expect("the operator address");
    crate::helpers::wait_until_ready(ops).await;
    let metrics = crate::helpers::metrics_at(ops).await;
    assert!(metrics.contains("oms_outbox_backlog"), "{metrics}");

    // A consumers-only process serves them too, on its listen address when given no other.
    let consumers = crate::helpers::start_instance(&deployment, &["--components=consumers"]).await;
    assert!(
        consumers.addr.is_none(),
        "no API in a consumers-only process"
    );
    let ops = consumers.ops_addr.expect("the operator endpoints");
    assert_eq!(
        reqwest::get(format!("http://{ops}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    crate::helpers::wait_until_ready(ops).await;
    consumers.stop().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn readiness_and_metrics_answer_at_once_while_the_database_does_not() {
    let app = TestApp::spawn().await;
    crate::helpers::wait_until_ready(app.addr).await;

    // The tables the probe reads are locked: its queries wait, as on an overloaded database.
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("lock table _sqlx_migrations, outbox in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let within = std::time::Duration::from_secs(1);
    let body: serde_json::Value =
        crate::helpers::eventually(std::time::Duration::from_secs(30), || async {
            let response = tokio::time::timeout(within, app.get("/readyz"))
                .await
                .expect("/readyz answers within a second while the database does not");
            match response.status().as_u16() {
                503 => Ok(response.json().await.unwrap()),
                status => Err(format!(
                    "never reported the database: /readyz answered {status}"
                )),
            }
        })
        .await;
    assert_eq!(
        body["problems"],
        serde_json::json!(["database not answering"]),
        "{body}"
    );
    let metrics = tokio::time::timeout(within, app.get("/metrics"))
        .await
        .expect("/metrics answers within a second while the database does not");
    assert_eq!(metrics.status(), 200);

    lock.rollback().await.unwrap();
    crate::helpers::wait_until_ready(app.addr).await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn every_api_request_gets_an_access_log_line_and_graphql_ones_a_series_by_operation() {
    use tokio::io::AsyncBufReadExt;
    let deployment = crate::helpers::Deployment::new();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", crate::helpers::free_port())
        .parse()
        .unwrap();
    let mut process = crate::helpers::spawn_logged_oms_process(
        &deployment,
        &[&format!("--listen-addr={addr}")],
        "warn,oms::access=info",
    );
    let mut log = tokio::io::BufReader::new(process.stderr.take().unwrap()).lines();
    crate::helpers::wait_until_ready(addr).await;
    let app = TestApp::attach(addr, deployment).await;
    let alice = app.customer("alice");
    app.query(
        &alice,
        "query MyOrders { orders { edges { cursor } } }",
        serde_json::json!({}),
    )
    .await;
    let (status, _) = app
        .post(
            None,
            "{ orders { edges { cursor } } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200);

    // The named query, with who asked; the anonymous one, with its error.
    let mut lines: Vec<serde_json::Value> = Vec::new();
    while lines.len() < 2 {
        let line = tokio::time::timeout(std::time::Duration::from_secs(10), log.next_line())
            .await
            .expect("access log lines")
            .unwrap()
            .expect("the log goes on");
        let line: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        if line["target"] == "oms::access" && line["path"] == "/graphql" {
            lines.push(line);
        }
    }
    let (named, anonymous) = (&lines[0], &lines[1]);
    assert_eq!(named["level"], "INFO", "{named}");
    assert_eq!(named["operation"], "MyOrders", "{named}");
    assert_eq!(named["kind"], "query", "{named}");
    assert_eq!(named["user"], "alice", "{named}");
    assert_eq!(named["status"], 200, "{named}");
    assert_eq!(named["errors"], 0, "{named}");
    assert!(
        named["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{named}"
    );
    assert!(named["duration_ms"].as_f64().is_some(), "{named}");
    assert_eq!(anonymous["user"], "anonymous", "{anonymous}");
    assert_eq!(anonymous["errors"], 1, "{anonymous}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "oms_graphql_request_seconds_count{kind=\"query\",operation=\"MyOrders\",outcome=\"ok\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "oms_graphql_request_seconds_count{kind=\"query\",operation=\"anonymous\",outcome=\"error\"} 1"
        ),
        "{metrics}"
    );
    drop(process);
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn browsers_on_listed_origins_may_send_apollos_headers_and_read_the_request_id() {
    let shop = "https://shop.example.com";
    let app = TestApp::spawn_in(
        crate::helpers::Deployment::new(),
        &[&format!("--cors-allowed-origins={shop}")],
    )
    .await;
    let url = format!("http://{}/graphql", app.addr);
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,apollographql-client-name,apollographql-client-version",
            )
            .send()
    };

    let allowed = preflight(shop).await.unwrap();
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_lowercase())
            .unwrap_or_default()
    };
    assert_eq!(header(&allowed, "access-control-allow-origin"), shop);
    let headers = header(&allowed, "access-control-allow-headers");
    for name in [
        "authorization",
        "content-type",
        "apollographql-client-name",
        "apollographql-client-version",
    ] {
        assert!(headers.contains(name), "{name} not in {headers}");
    }

    // An answer's request id is readable by the page's code.
    let answered = client
        .post(&url)
        .header("Origin", shop)
        .json(&serde_json::json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&answered, "access-control-allow-origin"), shop);
    assert!(
        header(&answered, "access-control-expose-headers").contains("x-request-id"),
        "{:?}",
        answered.headers()
    );
    assert!(answered.headers().contains_key("x-request-id"));

    // Another origin gets no permission.
    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(header(&refused, "access-control-allow-origin"), "");
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn answers_are_compressed_with_gzip_or_brotli_when_the_client_asks() {
    let app = TestApp::spawn().await;
    for sku in ["A-1", "A-2", "A-3", "A-4", "A-5", "A-6"] {
        app.stock(sku, 10).await;
    }
    let query = serde_json::json!({"query": "{ inventoryItems { nodes { id sku name quantity lowStock updatedAt } } }"});
    // reqwest here decodes nothing itself, so the bytes are what the server sent.
    let ask = |encoding: Option<&'static str>| {
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/graphql", app.addr))
            .bearer_auth(app.staff())
            .json(&query);
        if let Some(encoding) = encoding {
            request = request.header("accept-encoding", encoding);
        }
        request.send()
    };
    let plain = ask(None).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();

    let gzipped = ask(Some("gzip")).await.unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip");
    let gzipped = gzipped.bytes().await.unwrap();
    assert!(
        gzipped.len() < plain.len(),
        "{} of {}",
        gzipped.len(),
        plain.len()
    );
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gzipped[..]),
        &mut decoded,
    )
    .unwrap();
    assert_eq!(decoded, plain, "the same answer");

    let brotli = ask(Some("br;q=1.0, gzip;q=0.5")).await.unwrap();
    assert_eq!(brotli.headers()["content-encoding"], "br");
    assert!(brotli.bytes().await.unwrap().len() < plain.len());
    app.stop_and_drop_database().await;
}
