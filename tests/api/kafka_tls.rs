//! Kafka over TLS, as managed brokers require: tansu 0.6 cannot be given a certificate and a key
//! together on its command line (`--cert` conflicts with `--key`), so stunnel from Debian
//! terminates TLS in front of it, with a certificate made for the test, and tansu advertises
//! stunnel's address.

use crate::helpers::{free_port, wait_until_listening, DedicatedBroker, Deployment, TestApp};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A self-signed certificate for 127.0.0.1 and localhost, and its key, in `dir`.
fn make_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    (cert, key)
}

/// stunnel accepting TLS on `port` for the plain broker on `target`.
fn start_tls_proxy(
    dir: &Path,
    port: u16,
    target: u16,
    cert: &Path,
    key: &Path,
) -> std::process::Child {
    let config = dir.join("stunnel.conf");
    std::fs::write(
        &config,
        format!(
            "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{target}\ncert = {}\nkey = {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    std::process::Command::new("stunnel")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("stunnel is installed (scripts/test installs it)")
}

#[tokio::test]
async fn over_tls_to_the_broker_orders_are_relayed_confirmed_and_pushed_live() {
    let dir = std::env::temp_dir().join(format!("oms-kafka-tls-{}", free_port()));
    let (cert, key) = make_certificate(&dir);
    let (broker_port, tls_port) = (free_port(), free_port());
    let _broker = DedicatedBroker::start_with(broker_port, tls_port).await;
    let mut proxy = start_tls_proxy(&dir, tls_port, broker_port, &cert, &key);
    wait_until_listening(tls_port, Duration::from_secs(10), "stunnel").await;

    let brokers = format!("--kafka-brokers=127.0.0.1:{tls_port}");
    let ca = format!("--kafka-ssl-ca-location={}", cert.display());
    // Starting at all means the topics were created over TLS.
    let app = TestApp::spawn_in(
        Deployment::new(),
        &[&brokers, "--kafka-security-protocol=ssl", &ca],
    )
    .await;
    app.stock("HORN", 3).await;
    let alice = app.customer("alice");
    let order_id = app.place_order_id(&alice, &[("HORN", 1)]).await;
    let history = app.wait_for_status(&alice, &order_id, "CONFIRMED").await;
    assert!(!history.is_empty());
    assert_eq!(app.stock_of("HORN").await, 2);
    app.stop_and_drop_database().await;
    let _ = proxy.kill();
    let _ = proxy.wait();
}
