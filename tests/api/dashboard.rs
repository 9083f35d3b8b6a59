//! The live dashboard (`/dashboard`) in a real browser: `tests/browser/dashboard.mjs` drives
//! Debian's Chromium with playwright-core against an instance started here. `scripts/test`
//! installs both when they are missing; without them this test fails, saying so.

use crate::helpers::TestApp;
use oms::auth::Role;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Orders cancelled before the page opens.
const EARLIER_ORDERS: i32 = 12_000;

/// The whole browser run: start Chromium, sign in, one order through four statuses.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What the browser test needs on this machine, or what is missing.
pub fn browser_prerequisites(browser_dir: &Path) -> Result<(), String> {
    let mut missing = Vec::new();
    let node = std::process::Command::new("node").arg("--version").output();
    if !matches!(node, Ok(ref output) if output.status.success()) {
        missing.push("node (Node.js) on PATH".to_owned());
    }
    if !chromium().is_file() {
        missing.push(format!("{} (Debian's chromium)", chromium().display()));
    }
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        missing.push(format!(
            "{} (npm ci --prefix tests/browser)",
            browser_dir.join("node_modules/playwright-core").display()
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the browser test needs {}; run scripts/test, which installs them",
            missing.join(", ")
        ))
    }
}

#[tokio::test]
async fn the_dashboard_shows_an_order_placed_through_the_api_live() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    if let Err(problem) = browser_prerequisites(&browser_dir) {
        panic!("{problem}");
    }

    let app = TestApp::spawn().await;
    let staff = app.staff();
    // Five in stock, low at three: the browser test orders two and sees the item become low.
    let data = app
        .query(
            &staff,
            "mutation($input: UpsertInventoryItemInput!) {
               upsertInventoryItem(input: $input) { item { sku lowStock } userErrors { code message } }
             }",
            json!({ "input": {
                "sku": "DASH-LAMP", "name": "Desk lamp", "quantity": 5, "lowStockThreshold": 3,
                "price": { "amount": 1250, "currency": "EUR" },
            } }),
        )
        .await;
    assert_eq!(
        data["upsertInventoryItem"]["userErrors"],
        json!([]),
        "{data}"
    );
    assert_eq!(data["upsertInventoryItem"]["item"]["lowStock"], false);

    // Twelve thousand orders the page never sees change, more than it could page through:
    // the counts must come from the server.
    sqlx::query(
        "with placed as (
             insert into orders (id, user_id, status, version, created_at, updated_at)
             select gen_random_uuid(), 'history-' || n, 'CANCELLED', 2, now(), now()
             from generate_series(1, $1) n
             returning id, user_id, created_at
         )
         insert into order_status_history (order_id, version, from_status, to_status, actor_id, actor_role, at)
         select id, 1, null, 'PENDING', user_id, 'customer', created_at from placed
         union all
         select id, 2, 'PENDING', 'CANCELLED', user_id, 'customer', created_at from placed",
    )
    .bind(EARLIER_ORDERS)
    .execute(&app.pool)
    .await
    .unwrap();
    let started = Instant::now();
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("dashboard.mjs"))
        .current_dir(root)
        .env("OMS_URL", format!("http://{}", app.addr))
        .env("OMS_STAFF_TOKEN", &staff)
        .env(
            "OMS_CUSTOMER_TOKEN",
            app.token_with_claims("alice", Role::Customer, &[("name", "Alice Liddell")]),
        )
        .env("OMS_CUSTOMER_ID", "alice")
        .env("OMS_CUSTOMER_NAME", "Alice Liddell")
        .env("OMS_SKU", "DASH-LAMP")
        .env("OMS_UNIT_PRICE", "1250")
        .env("OMS_EARLIER_CANCELLED", EARLIER_ORDERS.to_string())
        .env("CHROMIUM", chromium())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("the browser test took more than {BROWSER_TIMEOUT:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "--- tests/browser/dashboard.mjs ({:.1?}) ---\n{stdout}{stderr}",
        started.elapsed()
    );
    assert!(
        output.status.success(),
        "the browser test failed ({}): see its output above; screenshot in \
         target/dashboard-failure.png",
        output.status
    );
    app.assert_invariants_hold().await;
    app.stop_and_drop_database().await;
}

#[tokio::test]
async fn the_dashboard_is_one_page_with_no_token_outside_development_mode() {
    let app = TestApp::spawn().await;
    let page = app.get("/dashboard").await;
    assert_eq!(page.status(), 200);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("cache-control"), "no-store");
    assert!(header("content-security-policy").contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("const DEV_TOKEN = '';"),
        "no token pre-filled"
    );
    assert!(!html.contains("__OMS_"), "every placeholder is filled");
    assert!(html.contains("graphql-transport-ws"));
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(external), "no external assets: {external}");
    }
    app.stop_and_drop_database().await;
}
