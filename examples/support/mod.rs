//! What the benchmarks share: an `oms serve` of their own (release build, fresh database and
//! topics) against the local PostgreSQL and broker, tokens, GraphQL over HTTP, percentiles.

#![allow(dead_code)] // each benchmark uses its own part of this

use oms::auth::{Role, TokenKeys, DEV_SECRET};
use serde_json::{json, Value};
use std::time::Duration;

/// A running `oms serve --dev` of one benchmark run.
pub struct BenchServer {
    pub addr: String,
    pub database_url: String,
    pub suffix: String,
    pub pid: u32,
    keys: TokenKeys,
    child: tokio::process::Child,
}

/// The `oms` binary next to the running example (`target/release/oms`).
fn oms_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("oms")
}

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

impl BenchServer {
    /// Starts oms with its own database and topics, plus `extra` flags, and waits until ready.
    pub async fn start(name: &str, extra: &[String]) -> BenchServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let pg_port = std::env::var("PG_PORT").unwrap_or_else(|_| "5432".into());
        let database_url = format!("postgres://postgres@127.0.0.1:{pg_port}/oms_{name}_{suffix}");
        let mut command = tokio::process::Command::new(oms_binary());
        command
            .args(["serve", "--dev", "--listen-addr", &addr])
            .args(["--database-url", &database_url])
            .args(["--kafka-brokers", &brokers()])
            .args(["--kafka-group-prefix", &format!("{name}-{suffix}")]);
        for stream in ["inventory", "orders", "order-status", "stock-levels"] {
            command.arg(format!("--kafka-topic-{stream}={stream}-{suffix}"));
        }
        let child = command
            .args(extra)
            // The server's own log level: OMS_BENCH_LOG (errors only by default).
            .env(
                "RUST_LOG",
                std::env::var("OMS_BENCH_LOG").unwrap_or("error".into()),
            )
            .kill_on_drop(true)
            .spawn()
            .expect("target/release/oms exists: cargo build --release --bin oms");
        let pid = child.id().unwrap();
        let server = BenchServer {
            addr,
            database_url,
            suffix,
            pid,
            keys: TokenKeys::new(DEV_SECRET.as_bytes()),
            child,
        };
        while reqwest::get(format!("http://{}/readyz", server.addr))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server
    }

    pub fn token(&self, user: &str, role: Role) -> String {
        self.keys.issue(user, role, Duration::from_secs(3600))
    }

    pub fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    pub fn websocket_url(&self) -> String {
        format!("ws://{}/graphql/ws", self.addr)
    }

    /// Resident memory of the server process.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// Stops the server and drops its database.
    pub async fn stop(mut self) {
        self.child.kill().await.ok();
        use sqlx::migrate::MigrateDatabase;
        let _ = sqlx::Postgres::force_drop_database(&self.database_url).await;
    }
}

/// One GraphQL request over HTTP; the response body.
pub async fn graphql(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value, String> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("HTTP {status}, body not JSON: {e}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(body)
}

/// The `p` quantile (0..=1) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
