//! Staff setting an inventory item's name, stock and low-stock threshold.

use crate::db;
use crate::db::inventory::InventoryItemRow;
use crate::domain::order::validate_inventory_item;
use crate::domain::user_error::UserError;
use crate::error::AppError;
use sqlx::PgPool;

pub struct ItemInput {
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub low_stock_threshold: Option<i32>,
}

/// Creates or updates an item; the change of stock goes to the ledger.
pub async fn upsert_item(
    pool: &PgPool,
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
    let item = db::inventory::upsert(
        &mut tx,
        &input.sku,
        input.name.trim(),
        input.quantity,
        input.low_stock_threshold,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(sku = %item.sku, quantity = item.quantity, "inventory item set");
    Ok(Ok(item))
}
