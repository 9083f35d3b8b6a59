//! Orders, their lines and their status history.

use crate::domain::status::OrderStatus;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

#[derive(sqlx::FromRow, Clone, Debug, PartialEq)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: String,
    pub status: OrderStatus,
    pub rejection_reason: Option<String>,
    pub version: i32,
    pub stock_deducted: bool,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow, Clone, Debug, PartialEq, Eq)]
pub struct OrderLineRow {
    pub order_id: Uuid,
    pub line_no: i32,
    pub sku: String,
    pub quantity: i32,
}

#[derive(sqlx::FromRow, Clone, Debug, PartialEq)]
pub struct StatusChangeRow {
    pub order_id: Uuid,
    pub version: i32,
    pub from_status: Option<OrderStatus>,
    pub to_status: OrderStatus,
    pub reason: Option<String>,
    pub actor_id: Option<String>,
    pub actor_role: Option<String>,
    pub at: DateTime<Utc>,
}

const ORDER_COLUMNS: &str = "id, user_id, status, rejection_reason, version, stock_deducted, \
                             idempotency_key, created_at, updated_at";

pub const IDEMPOTENCY_CONSTRAINT: &str = "orders_user_idempotency_key";

/// The foreign key of an order line's SKU: violated when a line names an unknown SKU.
pub const LINE_SKU_CONSTRAINT: &str = "order_lines_sku_fkey";

/// Places an order in one statement (so one round trip, atomic without a transaction): `order`
/// as it is placed, its lines numbered from 1, its first history entry `placed`, and its
/// `events` in the outbox, waking the relays. Fails on [`IDEMPOTENCY_CONSTRAINT`] when the key
/// was used, and on [`LINE_SKU_CONSTRAINT`] when a SKU does not exist.
pub async fn insert_placed(
    db: impl PgExecutor<'_>,
    order: &OrderRow,
    lines: &[(String, i32)],
    placed: &StatusChangeRow,
    events: &[super::outbox::OutboxMessage],
) -> sqlx::Result<OrderRow> {
    let (skus, quantities): (Vec<&str>, Vec<i32>) =
        lines.iter().map(|(sku, qty)| (sku.as_str(), *qty)).unzip();
    let (event_ids, streams, keys, payloads) = super::outbox::columns(events);
    sqlx::query_as(&format!(
        "-- The order and its first history entry share status ($9), version ($7) and time ($4).
         with placed as (
             insert into orders (id, user_id, status, version, idempotency_key, created_at,
                                 updated_at)
             values ($1, $2, $9, $7, $3, $4, $4)
             returning {ORDER_COLUMNS}
         ), lines as (
             insert into order_lines (order_id, line_no, sku, quantity)
             select $1, line.no::int, line.sku, line.quantity
             from unnest($5::text[], $6::int[]) with ordinality as line(sku, quantity, no)
         ), history as (
             insert into order_status_history
                 (order_id, version, from_status, to_status, reason, actor_id, actor_role, at)
             values ($1, $7, $8, $9, $10, $11, $12, $4)
         ), events as (
             insert into outbox (event_id, stream, message_key, payload)
             select * from unnest($13::uuid[], $14::text[], $15::text[], $16::jsonb[])
         )
         select placed.*, pg_notify($17, '')::text as notified from placed"
    ))
    .bind(order.id)
    .bind(&order.user_id)
    .bind(&order.idempotency_key)
    .bind(order.created_at)
    .bind(skus)
    .bind(quantities)
    .bind(placed.version)
    .bind(placed.from_status)
    .bind(placed.to_status)
    .bind(&placed.reason)
    .bind(&placed.actor_id)
    .bind(&placed.actor_role)
    .bind(event_ids)
    .bind(streams)
    .bind(keys)
    .bind(payloads)
    .bind(super::outbox::NOTIFY_CHANNEL)
    .fetch_one(db)
    .await
}

pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as(&format!("select {ORDER_COLUMNS} from orders where id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn find_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<OrderRow>> {
    sqlx::query_as(&format!(
        "select {ORDER_COLUMNS} from orders where id = any($1)"
    ))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Reads an order and locks its row until the transaction ends: every status change of one
/// order is serialised on this lock.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as(&format!(
        "select {ORDER_COLUMNS} from orders where id = $1 for update"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn find_by_idempotency_key(
    db: impl PgExecutor<'_>,
    user_id: &str,
    key: &str,
) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as(&format!(
        "select {ORDER_COLUMNS} from orders where user_id = $1 and idempotency_key = $2"
    ))
    .bind(user_id)
    .bind(key)
    .fetch_optional(db)
    .await
}

/// Which orders a page lists.
pub struct OrderFilter<'a> {
    /// Only this user's orders (a customer's view); `None` lists everyone's.
    pub user_id: Option<&'a str>,
    pub status: Option<OrderStatus>,
    /// Orders strictly older than this one (ids are time-ordered).
    pub before_id: Option<Uuid>,
}

/// Newest first, at most `limit` rows.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &OrderFilter<'_>,
    limit: i64,
) -> sqlx::Result<Vec<OrderRow>> {
    sqlx::query_as(&format!(
        "select {ORDER_COLUMNS} from orders
         where ($1::text is null or user_id = $1)
           and ($2::text is null or status = $2)
           and ($3::uuid is null or id < $3)
         order by id desc
         limit $4"
    ))
    .bind(filter.user_id)
    .bind(filter.status)
    .bind(filter.before_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn lines_of(
    db: impl PgExecutor<'_>,
    order_ids: &[Uuid],
) -> sqlx::Result<Vec<OrderLineRow>> {
    sqlx::query_as(
        "select order_id, line_no, sku, quantity from order_lines
         where order_id = any($1) order by order_id, line_no",
    )
    .bind(order_ids)
    .fetch_all(db)
    .await
}

const CHANGE_COLUMNS: &str =
    "order_id, version, from_status, to_status, reason, actor_id, actor_role, at";

pub async fn history_of(
    db: impl PgExecutor<'_>,
    order_ids: &[Uuid],
) -> sqlx::Result<Vec<StatusChangeRow>> {
    sqlx::query_as(&format!(
        "select {CHANGE_COLUMNS} from order_status_history
         where order_id = any($1) order by order_id, version"
    ))
    .bind(order_ids)
    .fetch_all(db)
    .await
}

/// An order's changes with a version above `after_version`, oldest first.
pub async fn history_after(
    db: impl PgExecutor<'_>,
    order_id: Uuid,
    after_version: i32,
) -> sqlx::Result<Vec<StatusChangeRow>> {
    sqlx::query_as(&format!(
        "select {CHANGE_COLUMNS} from order_status_history
         where order_id = $1 and version > $2 order by version"
    ))
    .bind(order_id)
    .bind(after_version)
    .fetch_all(db)
    .await
}

/// Appends one entry to an order's history.
pub async fn record_change(conn: &mut PgConnection, change: &StatusChangeRow) -> sqlx::Result<()> {
    sqlx::query(
        "insert into order_status_history
             (order_id, version, from_status, to_status, reason, actor_id, actor_role, at)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(change.order_id)
    .bind(change.version)
    .bind(change.from_status)
    .bind(change.to_status)
    .bind(&change.reason)
    .bind(&change.actor_id)
    .bind(&change.actor_role)
    .bind(change.at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves a locked order to `status` at `version`.
pub async fn set_status(
    conn: &mut PgConnection,
    id: Uuid,
    status: OrderStatus,
    version: i32,
    rejection_reason: Option<&str>,
    stock_deducted: bool,
    at: DateTime<Utc>,
) -> sqlx::Result<OrderRow> {
    sqlx::query_as(&format!(
        "update orders
         set status = $2, version = $3, rejection_reason = coalesce($4, rejection_reason),
             stock_deducted = $5, updated_at = $6
         where id = $1
         returning {ORDER_COLUMNS}"
    ))
    .bind(id)
    .bind(status)
    .bind(version)
    .bind(rejection_reason)
    .bind(stock_deducted)
    .bind(at)
    .fetch_one(conn)
    .await
}
