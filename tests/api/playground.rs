//! The GraphiQL playground in a real browser that can reach no other host:
//! `tests/browser/playground.mjs` drives Debian's Chromium against an instance started here.

use crate::dashboard::{browser_prerequisites, chromium};
use crate::helpers::TestApp;
use std::path::Path;
use std::time::Duration;

#[tokio::test]
async fn the_playground_works_with_no_other_host_reachable() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    if let Err(problem) = browser_prerequisites(&browser_dir) {
        panic!("{problem}");
    }
    let app = TestApp::spawn().await;
    app.stock("PLAY-LAMP", 100).await;
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("playground.mjs"))
        .current_dir(root)
        .env("OMS_URL", format!("http://{}", app.addr))
        .env("OMS_STAFF_TOKEN", app.staff())
        .env("OMS_CUSTOMER_TOKEN", app.customer("alice"))
        .env("OMS_SKU", "PLAY-LAMP")
        .env("CHROMIUM", chromium())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test finishes within 3 minutes")
        .expect("node runs");
    println!(
        "--- tests/browser/playground.mjs ---\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the playground test failed ({}): see its output above; screenshot in \
         target/playground-failure.png",
        output.status
    );
    app.stop_and_drop_database().await;
}
