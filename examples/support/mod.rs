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
        command.args(["serve", "--dev", "--listen-addr", &addr]);
        // OMS_BENCH_POOLED_URL (a server URL through PgBouncer in transaction mode): oms reaches
        // its database through the pooler, with the direct URL for migrations and LISTEN.
        match std::env::var("OMS_BENCH_POOLED_URL") {
            Ok(pooled) => {
                let (server, _) = pooled.rsplit_once('/').expect("a URL with a database");
                let (_, database) = database_url.rsplit_once('/').unwrap();
                command
                    .args(["--database-url", &format!("{server}/{database}")])
                    .args(["--database-pooler", "transaction"])
                    .args(["--database-direct-url", &database_url]);
            }
            Err(_) => {
                command.args(["--database-url", &database_url]);
            }
        }
        command
            // One address acting as hundreds of people: the per-address and per-user request
            // and connection limits are for people, not for a load generator.
            .args([
                "--max-connections-per-ip=1000000",
                "--requests-per-second=1000000",
                "--request-burst=1000000",
                "--anonymous-requests-per-second=1000000",
                "--anonymous-request-burst=1000000",
            ])
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

    /// CPU time the server process has used so far (user + system), in ms.
    pub fn cpu_ms(&self) -> f64 {
        process_cpu_ms(self.pid)
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

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system) a process has used, in ms; 0 when it is gone.
pub fn process_cpu_ms(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces), from the 3rd: utime is the 14th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<f64>().ok());
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) * 1000.0 / TICKS_PER_SECOND
}

/// The whole machine's CPU time so far, all cores: (busy ms, elapsed core-ms), from /proc/stat.
pub fn machine_cpu_ms() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let times: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: f64 = times.iter().sum();
    // idle and iowait are the 4th and 5th.
    let idle = times.get(3).unwrap_or(&0.0) + times.get(4).unwrap_or(&0.0);
    let to_ms = 1000.0 / TICKS_PER_SECOND;
    ((total - idle) * to_ms, total * to_ms)
}

/// CPU used from one reading to a later one.
#[derive(Clone, Copy)]
pub struct CpuReading {
    machine_busy_ms: f64,
    machine_total_ms: f64,
    server_ms: f64,
}

impl CpuReading {
    pub fn now(server: &BenchServer) -> CpuReading {
        let (machine_busy_ms, machine_total_ms) = machine_cpu_ms();
        CpuReading {
            machine_busy_ms,
            machine_total_ms,
            server_ms: server.cpu_ms(),
        }
    }

    /// The CPU used since `self`, per order of `orders`, as JSON: the machine's busy share, its
    /// busy CPU-ms per order, and the oms process's CPU-ms per order.
    pub fn per_order_since(&self, later: &CpuReading, orders: usize) -> Value {
        let busy = later.machine_busy_ms - self.machine_busy_ms;
        let total = later.machine_total_ms - self.machine_total_ms;
        let server = later.server_ms - self.server_ms;
        let per_order = |ms: f64| {
            if orders == 0 {
                Value::Null
            } else {
                json!((ms / orders as f64 * 100.0).round() / 100.0)
            }
        };
        json!({
            "machine_busy_percent": if total > 0.0 { (busy * 1000.0 / total).round() / 10.0 } else { 0.0 },
            "machine_cpu_ms_per_order": per_order(busy),
            "oms_cpu_ms_per_order": per_order(server),
        })
    }
}
