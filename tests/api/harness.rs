//! The test harness itself: what a failing test leaves behind, and the proxy that cuts networks.

use crate::helpers::Deployment;
use crate::proxy::{address_of, TcpProxy};
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

#[tokio::test]
async fn a_cut_proxy_drops_open_connections_and_refuses_new_ones_until_restored() {
    let direct = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let proxy = TcpProxy::start(address_of(&direct)).await;
    let through_proxy = proxy.url_for(&direct);
    let connect = || async {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&through_proxy).await
    };
    let select_one = |mut connection: sqlx::PgConnection| async move {
        let one = sqlx::query_scalar::<_, i32>("select 1")
            .fetch_one(&mut connection)
            .await;
        (one, connection)
    };
    let open = connect().await.expect("connects through the proxy");
    let (one, open) = select_one(open).await;
    assert_eq!(one.unwrap(), 1);

    proxy.cut();
    let (after_cut, _) = select_one(open).await;
    assert!(after_cut.is_err(), "the open connection was dropped");
    assert!(connect().await.is_err(), "a new connection is refused");
    assert_eq!(proxy.refused(), 1);

    proxy.restore();
    let (one, _) = select_one(connect().await.expect("connects again")).await;
    assert_eq!(one.unwrap(), 1);
}
