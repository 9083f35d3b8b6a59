//! Starting while a dependency is missing: without the broker oms serves at once, takes orders
//! into the outbox, says in its log and at `/readyz` what it waits for, and delivers everything
//! once a broker appears; without the database it exits at once with a one-line error.

use crate::helpers::{
    eventually, free_port, serve_flags, spawn_logged_oms_process, DedicatedBroker, Deployment,
    TestApp,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn started_without_a_broker_it_serves_takes_orders_and_confirms_them_once_one_appears() {
    let deployment = Deployment::new();
    let broker_port = free_port();
    let broker = format!("127.0.0.1:{broker_port}");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let started = Instant::now();
    let mut process = spawn_logged_oms_process(
        &deployment,
        &[
            &format!("--listen-addr={addr}"),
            &format!("--kafka-brokers={broker}"),
        ],
        "warn,oms=info",
    );

    // The log's first lines say what oms waits for, and where, within a second or so.
    let mut log = BufReader::new(process.stderr.take().unwrap()).lines();
    let mut first_lines = Vec::new();
    let waiting = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), log.next_line())
            .await
            .expect("oms logs what it waits for")
            .unwrap()
            .expect("the log goes on");
        first_lines.push(line.clone());
        if line.contains(&format!(
            "waiting for Kafka at {broker} to create topics (attempt 1"
        )) {
            break line;
        }
        assert!(first_lines.len() < 20, "{first_lines:#?}");
    };
    assert!(
        first_lines[..first_lines.len() - 1]
            .iter()
            .any(|line| line.contains(&format!("connecting to Kafka at {broker}"))),
        "{first_lines:#?}"
    );
    assert!(!waiting.contains("stack backtrace"), "{waiting}");
    // Keep draining the log so the process never blocks on a full pipe.
    let later_lines = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Ok(Some(line)) = log.next_line().await {
            lines.push(line);
        }
        lines
    });

    // It serves meanwhile, and says what is missing.
    eventually(Duration::from_secs(20), || async {
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .map(drop)
            .map_err(|error| format!("/healthz never answered: {error}"))
    })
    .await;
    let app = TestApp::attach(addr, deployment).await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(
        body["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap()
            .contains(&format!("waiting for Kafka at {broker}"))),
        "{body}"
    );

    // Orders are taken (into the outbox), and a subscription opened now...
    app.stock("KETTLE", 5).await;
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("KETTLE", 2)]).await;
    let mut follower = app.follow_order(&alice, &order_id).await;
    assert_eq!(follower.next_data().await["to"], "PENDING");

    // ...receives the confirmation once a broker appears on that address.
    let _broker = DedicatedBroker::start_on(broker_port).await;
    loop {
        let change = follower.next_data().await;
        if change["to"] == "CONFIRMED" {
            break;
        }
        assert_eq!(change["outcome"], "APPLIED", "{change}");
    }
    assert_eq!(app.stock_of("KETTLE").await, 3);
    crate::helpers::wait_until_ready(addr).await;
    assert!(started.elapsed() < Duration::from_secs(120));

    drop(process);
    let later = later_lines.await.unwrap();
    assert!(
        later.iter().any(|line| line.contains("Kafka is ready")),
        "{later:#?}"
    );
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn started_without_a_database_it_exits_at_once_with_a_one_line_error() {
    let mut deployment = Deployment::new();
    deployment.database_url = format!("postgres://postgres@127.0.0.1:{}/oms", free_port());
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_oms"))
            .arg("serve")
            .args(serve_flags(&deployment, &[]))
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("oms exits instead of waiting")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(error_lines[0].contains("database"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
}

#[tokio::test]
async fn without_the_broker_required_for_readiness_it_is_ready_and_says_what_is_degraded() {
    let deployment = Deployment::new();
    let broker = format!("127.0.0.1:{}", free_port());
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _process = crate::helpers::spawn_oms_process(
        &deployment,
        &[
            &format!("--listen-addr={addr}"),
            &format!("--kafka-brokers={broker}"),
            "--ready-requires-kafka=false",
        ],
    );
    crate::helpers::wait_until_ready(addr).await;
    let body: serde_json::Value = reqwest::get(format!("http://{addr}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(
        body["degraded"],
        serde_json::json!([format!("waiting for Kafka at {broker} to create topics")]),
        "{body}"
    );
    use sqlx::migrate::MigrateDatabase;
    let _ = sqlx::Postgres::force_drop_database(&deployment.database_url).await;
}

#[tokio::test]
async fn it_runs_its_tasks_on_as_many_threads_as_it_is_told() {
    let deployment = Deployment::new();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // One more than the cores of the machines the tests run on, so the default cannot pass.
    let threads = std::thread::available_parallelism().unwrap().get() + 1;
    let _process = crate::helpers::spawn_oms_process(
        &deployment,
        &[
            &format!("--listen-addr={addr}"),
            &format!("--kafka-brokers=127.0.0.1:{}", free_port()),
            "--ready-requires-kafka=false",
            &format!("--worker-threads={threads}"),
        ],
    );
    crate::helpers::wait_until_ready(addr).await;
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line == format!("oms_runtime_worker_threads {threads}")),
        "{metrics}"
    );
    use sqlx::migrate::MigrateDatabase;
    let _ = sqlx::Postgres::force_drop_database(&deployment.database_url).await;
}
