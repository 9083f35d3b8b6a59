//! Stock levels and the stock ledger.

use crate::domain::events::StockChangeReason;
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
    /// Counts the item's changes: 1 when created.
    pub version: i32,
}

impl InventoryItemRow {
    /// At or below its low-stock threshold.
    pub fn is_low_stock(&self) -> bool {
        crate::domain::order::is_low_stock(self.quantity, self.low_stock_threshold)
    }
}

/// An item whose stock just moved by `delta`.
#[derive(sqlx::FromRow, Clone, Debug, PartialEq, Eq)]
pub struct MovedItem {
    #[sqlx(flatten)]
    pub item: InventoryItemRow,
    pub delta: i32,
}

const ITEM_COLUMNS: &str = "id, sku, name, quantity, low_stock_threshold, updated_at, version";

/// The stock ledger's name for a reason.
fn ledger_reason(reason: StockChangeReason) -> &'static str {
    match reason {
        StockChangeReason::StockSet => "stock_set",
        StockChangeReason::OrderConfirmed => "order_confirmed",
        StockChangeReason::OrderCancelled => "order_cancelled",
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
/// overlapping sets of items cannot deadlock. `for no key update` (the SKU never changes): orders
/// being placed for these SKUs at the same time only need a key-share lock for their lines'
/// foreign key, and are not held up by the stock being deducted.
pub async fn lock_by_skus(
    conn: &mut PgConnection,
    skus: &[String],
) -> sqlx::Result<Vec<InventoryItemRow>> {
    sqlx::query_as(&format!(
        "select {ITEM_COLUMNS} from inventory_items where sku = any($1) order by id for no key update"
    ))
    .bind(skus)
    .fetch_all(conn)
    .await
}

/// Adds `delta` (negative to deduct) to each item's stock and writes one ledger row per item;
/// returns the items as they now are. The CHECK constraint refuses any result below zero.
pub async fn move_stock(
    conn: &mut PgConnection,
    order_id: Option<Uuid>,
    reason: StockChangeReason,
    moves: &[(String, i32)],
) -> sqlx::Result<Vec<MovedItem>> {
    let (skus, deltas): (Vec<&str>, Vec<i32>) = moves
        .iter()
        .map(|(sku, delta)| (sku.as_str(), *delta))
        .unzip();
    sqlx::query_as(
        "with moved as (
             update inventory_items item
             set quantity = item.quantity + m.delta, version = item.version + 1,
                 updated_at = now()
             from unnest($1::text[], $2::int[]) as m(sku, delta)
             where item.sku = m.sku
             returning item.id, item.sku, item.name, item.quantity, item.low_stock_threshold,
                       item.updated_at, item.version, m.delta
         ), ledger as (
             insert into stock_movements (sku, order_id, delta, reason)
             select sku, $3, delta, $4 from moved
         )
         select * from moved order by sku",
    )
    .bind(skus)
    .bind(deltas)
    .bind(order_id)
    .bind(ledger_reason(reason))
    .fetch_all(conn)
    .await
}

/// An item before and after it was set.
pub struct UpsertedItem {
    /// None when the item was just created.
    pub before: Option<InventoryItemRow>,
    pub after: InventoryItemRow,
}

/// Creates or updates an item and records the change of stock in the ledger. A threshold of
/// `None` keeps the item's current one (0 for a new item).
pub async fn upsert(
    conn: &mut PgConnection,
    sku: &str,
    name: &str,
    quantity: i32,
    low_stock_threshold: Option<i32>,
) -> sqlx::Result<UpsertedItem> {
    let created = sqlx::query(
        "insert into inventory_items (sku, name, quantity, low_stock_threshold)
         values ($1, $2, 0, coalesce($3, 0)) on conflict (sku) do nothing",
    )
    .bind(sku)
    .bind(name)
    .bind(low_stock_threshold)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    let current: InventoryItemRow = sqlx::query_as(&format!(
        "select {ITEM_COLUMNS} from inventory_items where sku = $1 for no key update"
    ))
    .bind(sku)
    .fetch_one(&mut *conn)
    .await?;
    let after: InventoryItemRow = sqlx::query_as(&format!(
        "update inventory_items
         set name = $2, quantity = $3,
             low_stock_threshold = coalesce($4, low_stock_threshold),
             version = version + $5, updated_at = now()
         where id = $1 returning {ITEM_COLUMNS}"
    ))
    .bind(current.id)
    .bind(name)
    .bind(quantity)
    .bind(low_stock_threshold)
    .bind(if created { 0 } else { 1 })
    .fetch_one(&mut *conn)
    .await?;
    let delta = quantity - current.quantity;
    if delta != 0 {
        sqlx::query("insert into stock_movements (sku, delta, reason) values ($1, $2, $3)")
            .bind(sku)
            .bind(delta)
            .bind(ledger_reason(StockChangeReason::StockSet))
            .execute(conn)
            .await?;
    }
    Ok(UpsertedItem {
        before: (!created).then_some(current),
        after,
    })
}

/// Creates the items (SKU, name, quantity, low-stock threshold) whose SKUs do not exist yet, in
/// one statement; their initial stock goes to the ledger. Returns how many were created.
pub async fn create_many(
    conn: &mut PgConnection,
    items: &[(String, String, i32, i32)],
) -> sqlx::Result<u64> {
    let mut skus = Vec::with_capacity(items.len());
    let mut names = Vec::with_capacity(items.len());
    let mut quantities = Vec::with_capacity(items.len());
    let mut thresholds = Vec::with_capacity(items.len());
    for (sku, name, quantity, threshold) in items {
        skus.push(sku.as_str());
        names.push(name.as_str());
        quantities.push(*quantity);
        thresholds.push(*threshold);
    }
    let created = sqlx::query(
        "with created as (
             insert into inventory_items (sku, name, quantity, low_stock_threshold)
             select * from unnest($1::text[], $2::text[], $3::int[], $4::int[])
             on conflict (sku) do nothing
             returning sku, quantity
         )
         insert into stock_movements (sku, delta, reason)
         select sku, quantity, 'stock_set' from created",
    )
    .bind(skus)
    .bind(names)
    .bind(quantities)
    .bind(thresholds)
    .execute(conn)
    .await?;
    Ok(created.rows_affected())
}
