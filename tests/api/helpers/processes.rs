//! oms as a process of its own, and the real pieces tests start beside it: PgBouncer, a
//! PostgreSQL of their own, a local HTTP server; free ports and signals.

use super::*;

/// Starts the built `oms serve` binary of `deployment` as a process of its own: for tests that
/// signal it, or whose requests could stall a server sharing the test's runtime.
pub fn spawn_oms_process(deployment: &Deployment, extra: &[&str]) -> tokio::process::Child {
    spawn_oms_process_with_env(deployment, extra, &[])
}

/// Like [`spawn_oms_process`], with extra environment variables.
pub fn spawn_oms_process_with_env(
    deployment: &Deployment,
    extra: &[&str],
    env: &[(&str, &str)],
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .arg("serve")
        .args(serve_flags(deployment, extra))
        .env(
            "RUST_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .spawn()
        .expect("oms starts")
}

/// Like [`spawn_oms_process`], with the log at `filter` (`RUST_LOG` syntax) piped from stderr as
/// JSON lines.
pub fn spawn_logged_oms_process(
    deployment: &Deployment,
    extra: &[&str],
    filter: &str,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .arg("serve")
        .args(serve_flags(deployment, extra))
        .env("RUST_LOG", filter)
        .env("LOG_JSON", "true")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("oms starts")
}

/// PgBouncer in transaction mode in front of this machine's PostgreSQL, started by
/// `scripts/pgbouncer.sh` for one test and stopped with it.
pub struct DedicatedPgBouncer {
    pub port: u16,
    dir: std::path::PathBuf,
    _process: tokio::process::Child,
}

impl DedicatedPgBouncer {
    pub async fn start() -> DedicatedPgBouncer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("oms-pgbouncer-{port}"));
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pgbouncer.sh");
        let process = tokio::process::Command::new(script)
            .arg(port.to_string())
            .arg(&dir)
            // It logs to its file in `dir`, which `log` reads.
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("pgbouncer starts (scripts/test installs it)");
        wait_until_listening(port, Duration::from_secs(5), "pgbouncer").await;
        DedicatedPgBouncer {
            port,
            dir,
            _process: process,
        }
    }

    /// `database` through this PgBouncer.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// What PgBouncer logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

/// Serves `router` on 127.0.0.1:`port` (0: any free port) until the returned task is aborted:
/// the small servers tests run themselves (an identity provider, an OTLP receiver).
pub async fn serve_locally(
    port: u16,
    router: axum::Router,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free");
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, server)
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends a signal (`TERM`, `STOP`, `CONT`, `KILL`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}

/// A PostgreSQL server of the test's own (a throw-away cluster of the machine's PostgreSQL),
/// for faults that must not disturb other tests.
pub struct DedicatedPostgres {
    pub port: u16,
    name: String,
    version: String,
}

fn run(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl DedicatedPostgres {
    pub fn start() -> DedicatedPostgres {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("PostgreSQL is installed (scripts/test installs it)")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
            .expect("a PostgreSQL version");
        let port = free_port();
        let name = format!("omstest{port}");
        let port_text = port.to_string();
        run(
            "pg_createcluster",
            &[&version, &name, "-p", &port_text, "--", "--auth=trust"],
        );
        let postgres = DedicatedPostgres {
            port,
            name,
            version,
        };
        postgres.up();
        postgres
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn up(&self) {
        run("pg_ctlcluster", &[&self.version, &self.name, "start"]);
    }

    /// Stops the server at once, cutting every connection.
    pub fn down(&self) {
        run(
            "pg_ctlcluster",
            &[&self.version, &self.name, "stop", "-m", "immediate"],
        );
    }
}

impl Drop for DedicatedPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pg_dropcluster")
            .args([&self.version, &self.name, "--stop"])
            .output();
    }
}
