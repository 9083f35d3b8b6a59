//! The consumers' inbox (`processed_events`): which events each consumer has applied, so a
//! redelivered one changes nothing. Entries are written with the effect they mark (see
//! `orders::lock_for_events`); here they are only pruned.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// Deletes at most `limit` entries processed before `cutoff`; returns how many went. Small
/// chunks keep each statement short beside the consumers' inserts.
pub async fn prune_before(
    db: impl PgExecutor<'_>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<u64> {
    let deleted = sqlx::query!(
        "delete from processed_events where ctid in (
             select ctid from processed_events where processed_at < $1 limit $2
         )",
        cutoff,
        limit,
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}
