//! The test harness itself: what a failing test leaves behind.

use crate::helpers::Deployment;
use std::panic::AssertUnwindSafe;

#[tokio::test]
async fn a_test_that_panics_leaves_no_database_behind() {
    let deployment = Deployment::new();
    let name = deployment.database_name().to_owned();
    let db = deployment.migrated_db().await;
    let admin = sqlx::PgPool::connect(
        &std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )
    .await
    .unwrap();
    let exists = |name: String| {
        let admin = admin.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "select exists(select 1 from pg_database where datname = $1)",
            )
            .bind(name)
            .fetch_one(&admin)
            .await
            .unwrap()
        }
    };
    assert!(exists(name.clone()).await);

    let failed = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let _deployment = deployment;
        let _open_connections = db;
        panic!("a test failing before it drops its database");
    }));
    assert!(failed.is_err());
    assert!(!exists(name).await, "the database outlived its failed test");
}
