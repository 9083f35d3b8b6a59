//! oms behind PgBouncer in transaction mode (Debian's 1.18, as the old system deployed it):
//! every SQL path works with no `DATABASE_DIRECT_URL` at all, the relay polling instead of
//! listening. `scripts/test` also runs the main flow's tests through a PgBouncer with a direct
//! URL for migrations and `LISTEN`.

use crate::helpers::{DedicatedPgBouncer, Deployment, TestApp};
use serde_json::json;

#[tokio::test]
async fn through_pgbouncer_in_transaction_mode_without_a_direct_url_every_sql_path_works() {
    let pgbouncer = DedicatedPgBouncer::start().await;
    let deployment = Deployment::new();
    // Migrations need PostgreSQL itself; oms then starts with OMS_MIGRATE=false.
    let db = deployment.migrated_db().await;
    db.close().await;
    let database = deployment.database_name().to_owned();
    let pooled = format!("--database-url={}", pgbouncer.url(&database));
    let app = TestApp::spawn_in(
        deployment,
        &[
            &pooled,
            "--database-pooler=transaction",
            "--migrate=false",
            "--database-max-connections=8",
        ],
    )
    .await;

    // Placing, confirming (the inventory consumer), the relay, cancelling (the orders consumer)
    // and restoring stock, several orders at once so the pool's connections are shared.
    app.stock("DRUM", 10).await;
    let alice = app.customer("alice");
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(app.place_order_id(&alice, &[("DRUM", 1)]).await);
    }
    for id in &ids {
        app.wait_for_status(&alice, id, "CONFIRMED").await;
    }
    app.update_status(&alice, &ids[0], "CANCELLED").await;
    app.wait_for_status(&alice, &ids[0], "CANCELLED").await;
    assert_eq!(app.stock_of("DRUM").await, 5);

    // Reads through the loaders, and a subscription's catch-up from the history.
    let data = app
        .query(
            &app.staff(),
            "{ orders(first: 10) { edges { node { status lines { sku item { quantity } } history { to } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["orders"]["edges"].as_array().unwrap().len(),
        6,
        "{data}"
    );
    let mut follower = app.follow_order(&alice, &ids[0]).await;
    let replayed: Vec<String> = [
        follower.next_data().await,
        follower.next_data().await,
        follower.next_data().await,
    ]
    .iter()
    .map(|change| change["to"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(replayed, ["PENDING", "CONFIRMED", "CANCELLED"]);
    app.assert_invariants_hold().await;

    // The statements really went through PgBouncer, and none collided.
    let log = pgbouncer.log();
    assert!(log.contains(&format!("db={database}")), "{log}");
    assert!(!log.contains("prepared statement"), "{log}");
    app.stop_and_drop_database().await;
}
