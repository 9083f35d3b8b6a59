//! PostgreSQL over TLS, as managed databases require: `sslmode` and `sslrootcert` in
//! `DATABASE_URL` are honoured. This machine's PostgreSQL has `ssl = on` with a certificate for
//! `localhost`, which also serves as the root to verify against.

use crate::helpers::{Deployment, TestApp};

/// The server's certificate file and whether TLS is on, as PostgreSQL reports them.
async fn server_certificate(app: &TestApp) -> String {
    let ssl: String = sqlx::query_scalar("show ssl")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(ssl, "on", "this machine's PostgreSQL runs with ssl = on");
    sqlx::query_scalar("show ssl_cert_file")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Whether every connection oms opened (named by `application_name`) is encrypted, and how many
/// there are.
async fn encrypted_connections(app: &TestApp, application: &str) -> (bool, i64) {
    sqlx::query_as(
        "select coalesce(bool_and(s.ssl), false), count(*)
         from pg_stat_ssl s join pg_stat_activity a using (pid)
         where a.application_name = $1",
    )
    .bind(application)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn with_sslmode_require_every_connection_of_the_pool_is_encrypted_and_with_disable_none_is() {
    for (mode, encrypted) in [("require", true), ("disable", false)] {
        let deployment = Deployment::new();
        let application = format!("oms-tls-{mode}-{}", deployment.suffix);
        let url = format!(
            "--database-url={}?sslmode={mode}&application_name={application}",
            deployment.database_url
        );
        let app = TestApp::spawn_in(deployment, &[&url]).await;
        app.stock("LAMP", 1).await;
        let (all_encrypted, connections) = encrypted_connections(&app, &application).await;
        assert!(connections > 0, "oms holds connections named {application}");
        assert_eq!(all_encrypted, encrypted, "sslmode={mode}");
        app.stop_and_drop_database().await;
    }
}

#[tokio::test]
async fn verify_full_accepts_the_servers_own_name_and_refuses_another_with_a_clear_error() {
    let app = TestApp::spawn().await;
    let certificate = server_certificate(&app).await;
    let deployment = Deployment::new();
    let database = deployment.database_name().to_owned();
    let migrate = |host: &str| {
        let url = format!(
            "postgres://postgres@{host}:5432/{database}?sslmode=verify-full&sslrootcert={certificate}"
        );
        std::process::Command::new(env!("CARGO_BIN_EXE_oms"))
            .args(["migrate", "--database-url", &url])
            .env("RUST_LOG", "warn")
            .output()
            .expect("oms runs")
    };
    // The certificate names localhost, not 127.0.0.1.
    let refused = migrate("127.0.0.1");
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("invalid peer certificate"), "{error}");
    assert!(
        error.contains("not valid for name \"127.0.0.1\""),
        "{error}"
    );
    assert_eq!(
        error.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{error}"
    );

    let accepted = migrate("localhost");
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    use sqlx::migrate::MigrateDatabase;
    let _ = sqlx::Postgres::force_drop_database(&deployment.database_url).await;
    app.stop_and_drop_database().await;
}
