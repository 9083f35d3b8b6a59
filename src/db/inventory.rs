//! Stock levels and the stock ledger.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

#[derive(sqlx::FromRow, Clone, Debug, PartialEq, Eq)]
pub struct InventoryItemRow {
    pub id: i64,
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub low_stock_threshold: i32,
    pub updated_at: DateTime<Utc>,
}

const ITEM_COLUMNS: &str = "id, sku, name, quantity, low_stock_threshold, updated_at";

/// Why stock moved.
#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub enum MovementReason {
    /// Staff set the quantity.
    StockSet,
    /// An order was confirmed and its lines deducted.
    OrderConfirmed,
    /// A confirmed order was cancelled and its lines restored.
    OrderCancelled,
}

impl MovementReason {
    fn as_str(self) -> &'static str {
        match self {
            MovementReason::StockSet => "stock_set",
            MovementReason::OrderConfirmed => "order_confirmed",
            MovementReason::OrderCancelled => "order_cancelled",
        }
    }
}

pub async fn find_by_skus(
    db: impl PgExecutor<'_>,
    skus: &[String],
) -> sqlx::Result<Vec<InventoryItemRow>> {
    sqlx::query_as(&format!(
        "select {ITEM_COLUMNS} from inventory_items where sku = any($1)"
    ))
    .bind(skus)
    .fetch_all(db)
    .await
}

/// Items ordered by SKU, strictly after `after_sku`, at most `limit`.
pub async fn list(
    db: impl PgExecutor<'_>,
    after_sku: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<InventoryItemRow>> {
    sqlx::query_as(&format!(
        "select {ITEM_COLUMNS} from inventory_items
         where ($1::text is null or sku > $1)
         order by sku limit $2"
    ))
    .bind(after_sku)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Locks the rows of `skus` in one global order (by id), so that transactions locking
/// overlapping sets of items cannot deadlock.
pub async fn lock_by_skus(
    conn: &mut PgConnection,
    skus: &[String],
) -> sqlx::Result<Vec<InventoryItemRow>> {
    sqlx::query_as(&format!(
        "select {ITEM_COLUMNS} from inventory_items where sku = any($1) order by id for update"
    ))
    .bind(skus)
    .fetch_all(conn)
    .await
}

/// Adds `delta` (negative to deduct) to each item's stock and writes one ledger row per item.
/// The CHECK constraint refuses any result below zero.
pub async fn move_stock(
    conn: &mut PgConnection,
    order_id: Option<Uuid>,
    reason: MovementReason,
    moves: &[(String, i32)],
) -> sqlx::Result<()> {
    let (skus, deltas): (Vec<&str>, Vec<i32>) = moves
        .iter()
        .map(|(sku, delta)| (sku.as_str(), *delta))
        .unzip();
    sqlx::query(
        "with moved as (
             update inventory_items item
             set quantity = item.quantity + m.delta, updated_at = now()
             from unnest($1::text[], $2::int[]) as m(sku, delta)
             where item.sku = m.sku
             returning item.sku, m.delta
         )
         insert into stock_movements (sku, order_id, delta, reason)
         select sku, $3, delta, $4 from moved",
    )
    .bind(skus)
    .bind(deltas)
    .bind(order_id)
    .bind(reason.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Creates or updates an item and records the change of stock in the ledger. A threshold of
/// `None` keeps the item's current one (0 for a new item).
pub async fn upsert(
    conn: &mut PgConnection,
    sku: &str,
    name: &str,
    quantity: i32,
    low_stock_threshold: Option<i32>,
) -> sqlx::Result<InventoryItemRow> {
    sqlx::query(
        "insert into inventory_items (sku, name, quantity, low_stock_threshold)
         values ($1, $2, 0, coalesce($3, 0)) on conflict (sku) do nothing",
    )
    .bind(sku)
    .bind(name)
    .bind(low_stock_threshold)
    .execute(&mut *conn)
    .await?;
    let current: InventoryItemRow = sqlx::query_as(&format!(
        "select {ITEM_COLUMNS} from inventory_items where sku = $1 for update"
    ))
    .bind(sku)
    .fetch_one(&mut *conn)
    .await?;
    let item = sqlx::query_as(&format!(
        "update inventory_items
         set name = $2, quantity = $3,
             low_stock_threshold = coalesce($4, low_stock_threshold), updated_at = now()
         where id = $1 returning {ITEM_COLUMNS}"
    ))
    .bind(current.id)
    .bind(name)
    .bind(quantity)
    .bind(low_stock_threshold)
    .fetch_one(&mut *conn)
    .await?;
    let delta = quantity - current.quantity;
    if delta != 0 {
        sqlx::query("insert into stock_movements (sku, delta, reason) values ($1, $2, $3)")
            .bind(sku)
            .bind(delta)
            .bind(MovementReason::StockSet.as_str())
            .execute(conn)
            .await?;
    }
    Ok(item)
}

/// Creates an item unless its SKU exists; false when it did. The initial stock goes to the ledger.
pub async fn create_if_missing(
    conn: &mut PgConnection,
    sku: &str,
    name: &str,
    quantity: i32,
    low_stock_threshold: i32,
) -> sqlx::Result<bool> {
    let created = sqlx::query(
        "with created as (
             insert into inventory_items (sku, name, quantity, low_stock_threshold)
             values ($1, $2, $3, $4) on conflict (sku) do nothing
             returning sku, quantity
         )
         insert into stock_movements (sku, delta, reason)
         select sku, quantity, 'stock_set' from created",
    )
    .bind(sku)
    .bind(name)
    .bind(quantity)
    .bind(low_stock_threshold)
    .execute(conn)
    .await?;
    Ok(created.rows_affected() == 1)
}
