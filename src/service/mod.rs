//! What oms does, independent of how it was asked: the API's mutations and the consumers' effects
//! call into here. Each operation is one database transaction; events leave only through the
//! outbox written in that same transaction.
//!
//! - [`placing`]: placing an order (idempotently).
//! - [`status_requests`]: checking and queueing a requested status change.
//! - [`inventory`]: staff setting stock.
//! - [`audit`]: checking the stored state against the invariants.
//! - [`applying`]: applying the inventory check and requested changes (used by the consumers).

pub mod applying;
pub mod audit;
pub mod inventory;
pub mod placing;
pub mod status_requests;

use crate::db;
use crate::db::orders::{OrderRow, StatusChangeRow};
use crate::domain::events::{Actor, Event, EventBody, OrderStatusChanged};
use crate::domain::status::OrderStatus;
use sqlx::PgConnection;

/// Writes the history entry and the `OrderStatusChanged` event for `order`, which has just
/// reached its current status and version from `from` (none when it was just placed).
pub async fn announce_change(
    conn: &mut PgConnection,
    order: &OrderRow,
    from: Option<OrderStatus>,
    reason: Option<String>,
    actor: Option<Actor>,
    also: Option<Event>,
) -> sqlx::Result<()> {
    db::orders::record_change(
        conn,
        &StatusChangeRow {
            order_id: order.id,
            version: order.version,
            from_status: from,
            to_status: order.status,
            reason: reason.clone(),
            actor_id: actor.as_ref().map(|a| a.user_id.clone()),
            actor_role: actor.as_ref().map(|a| a.role.as_str().to_owned()),
            at: order.updated_at,
        },
    )
    .await?;
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
    let events: Vec<Event> = also.into_iter().chain([changed]).collect();
    db::outbox::enqueue(conn, &events).await
}
