//! The TypeScript client in `examples/ts-client` (urql and graphql-ws, typed by graphql-codegen
//! from `schema.graphql`) built and run against a real oms: it places an order and follows it to
//! its final status.

use crate::helpers::TestApp;
use std::path::Path;
use std::time::Duration;

async fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let mut command = tokio::process::Command::new(program);
    command.args(args).current_dir(dir).kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} took more than 2 minutes"))
        .unwrap_or_else(|error| panic!("{program} runs (Node.js and npm are needed): {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_typescript_client_places_an_order_and_follows_it_to_its_end() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ts-client");
    assert!(
        dir.join("node_modules/@urql/core").is_dir(),
        "examples/ts-client/node_modules is missing: run scripts/test, which installs it \
         (npm ci --prefix examples/ts-client)"
    );
    // Types from the schema as it is now: a query the schema no longer has fails the build.
    run(&dir, "npm", &["run", "--silent", "build"], &[]).await;

    let app = TestApp::spawn().await;
    app.set_item("TS-LAMP", 5, None).await;
    let out = run(
        &dir,
        "node",
        &["dist/main.js"],
        &[
            ("OMS_URL", format!("http://{}", app.addr)),
            ("OMS_TOKEN", app.customer("alice")),
            ("OMS_SKU", "TS-LAMP".to_owned()),
        ],
    )
    .await;
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
        .collect();
    assert_eq!(lines[0]["status"], "PENDING", "{out}");
    let order = lines[0]["placed"].as_str().unwrap().to_owned();
    let statuses: Vec<&str> = lines[1..]
        .iter()
        .map(|line| line["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["PENDING", "CONFIRMED", "CANCELLED"], "{out}");
    let stored: String = sqlx::query_scalar("select status from orders where id = $1::uuid")
        .bind(&order)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "CANCELLED");
    assert_eq!(app.stock_of("TS-LAMP").await, 5, "the stock came back");
    app.stop_and_drop_database().await;
}
