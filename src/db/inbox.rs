//! Events a consumer has applied. The mark is written in the same transaction as the effect, so
//! a redelivered event is recognised and skipped.

use sqlx::PgConnection;
use uuid::Uuid;

/// Marks `event_id` as applied by `consumer`; false when it already was.
pub async fn mark_processed(
    conn: &mut PgConnection,
    consumer: &str,
    event_id: Uuid,
) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "insert into processed_events (consumer, event_id) values ($1, $2)
         on conflict do nothing",
    )
    .bind(consumer)
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}
