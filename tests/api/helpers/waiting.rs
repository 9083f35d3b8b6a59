//! Waiting on facts: a deadline and a message, never a fixed sleep.

use super::*;

/// The Prometheus page of the instance whose operator endpoints are at `addr`.
pub async fn metrics_at(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the metrics endpoint answers")
        .text()
        .await
        .unwrap()
}

/// Waits until `count` statements of the app's database wait for a lock.
pub async fn wait_for_statements_waiting_on_locks(pool: &PgPool, count: i64) {
    eventually(Duration::from_secs(10), || async {
        // Unchecked: PostgreSQL's own view, which no migration defines (see the note at the top
        // of helpers/mod.rs on the tests' SQL).
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting == count {
            Ok(())
        } else {
            Err(format!("{waiting} statements wait for a lock, not {count}"))
        }
    })
    .await
}

/// Waits until the relay has published everything waiting in the outbox of `app`'s database.
pub async fn wait_until_outbox_empty(app: &TestApp) {
    eventually(Duration::from_secs(30), || async {
        let waiting: i64 = sqlx::query_scalar("select count(*) from outbox")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        match waiting {
            0 => Ok(()),
            _ => Err(format!("the relay did not publish: {waiting} events wait")),
        }
    })
    .await
}

/// Waits until the instance at `addr` counts `count` live subscriptions (its
/// `oms_live_subscriptions` gauge, read from the feeds at every scrape): the subscriptions a
/// test started are registered, so no event can pass them by.
pub async fn wait_for_live_subscriptions(addr: std::net::SocketAddr, count: i64) {
    eventually(Duration::from_secs(10), || async {
        let page = metrics_at(addr).await;
        let live = page
            .lines()
            .find_map(|line| line.strip_prefix("oms_live_subscriptions "))
            .and_then(|value| value.parse::<i64>().ok());
        if live == Some(count) {
            Ok(())
        } else {
            Err(format!(
                "{addr} counts {live:?} live subscriptions, not {count}"
            ))
        }
    })
    .await
}

/// Waits until the oms at `addr` answers `/readyz` with 200.
pub async fn wait_until_ready(addr: std::net::SocketAddr) {
    eventually(Duration::from_secs(60), || async {
        let ready = reqwest::get(format!("http://{addr}/readyz")).await;
        if ready.is_ok_and(|r| r.status() == 200) {
            Ok(())
        } else {
            Err(format!("oms at {addr} did not become ready"))
        }
    })
    .await
}

/// Waits until something accepts connections on 127.0.0.1:`port`; `what` (the server the test
/// started there) names it in the failure.
pub async fn wait_until_listening(port: u16, within: Duration, what: &str) {
    eventually(within, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map(drop)
            .map_err(|error| format!("{what} does not listen on 127.0.0.1:{port}: {error}"))
    })
    .await
}

/// Asks `check` every 50 ms until it answers `Ok`, and returns that; fails after `within` with
/// the last `Err`, which says what was seen instead.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                std::time::Instant::now() < deadline,
                "gave up after {within:?}: {seen}"
            ),
        }
        // The poll interval: the one place in the tests that polls, always toward a deadline.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
