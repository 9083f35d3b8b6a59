//! Stock levels and the stock ledger.

use super::Tx;
use crate::domain::events::StockChangeReason;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
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
    /// When staff retired it (no new order may name it); None while it is available.
    pub retired_at: Option<DateTime<Utc>>,
    /// Its price now, in minor units of `price_currency` (None: no price set).
    pub price_amount: Option<i64>,
    pub price_currency: Option<String>,
}

impl InventoryItemRow {
    /// At or below its low-stock threshold.
    pub fn is_low_stock(&self) -> bool {
        crate::domain::order::is_low_stock(self.quantity, self.low_stock_threshold)
    }
}

/// An item whose stock just moved by `delta`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedItem {
    pub item: InventoryItemRow,
    pub delta: i32,
}

impl InventoryItemRow {
    /// The item as moving its stock by `delta` at `at` leaves it (what
    /// [`write_change`](super::orders::write_change) stores).
    pub fn moved_by(&self, delta: i32, at: DateTime<Utc>) -> MovedItem {
        MovedItem {
            item: InventoryItemRow {
                quantity: self.quantity + delta,
                version: self.version + 1,
                updated_at: at,
                ..self.clone()
            },
            delta,
        }
    }
}

/// The columns of [`InventoryItemRow`], for the one statement assembled at run time ([`list`]).
const ITEM_COLUMNS: &str =
    "id, sku, name, quantity, low_stock_threshold, updated_at, version, retired_at, \
     price_amount, price_currency";

/// The stock ledger's name for a reason.
pub(super) fn ledger_reason(reason: StockChangeReason) -> &'static str {
    match reason {
        StockChangeReason::StockSet => "stock_set",
        StockChangeReason::OrderConfirmed => "order_confirmed",
        StockChangeReason::OrderCancelled => "order_cancelled",
        // Retiring moves no stock, so it never writes a ledger row; were it to, it is staff's.
        StockChangeReason::ItemRetired => "stock_set",
    }
}

pub async fn find_by_skus(
    db: impl PgExecutor<'_>,
    skus: &[String],
) -> sqlx::Result<Vec<InventoryItemRow>> {
    sqlx::query_as!(
        InventoryItemRow,
        "select id, sku, name, quantity, low_stock_threshold, updated_at, version, retired_at,
                price_amount, price_currency
         from inventory_items where sku = any($1)",
        skus
    )
    .fetch_all(db)
    .await
}

/// Which inventory items a list shows.
#[derive(Clone, Debug, Default)]
pub struct ItemFilter {
    /// Only items at or below their low-stock threshold.
    pub low_stock: bool,
    /// Retired items too (otherwise left out).
    pub include_retired: bool,
    /// Items whose SKU or name starts with this, ignoring case.
    pub search: Option<String>,
}

/// Items `filter` selects, ordered by SKU, strictly after `after_sku`, at most `limit`. Each
/// filter is served by an index (migration 0005). Assembled from the filters present, so not a
/// compile-time checked macro; `tests/api/inventory_listing.rs` runs every shape.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &ItemFilter,
    after_sku: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<InventoryItemRow>> {
    let mut sql = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
        "select {ITEM_COLUMNS} from inventory_items where true"
    ));
    if filter.low_stock {
        sql.push(" and quantity <= low_stock_threshold");
    }
    if !filter.include_retired {
        sql.push(" and retired_at is null");
    }
    if let Some(search) = &filter.search {
        let prefix = format!("{}%", super::escape_like(&search.to_lowercase()));
        sql.push(" and (lower(sku) like ")
            .push_bind(prefix.clone())
            .push(" or lower(name) like ")
            .push_bind(prefix)
            .push(")");
    }
    if let Some(after) = after_sku {
        sql.push(" and sku > ").push_bind(after.to_owned());
    }
    sql.push(" order by sku limit ").push_bind(limit);
    sql.build_query_as().fetch_all(db).await
}

/// One line of an order with its stock item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineStock {
    pub sku: String,
    pub requested: i32,
    /// None when no item has the line's SKU any more.
    pub item: Option<InventoryItemRow>,
}

/// An order's lines, in line order, each with its stock item, the items locked until the
/// transaction ends; in one round trip. The rows are locked in one global order (by id), so
/// that transactions locking overlapping sets of items cannot deadlock. `for no key update`
/// (the SKU never changes): orders being placed for these SKUs at the same time only need a
/// key-share lock for their lines' foreign key, and are not held up by the stock being deducted.
pub async fn lock_stock_of_order(tx: &mut Tx, order_id: Uuid) -> sqlx::Result<Vec<LineStock>> {
    Ok(lock_stock_of_orders(tx, &[order_id])
        .await?
        .into_iter()
        .map(|(_, line)| line)
        .collect())
}

/// The lines of several orders, by order then line, each with its stock item; the union of
/// their items locked once, in the same global order as [`lock_stock_of_order`].
pub async fn lock_stock_of_orders(
    tx: &mut Tx,
    order_ids: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, LineStock)>> {
    let rows = sqlx::query!(
        r#"with lines as (
             select order_id, line_no, sku, quantity from order_lines where order_id = any($1)
         ), locked as (
             select id, sku, name, quantity, low_stock_threshold, updated_at, version, retired_at,
                    price_amount, price_currency
             from inventory_items
             -- An array, not a semi-join: the items are found through the SKU index, never by
             -- reading the whole catalogue into a hash (which planners pick for a few hundred
             -- lines, and which a batch would then do while holding its locks).
             where sku = any(array(select sku from lines))
             order by id
             for no key update
         )
         select lines.order_id as "order_id!", lines.sku as "line_sku!",
                lines.quantity as "requested!",
                -- null when no item has the line's SKU
                locked.id as "id?", locked.sku as "sku?", locked.name as "name?",
                locked.quantity as "quantity?",
                locked.low_stock_threshold as "low_stock_threshold?",
                locked.updated_at as "updated_at?", locked.version as "version?",
                locked.retired_at as "retired_at?", locked.price_amount as "price_amount?",
                locked.price_currency as "price_currency?"
         from lines left join locked on locked.sku = lines.sku
         order by lines.order_id, lines.line_no"#,
        order_ids
    )
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let item = match (
                row.id,
                row.sku,
                row.name,
                row.quantity,
                row.low_stock_threshold,
                row.updated_at,
                row.version,
            ) {
                (
                    Some(id),
                    Some(sku),
                    Some(name),
                    Some(quantity),
                    Some(low_stock_threshold),
                    Some(updated_at),
                    Some(version),
                ) => Some(InventoryItemRow {
                    id,
                    sku,
                    name,
                    quantity,
                    low_stock_threshold,
                    updated_at,
                    version,
                    retired_at: row.retired_at,
                    price_amount: row.price_amount,
                    price_currency: row.price_currency,
                }),
                _ => None,
            };
            let line = LineStock {
                sku: row.line_sku,
                requested: row.requested,
                item,
            };
            (row.order_id, line)
        })
        .collect())
}

/// An item before and after it was set.
pub struct UpsertedItem {
    /// None when the item was just created.
    pub before: Option<InventoryItemRow>,
    pub after: InventoryItemRow,
}

/// Creates or updates an item and records the change of stock in the ledger. A threshold of
/// `None` keeps the item's current one (0 for a new item).
/// What setting an item does to its price.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriceChange {
    Keep,
    Clear,
    /// Amount in minor units, ISO 4217 currency.
    Set(i64, String),
}

pub async fn upsert(
    tx: &mut Tx,
    sku: &str,
    name: &str,
    quantity: i32,
    low_stock_threshold: Option<i32>,
    price: &PriceChange,
) -> sqlx::Result<UpsertedItem> {
    let created = sqlx::query!(
        "insert into inventory_items (sku, name, quantity, low_stock_threshold)
         values ($1, $2, 0, coalesce($3, 0)) on conflict (sku) do nothing",
        sku,
        name,
        low_stock_threshold,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let current = lock_by_sku(tx, sku)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let (price_amount, price_currency) = match price {
        PriceChange::Set(amount, currency) => (Some(*amount), Some(currency.as_str())),
        _ => (None, None),
    };
    let after = sqlx::query_as!(
        InventoryItemRow,
        "update inventory_items
         set name = $2, quantity = $3,
             low_stock_threshold = coalesce($4, low_stock_threshold),
             version = version + $5, updated_at = now(), retired_at = null,
             price_amount = case when $6 then $7 else price_amount end,
             price_currency = case when $6 then $8 else price_currency end
         where id = $1
         returning id, sku, name, quantity, low_stock_threshold, updated_at, version, retired_at,
                   price_amount, price_currency",
        current.id,
        name,
        quantity,
        low_stock_threshold,
        if created { 0 } else { 1 },
        *price != PriceChange::Keep,
        price_amount,
        price_currency,
    )
    .fetch_one(&mut *tx)
    .await?;
    let delta = quantity - current.quantity;
    if delta != 0 {
        sqlx::query!(
            "insert into stock_movements (sku, delta, reason) values ($1, $2, $3)",
            sku,
            delta,
            ledger_reason(StockChangeReason::StockSet),
        )
        .execute(tx)
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
    db: impl PgExecutor<'_>,
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
    let created = sqlx::query!(
        "with created as (
             insert into inventory_items (sku, name, quantity, low_stock_threshold)
             select * from unnest($1::text[], $2::text[], $3::int[], $4::int[])
             on conflict (sku) do nothing
             returning sku, quantity
         )
         insert into stock_movements (sku, delta, reason)
         select sku, quantity, 'stock_set' from created",
        &skus as _,
        &names as _,
        &quantities,
        &thresholds,
    )
    .execute(db)
    .await?;
    Ok(created.rows_affected())
}

/// Retires the item `sku` (locked until the transaction ends): None when no item has that SKU;
/// the item and whether this call retired it (false: it already was).
pub async fn retire(tx: &mut Tx, sku: &str) -> sqlx::Result<Option<(InventoryItemRow, bool)>> {
    let Some(current) = lock_by_sku(tx, sku).await? else {
        return Ok(None);
    };
    if current.retired_at.is_some() {
        return Ok(Some((current, false)));
    }
    let retired = sqlx::query_as!(
        InventoryItemRow,
        "update inventory_items
         set retired_at = now(), version = version + 1, updated_at = now()
         where id = $1
         returning id, sku, name, quantity, low_stock_threshold, updated_at, version, retired_at,
                   price_amount, price_currency",
        current.id
    )
    .fetch_one(tx)
    .await?;
    Ok(Some((retired, true)))
}

/// The item `sku`, its row locked until the transaction ends (`for no key update`, as
/// [`lock_stock_of_orders`]).
async fn lock_by_sku(tx: &mut Tx, sku: &str) -> sqlx::Result<Option<InventoryItemRow>> {
    sqlx::query_as!(
        InventoryItemRow,
        "select id, sku, name, quantity, low_stock_threshold, updated_at, version, retired_at,
                price_amount, price_currency
         from inventory_items where sku = $1 for no key update",
        sku
    )
    .fetch_optional(tx)
    .await
}
