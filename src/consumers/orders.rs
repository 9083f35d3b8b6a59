//! The orders consumer: requested status changes are checked again and applied (restoring stock
//! when a deducted order is cancelled) or refused.

use crate::domain::events::{Event, EventBody};
use crate::kafka::consume::{HandleError, Handler};
use crate::service::applying::apply_requested_change;
use sqlx::PgPool;

pub struct OrdersHandler {
    pub pool: PgPool,
}

impl Handler for OrdersHandler {
    async fn handle(&self, event: Event) -> Result<(), HandleError> {
        match &event.body {
            EventBody::StatusChangeRequested(request) => {
                apply_requested_change(&self.pool, event.event_id, event.order_id, request).await?;
                Ok(())
            }
            other => Err(HandleError::Poison(format!(
                "{} does not belong on the orders topic",
                other.type_name()
            ))),
        }
    }
}
