//! Keeps the consumers' inbox bounded: an entry is only needed while its message could still
//! be delivered again, that is while the topic keeps it. Entries older than the retention are
//! deleted in small chunks, every few minutes, by each process that runs consumers (two doing
//! it at once only share the work).

use crate::db::{self, Db};
use crate::metrics::Metrics;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Entries deleted per statement.
const CHUNK: i64 = 5_000;
/// Time between rounds, at most (a quarter of the retention when that is shorter).
const INTERVAL: Duration = Duration::from_secs(300);

pub struct InboxPruner {
    pub pool: Db,
    /// Entries older than this go; at least the topics' retention.
    pub retention: Duration,
    pub metrics: Metrics,
}

impl InboxPruner {
    /// Deletes every entry older than the retention now; returns how many went.
    pub async fn prune_once(&self) -> sqlx::Result<u64> {
        let retention = chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(retention)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let mut pruned = 0;
        loop {
            let deleted = db::inbox::prune_before(&self.pool, cutoff, CHUNK).await?;
            pruned += deleted;
            self.metrics.inbox_pruned.inc_by(deleted);
            if deleted < CHUNK as u64 {
                return Ok(pruned);
            }
        }
    }

    /// Prunes every few minutes (more often under a short retention) until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let interval = INTERVAL.min(self.retention / 4).max(Duration::from_secs(1));
        loop {
            match self.prune_once().await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "inbox entries past the retention deleted"),
                Err(error) => {
                    tracing::warn!(%error, "pruning the inbox failed; trying again later")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
