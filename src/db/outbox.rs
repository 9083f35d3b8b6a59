//! Events waiting for Kafka. Rows are written in the transaction of the change they announce and
//! deleted once the broker has acknowledged them.

use super::Tx;
use crate::domain::events::{Event, StockLevelChanged, Stream};
use sqlx::PgExecutor;
use std::borrow::Borrow;
use uuid::Uuid;

/// The channel relays listen on, to wake at once when outbox rows were committed.
pub const NOTIFY_CHANNEL: &str = "oms_outbox";

/// Only the relay holding this transaction-scoped advisory lock publishes, so events leave in
/// the order they were written even with several instances running.
const RELAY_LOCK_KEY: i64 = 0x6f6d_735f_7265_6c61; // "oms_rela"

#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub stream: String,
    pub message_key: String,
    pub payload: String,
    /// The W3C traceparent of the span that wrote the event, when traces are on.
    pub traceparent: Option<String>,
    /// Seconds since the transaction that wrote the event began, when it was read.
    pub waited_seconds: f64,
}

/// One event as the outbox stores it: where it goes, its message key and its JSON.
pub struct OutboxMessage {
    pub event_id: Uuid,
    pub stream: Stream,
    pub key: String,
    pub payload: serde_json::Value,
    /// The span writing the event (`crate::telemetry::current_traceparent`).
    pub traceparent: Option<String>,
}

impl From<&Event> for OutboxMessage {
    /// Order events are keyed by order id, so one order's events stay in order.
    fn from(event: &Event) -> Self {
        OutboxMessage {
            event_id: event.event_id,
            stream: event.body.stream(),
            key: event.order_id.to_string(),
            payload: serde_json::to_value(event).expect("events serialise to JSON"),
            traceparent: crate::telemetry::current_traceparent(),
        }
    }
}

impl From<&StockLevelChanged> for OutboxMessage {
    /// Stock events are keyed by SKU, so one item's changes stay in order.
    fn from(event: &StockLevelChanged) -> Self {
        OutboxMessage {
            event_id: event.event_id,
            stream: Stream::StockLevels,
            key: event.sku.clone(),
            payload: serde_json::to_value(event).expect("events serialise to JSON"),
            traceparent: crate::telemetry::current_traceparent(),
        }
    }
}

/// The outbox columns of `messages`, as arrays for `unnest($1::uuid[], $2::text[], $3::text[],
/// $4::jsonb[], $5::text[])`.
pub(super) type Columns<'a> = (
    Vec<Uuid>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a serde_json::Value>,
    Vec<Option<&'a str>>,
);

pub(super) fn columns<'a>(messages: impl IntoIterator<Item = &'a OutboxMessage>) -> Columns<'a> {
    let (mut ids, mut streams, mut keys, mut payloads, mut traceparents) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for message in messages {
        ids.push(message.event_id);
        streams.push(message.stream.as_str());
        keys.push(message.key.as_str());
        payloads.push(&message.payload);
        traceparents.push(message.traceparent.as_deref());
    }
    (ids, streams, keys, payloads, traceparents)
}

/// Queues events: in one statement, so atomic even on the pool; in a transaction, with the rest
/// of it. Wake the relays once it is committed (`outbox::OutboxWaker`).
pub async fn enqueue<M: Borrow<OutboxMessage>>(
    db: impl PgExecutor<'_>,
    messages: &[M],
) -> sqlx::Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let (ids, streams, keys, payloads, traceparents) = columns(messages.iter().map(Borrow::borrow));
    sqlx::query!(
        "insert into outbox (event_id, stream, message_key, payload, traceparent)
         select * from unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[])",
        &ids,
        &streams as _,
        &keys as _,
        &payloads as _,
        &traceparents as _,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Wakes the relays of every instance (a NOTIFY in a transaction of its own, which writes
/// nothing and so holds the notification queue's lock only for a moment).
pub async fn wake_relays(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!("select pg_notify($1, '')", NOTIFY_CHANNEL)
        .execute(db)
        .await?;
    Ok(())
}

/// Takes the relay lock for the caller's transaction; false when another relay holds it.
///
/// The same statement lets the transaction commit without waiting for its WAL to reach the
/// disk (`synchronous_commit` off, for this transaction only): all it writes is the deletion
/// of events the broker has already acknowledged. If a crash loses that deletion, the events
/// are published again, and the consumers' inbox recognises them; nothing is lost, and no
/// relay round waits for a flush.
pub async fn try_lock_relay(tx: &mut Tx) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"select pg_try_advisory_xact_lock($1) as "locked!"
           from (select set_config('synchronous_commit', 'off', true)) as commit_without_flush"#,
        RELAY_LOCK_KEY
    )
    .fetch_one(tx)
    .await
}

/// The oldest `limit` rows, in the order they were written.
pub async fn oldest(tx: &mut Tx, limit: i64) -> sqlx::Result<Vec<OutboxRow>> {
    sqlx::query_as!(
        OutboxRow,
        r#"select id, stream, message_key, payload::text as "payload!", traceparent,
                extract(epoch from clock_timestamp() - created_at)::float8 as "waited_seconds!"
         from outbox order by id limit $1"#,
        limit
    )
    .fetch_all(tx)
    .await
}

pub async fn delete(tx: &mut Tx, ids: &[i64]) -> sqlx::Result<()> {
    sqlx::query!("delete from outbox where id = any($1)", ids)
        .execute(tx)
        .await?;
    Ok(())
}

/// How many events wait, and the age in seconds of the oldest.
pub async fn backlog(db: impl PgExecutor<'_>) -> sqlx::Result<(i64, f64)> {
    let backlog = sqlx::query!(
        r#"select count(*) as "waiting!",
                  coalesce(extract(epoch from now() - min(created_at))::float8, 0) as "oldest_age!"
           from outbox"#
    )
    .fetch_one(db)
    .await?;
    Ok((backlog.waiting, backlog.oldest_age))
}
