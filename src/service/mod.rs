//! What oms does, independent of how it was asked: the API's mutations and the consumers' effects
//! call into here. Each operation is one database transaction; events leave only through the
//! outbox written in that same transaction.
//!
//! - [`placing`]: placing an order (idempotently).
//! - [`status_requests`]: checking and queueing a requested status change.
//! - [`inventory`]: staff setting stock.
//! - [`customers`]: customers' profiles, from their tokens' claims and their own edits.
//! - [`audit`]: checking the stored state against the invariants.
//! - [`applying`]: applying the inventory check and requested changes (used by the consumers).

pub mod applying;
pub mod audit;
pub mod batched;
pub mod customers;
pub mod inventory;
pub mod placer;
pub mod placing;
pub mod status_requests;

use crate::db::inventory::{InventoryItemRow, MovedItem};
use crate::db::orders::{OrderRow, StatusChangeRow};
use crate::db::outbox::OutboxMessage;
use crate::domain::events::{
    Actor, Event, EventBody, OrderStatusChanged, StockChangeReason, StockLevelChanged,
    EVENT_SCHEMA_VERSION,
};
use crate::domain::order::is_low_stock;
use crate::domain::status::OrderStatus;
use crate::domain::user_error::UserError;
use uuid::Uuid;

/// What an operation a client asked for came to: done, or refused with what the client can fix
/// (the mutation's `userErrors`). Outages and bugs are the `Err` of the `Result` around it.
#[must_use]
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    Refused(Vec<UserError>),
}

impl<T> Outcome<T> {
    /// The outcome as a `Result`: what was done, or the user errors.
    pub fn into_result(self) -> Result<T, Vec<UserError>> {
        match self {
            Outcome::Done(value) => Ok(value),
            Outcome::Refused(errors) => Err(errors),
        }
    }
}

/// The history entry and the `OrderStatusChanged` event of `order`, which has just reached its
/// current status and version (at its `updated_at`) from `from`.
pub fn status_change(
    order: &OrderRow,
    from: Option<OrderStatus>,
    reason: Option<String>,
    actor: Option<Actor>,
) -> (StatusChangeRow, Event) {
    let entry = StatusChangeRow {
        order_id: order.id,
        version: order.version,
        from_status: from,
        to_status: order.status,
        reason: reason.clone(),
        actor_id: actor.as_ref().map(|a| a.user_id.clone()),
        actor_role: actor.as_ref().map(|a| a.role),
        at: order.updated_at,
    };
    let mut changed = Event::new(
        order.id,
        order.version,
        EventBody::OrderStatusChanged(OrderStatusChanged {
            user_id: order.user_id.clone(),
            from,
            to: order.status,
            reason,
            changed_by: actor,
        }),
    );
    changed.occurred_at = order.updated_at;
    (entry, changed)
}

/// The stock event of `item`, which has just changed by `delta` (and was low on stock before
/// when `was_low_stock`).
pub fn stock_level_changed(
    item: &InventoryItemRow,
    delta: i32,
    was_low_stock: bool,
    reason: StockChangeReason,
    order_id: Option<Uuid>,
) -> StockLevelChanged {
    StockLevelChanged {
        event_id: Uuid::now_v7(),
        schema_version: EVENT_SCHEMA_VERSION,
        sku: item.sku.clone(),
        version: item.version,
        name: item.name.clone(),
        quantity: item.quantity,
        delta,
        low_stock_threshold: item.low_stock_threshold,
        was_low_stock,
        reason,
        order_id,
        occurred_at: item.updated_at,
        retired: item.retired_at.is_some(),
    }
}

/// The outbox messages announcing stock moved by an order.
pub fn stock_moved_by_order(
    moved: &[MovedItem],
    reason: StockChangeReason,
    order_id: Uuid,
) -> Vec<OutboxMessage> {
    moved
        .iter()
        .map(|MovedItem { item, delta }| {
            let was_low_stock = is_low_stock(item.quantity - delta, item.low_stock_threshold);
            (&stock_level_changed(item, *delta, was_low_stock, reason, Some(order_id))).into()
        })
        .collect()
}
