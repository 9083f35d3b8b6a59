//! The consumers' effects: the inventory check of a placed order, and applying a requested status
//! change. Each runs in one transaction that also marks the event as processed, so a redelivered
//! event changes nothing.

use crate::db;
use crate::db::orders::OrderRow;
use crate::db::outbox::OutboxMessage;
use crate::domain::events::{
    Actor, Event, EventBody, StatusChangeRefused, StatusChangeRequested, StockChangeReason,
};
use crate::domain::permissions::may_request_status;
use crate::domain::status::{ChangeOrigin, OrderStatus, Transition};
use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub const INVENTORY_CONSUMER: &str = "inventory";
pub const ORDERS_CONSUMER: &str = "orders";

/// What applying an event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The event was applied before; nothing changed.
    Duplicate,
    /// The event no longer applies (e.g. the order was cancelled before its inventory check).
    Moot { status: OrderStatus },
    /// The order moved to a new status.
    Changed(OrderRow),
    /// The requested change was refused; subscribers were told why.
    Refused { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The event names an order that does not exist: it can never apply.
    #[error("order {0} does not exist")]
    UnknownOrder(Uuid),
    /// The database refused the effect outright (a constraint): retrying cannot help, and the
    /// event is set aside for an operator instead of blocking its partition.
    #[error("the database refused the effect: {0}")]
    Refused(sqlx::Error),
    /// Worth retrying: the database failed.
    #[error("database error")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for ApplyError {
    fn from(error: sqlx::Error) -> Self {
        // SQLSTATE class 22 (data exception, e.g. a NUL in text) and 23 (integrity constraint
        // violation): the statement can never succeed with this event's data.
        let constraint = matches!(&error, sqlx::Error::Database(db)
            if db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23")));
        if constraint {
            ApplyError::Refused(error)
        } else {
            ApplyError::Database(error)
        }
    }
}

/// Deducts a PENDING order's stock and confirms it, or rejects it naming each line that cannot be
/// filled (and then moves no stock).
pub async fn apply_inventory_check(
    pool: &PgPool,
    event_id: Uuid,
    order_id: Uuid,
) -> Result<Applied, ApplyError> {
    let mut tx = pool.begin().await?;
    if !db::inbox::mark_processed(&mut tx, INVENTORY_CONSUMER, event_id).await? {
        tracing::info!(%order_id, %event_id, "event already applied; skipping the redelivery");
        return Ok(Applied::Duplicate);
    }
    let order = db::orders::lock(&mut tx, order_id)
        .await?
        .ok_or(ApplyError::UnknownOrder(order_id))?;
    if order.status != OrderStatus::Pending {
        // Cancelled (or already decided) before its check: nothing to deduct.
        tx.commit().await?;
        return Ok(Applied::Moot {
            status: order.status,
        });
    }
    let lines = db::orders::lines_of(&mut *tx, &[order.id]).await?;
    let skus: Vec<String> = lines.iter().map(|l| l.sku.clone()).collect();
    let items = db::inventory::lock_by_skus(&mut tx, &skus).await?;
    let shortages: Vec<String> = lines
        .iter()
        .filter_map(
            |line| match items.iter().find(|item| item.sku == line.sku) {
                None => Some(format!("SKU {} no longer exists", line.sku)),
                Some(item) if item.quantity < line.quantity => Some(format!(
                    "insufficient stock for SKU {}: requested {}, available {}",
                    line.sku, line.quantity, item.quantity
                )),
                Some(_) => None,
            },
        )
        .collect();
    let changed = if shortages.is_empty() {
        let deductions: Vec<(String, i32)> =
            lines.iter().map(|l| (l.sku.clone(), -l.quantity)).collect();
        let moved = db::inventory::move_stock(
            &mut tx,
            Some(order.id),
            StockChangeReason::OrderConfirmed,
            &deductions,
        )
        .await?;
        let stock_events =
            super::stock_moved_by_order(&moved, StockChangeReason::OrderConfirmed, order.id);
        change_status(
            &mut tx,
            &order,
            OrderStatus::Confirmed,
            None,
            true,
            None,
            stock_events,
        )
        .await?
    } else {
        let reason = shortages.join("; ");
        change_status(
            &mut tx,
            &order,
            OrderStatus::Rejected,
            Some(reason),
            false,
            None,
            Vec::new(),
        )
        .await?
    };
    tx.commit().await?;
    tracing::info!(order_id = %order.id, status = %changed.status, "inventory check applied");
    Ok(Applied::Changed(changed))
}

/// Applies a requested change if the order still allows it; restores stock exactly once when a
/// deducted order is cancelled. A change no longer allowed is announced as refused.
pub async fn apply_requested_change(
    pool: &PgPool,
    event_id: Uuid,
    order_id: Uuid,
    request: &StatusChangeRequested,
) -> Result<Applied, ApplyError> {
    let mut tx = pool.begin().await?;
    if !db::inbox::mark_processed(&mut tx, ORDERS_CONSUMER, event_id).await? {
        tracing::info!(%order_id, %event_id, "event already applied; skipping the redelivery");
        return Ok(Applied::Duplicate);
    }
    let order = db::orders::lock(&mut tx, order_id)
        .await?
        .ok_or(ApplyError::UnknownOrder(order_id))?;
    let actor = &request.requested_by;
    let decision = may_request_status(actor.role, actor.user_id == order.user_id, request.to)
        .map_err(|refusal| refusal.to_string())
        .and_then(|()| {
            order
                .status
                .transition_to(request.to, ChangeOrigin::Request)
                .map_err(|refusal| refusal.to_string())
        });
    let outcome = match decision {
        Err(message) => {
            refuse(&mut tx, &order, request, &message).await?;
            Applied::Refused { message }
        }
        Ok(Transition::NoOp) => Applied::Moot {
            status: order.status,
        },
        Ok(Transition::Apply { restores_stock }) => {
            let mut stock_events = Vec::new();
            if restores_stock && order.stock_deducted {
                let restores: Vec<(String, i32)> = db::orders::lines_of(&mut *tx, &[order.id])
                    .await?
                    .into_iter()
                    .map(|l| (l.sku, l.quantity))
                    .collect();
                let skus: Vec<String> = restores.iter().map(|(sku, _)| sku.clone()).collect();
                db::inventory::lock_by_skus(&mut tx, &skus).await?;
                let moved = db::inventory::move_stock(
                    &mut tx,
                    Some(order.id),
                    StockChangeReason::OrderCancelled,
                    &restores,
                )
                .await?;
                stock_events = super::stock_moved_by_order(
                    &moved,
                    StockChangeReason::OrderCancelled,
                    order.id,
                );
            }
            let stock_deducted = order.stock_deducted && !restores_stock;
            Applied::Changed(
                change_status(
                    &mut tx,
                    &order,
                    request.to,
                    request.reason.clone(),
                    stock_deducted,
                    Some(actor.clone()),
                    stock_events,
                )
                .await?,
            )
        }
    };
    tx.commit().await?;
    tracing::info!(order_id = %order.id, %event_id, outcome = ?outcome, "status request applied");
    Ok(outcome)
}

/// Moves a locked order to `to`, bumps its version, and announces the change (with `also`, the
/// other events of the transaction).
async fn change_status(
    conn: &mut PgConnection,
    order: &OrderRow,
    to: OrderStatus,
    reason: Option<String>,
    stock_deducted: bool,
    actor: Option<Actor>,
    also: Vec<OutboxMessage>,
) -> sqlx::Result<OrderRow> {
    let rejection_reason = (to == OrderStatus::Rejected)
        .then_some(reason.as_deref())
        .flatten();
    let changed = db::orders::set_status(
        conn,
        order.id,
        to,
        order.version + 1,
        rejection_reason,
        stock_deducted,
        Utc::now(),
    )
    .await?;
    super::announce_change(conn, &changed, Some(order.status), reason, actor, also).await?;
    Ok(changed)
}

async fn refuse(
    conn: &mut PgConnection,
    order: &OrderRow,
    request: &StatusChangeRequested,
    message: &str,
) -> sqlx::Result<()> {
    let refused = Event::new(
        order.id,
        order.version,
        EventBody::StatusChangeRefused(StatusChangeRefused {
            user_id: order.user_id.clone(),
            requested: request.to,
            current: order.status,
            message: message.to_owned(),
            requested_by: request.requested_by.clone(),
        }),
    );
    db::outbox::enqueue(conn, &[(&refused).into()]).await
}
