//! The consumers' inbox stays bounded: entries older than the retention (no redelivery can need
//! them) are deleted, in chunks; recent ones stay.

use crate::helpers::{Deployment, TestApp};
use oms::consumers::inbox::InboxPruner;
use std::time::Duration;

#[tokio::test]
async fn inbox_entries_past_the_retention_are_pruned_in_chunks_and_recent_ones_kept() {
    // The instance's own pruner is off, so only the test's runs.
    let app = TestApp::spawn_in(Deployment::new(), &["--inbox-retention-hours=0"]).await;
    sqlx::raw_sql(
        "insert into processed_events (consumer, event_id, processed_at)
         select 'inventory', gen_random_uuid(), now() - interval '200 hours'
         from generate_series(1, 12000);
         insert into processed_events (consumer, event_id, processed_at)
         select 'orders', gen_random_uuid(), now() - interval '100 hours'
         from generate_series(1, 10);",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let pruner = InboxPruner {
        pool: app.db(),
        retention: Duration::from_secs(168 * 3600),
        metrics: oms::metrics::Metrics::new(),
    };

    assert_eq!(pruner.prune_once().await.unwrap(), 12_000);
    let left: Vec<(String, i64)> = sqlx::query_as(
        "select consumer, count(*) from processed_events group by consumer order by consumer",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(left, [("orders".to_owned(), 10)]);
    assert_eq!(pruner.metrics.inbox_pruned.get(), 12_000);
    assert_eq!(pruner.prune_once().await.unwrap(), 0);
    app.stop_and_drop_database().await;
}
