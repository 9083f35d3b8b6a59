//! Staff setting an inventory item's name, stock and low-stock threshold; the change is announced
//! on the stock-levels stream.

use crate::db;
use crate::db::inventory::InventoryItemRow;
use crate::db::Db;
use crate::domain::events::StockChangeReason;
use crate::domain::order::validate_inventory_item;
use crate::domain::user_error::UserError;
use crate::error::AppError;
use crate::outbox::OutboxWaker;

pub struct ItemInput {
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub low_stock_threshold: Option<i32>,
}

/// Creates or updates an item; the change of stock goes to the ledger.
pub async fn upsert_item(
    pool: &Db,
    outbox: &OutboxWaker,
    input: ItemInput,
) -> Result<Result<InventoryItemRow, Vec<UserError>>, AppError> {
    let errors = validate_inventory_item(
        &input.sku,
        &input.name,
        input.quantity,
        input.low_stock_threshold.unwrap_or(0),
    );
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let mut tx = pool.begin().await?;
    let upserted = db::inventory::upsert(
        &mut tx,
        &input.sku,
        input.name.trim(),
        input.quantity,
        input.low_stock_threshold,
    )
    .await?;
    let item = upserted.after;
    let changed = super::stock_level_changed(
        &item,
        item.quantity - upserted.before.as_ref().map_or(0, |before| before.quantity),
        upserted
            .before
            .as_ref()
            .is_some_and(InventoryItemRow::is_low_stock),
        StockChangeReason::StockSet,
        None,
    );
    db::outbox::enqueue(&mut *tx, &[(&changed).into()]).await?;
    tx.commit().await?;
    outbox.wake();
    tracing::info!(sku = %item.sku, quantity = item.quantity, "inventory item set");
    Ok(Ok(item))
}
