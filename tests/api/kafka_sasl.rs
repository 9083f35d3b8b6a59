//! Kafka with SASL, as managed brokers require. tansu checks SCRAM-SHA-256 and SCRAM-SHA-512
//! against credentials it stores, so the broker keeps its data in SQLite: the test creates the
//! user with `tansu user create` on a broker without authentication, then restarts it with
//! `--authentication`. (tansu 0.6's PLAIN takes any password, so PLAIN cannot show a refusal
//! here; librdkafka's PLAIN is the same client code with another mechanism name.)

use crate::helpers::{free_port, spawn_logged_oms_process, DedicatedBroker, Deployment, TestApp};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

const USER: &str = "oms-app";
const PASSWORD: &str = "correct horse battery staple";

/// Creates `USER` with `PASSWORD` for `mechanism` (`scram256`, `scram512`) on the broker at `port`.
fn create_user(port: u16, mechanism: &str) {
    let created = std::process::Command::new("tansu")
        .args([
            "user",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .args(["--mechanism", mechanism, USER, PASSWORD])
        .output()
        .expect("tansu runs");
    assert!(created.status.success(), "{created:?}");
}

fn sasl_flags(port: u16, mechanism: &str, password: &str) -> Vec<String> {
    vec![
        format!("--kafka-brokers=127.0.0.1:{port}"),
        "--kafka-security-protocol=sasl_plaintext".to_owned(),
        format!("--kafka-sasl-mechanism={mechanism}"),
        format!("--kafka-sasl-username={USER}"),
        format!("--kafka-sasl-password={password}"),
    ]
}

#[tokio::test]
async fn signed_in_with_scram_orders_are_relayed_confirmed_and_pushed_live_and_a_wrong_password_is_refused(
) {
    let dir = std::env::temp_dir().join(format!("oms-kafka-sasl-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    {
        let _setup = DedicatedBroker::start_stored(&dir, port, false).await;
        create_user(port, "scram256");
    }
    let _broker = DedicatedBroker::start_stored(&dir, port, true).await;

    let flags = sasl_flags(port, "SCRAM-SHA-256", PASSWORD);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // Starting at all means the topics were created by a signed-in client.
    let app = TestApp::spawn_in(Deployment::new(), &flags).await;
    app.stock("HORN", 3).await;
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("HORN", 1)]).await;
    app.wait_for_status(&alice, &order_id, "CONFIRMED").await;
    assert_eq!(app.stock_of("HORN").await, 2);
    app.stop_and_drop_database().await;

    // The same user with a wrong password: the broker refuses it, and the log says so.
    let deployment = Deployment::new();
    let flags = sasl_flags(port, "SCRAM-SHA-256", "wrong password");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut process = spawn_logged_oms_process(&deployment, &flags, "info");
    let mut lines = tokio::io::BufReader::new(process.stderr.take().unwrap()).lines();
    let refusal = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.to_lowercase().contains("authentication failed") {
                return line;
            }
        }
        panic!("oms exited without reporting the refusal");
    })
    .await
    .expect("the refusal is logged within a minute");
    assert!(
        !refusal.contains("wrong password"),
        "the password leaked: {refusal}"
    );
    let _ = process.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
