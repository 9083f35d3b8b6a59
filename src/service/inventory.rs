//! Staff setting an inventory item's name, stock and low-stock threshold, and retiring it; each
//! change is announced on the stock-levels stream.

use super::Outcome;
use crate::db;
use crate::db::inventory::{InventoryItemRow, PriceChange};
use crate::db::outbox::OutboxMessage;
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
    pub price: PriceChange,
}

/// Creates or updates an item; the change of stock goes to the ledger.
pub async fn upsert_item(
    pool: &Db,
    outbox: &OutboxWaker,
    input: ItemInput,
) -> Result<Outcome<InventoryItemRow>, AppError> {
    let errors = validate_inventory_item(
        &input.sku,
        &input.name,
        input.quantity,
        input.low_stock_threshold.unwrap_or(0),
    );
    let mut errors = errors;
    if let PriceChange::Set(amount, currency) = &input.price {
        errors.extend(crate::domain::order::validate_price(*amount, currency));
    }
    if !errors.is_empty() {
        return Ok(Outcome::Refused(errors));
    }
    let mut tx = pool.begin().await?;
    let upserted = db::inventory::upsert(
        &mut tx,
        &input.sku,
        input.name.trim(),
        input.quantity,
        input.low_stock_threshold,
        &input.price,
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
    db::outbox::enqueue(&mut tx, &[OutboxMessage::from(&changed)]).await?;
    tx.commit().await?;
    outbox.wake();
    tracing::info!(sku = %item.sku, quantity = item.quantity, "inventory item set");
    Ok(Outcome::Done(item))
}

/// Retires an item: it stays in every order and in the ledger, and its stock stays, but no new
/// order may name it (until [`upsert_item`] brings it back). Retiring a retired item changes
/// nothing.
pub async fn retire_item(
    pool: &Db,
    outbox: &OutboxWaker,
    sku: &str,
) -> Result<Outcome<InventoryItemRow>, AppError> {
    if let Err(problem) = crate::domain::order::check_sku(sku) {
        return Ok(Outcome::Refused(vec![UserError::new(
            ["sku"],
            crate::domain::user_error::UserErrorCode::InvalidSku,
            problem,
        )]));
    }
    let mut tx = pool.begin().await?;
    let Some((item, newly_retired)) = db::inventory::retire(&mut tx, sku).await? else {
        return Ok(Outcome::Refused(vec![UserError::new(
            ["sku"],
            crate::domain::user_error::UserErrorCode::UnknownSku,
            format!("no inventory item has SKU {sku}"),
        )]));
    };
    if newly_retired {
        let low = item.is_low_stock();
        let changed =
            super::stock_level_changed(&item, 0, low, StockChangeReason::ItemRetired, None);
        db::outbox::enqueue(&mut tx, &[OutboxMessage::from(&changed)]).await?;
    }
    tx.commit().await?;
    if newly_retired {
        outbox.wake();
        tracing::info!(sku = %item.sku, "inventory item retired");
    }
    Ok(Outcome::Done(item))
}
