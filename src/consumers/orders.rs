//! The orders consumer: requested status changes are checked again and applied (restoring stock
//! when a deducted order is cancelled) or refused.

use super::record_outcome;
use super::ConsumerParts;
use crate::domain::events::{Event, EventBody};
use crate::kafka::consume::{HandleError, Handler};
use crate::service::applying::{
    apply_requested_change, apply_requested_changes, refuse_set_aside_request, ORDERS_CONSUMER,
};

/// Applies requested status changes: the orders consumer's handler.
pub struct OrdersHandler(ConsumerParts);

impl From<ConsumerParts> for OrdersHandler {
    fn from(parts: ConsumerParts) -> Self {
        OrdersHandler(parts)
    }
}

impl std::ops::Deref for OrdersHandler {
    type Target = ConsumerParts;

    fn deref(&self) -> &ConsumerParts {
        &self.0
    }
}

impl Handler for OrdersHandler {
    async fn handle(&self, event: Event) -> Result<(), HandleError> {
        match &event.body {
            EventBody::StatusChangeRequested(request) => {
                let applied = apply_requested_change(
                    &self.pool,
                    &self.outbox,
                    event.event_id,
                    event.order_id,
                    request,
                )
                .await?;
                record_outcome(&self.metrics, ORDERS_CONSUMER, &applied);
                Ok(())
            }
            other => Err(misplaced(other)),
        }
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn handle_batch(&self, events: &[Event]) -> Result<(), HandleError> {
        let mut requests = Vec::with_capacity(events.len());
        for event in events {
            match &event.body {
                EventBody::StatusChangeRequested(request) => {
                    requests.push((event.event_id, event.order_id, request))
                }
                other => return Err(misplaced(other)),
            }
        }
        for applied in apply_requested_changes(&self.pool, &self.outbox, &requests).await? {
            record_outcome(&self.metrics, ORDERS_CONSUMER, &applied);
        }
        Ok(())
    }

    /// A status request set aside is announced as refused, so its requester is not left with
    /// `accepted: true` and no outcome. (An undecodable request names no requester to tell.)
    async fn set_aside(&self, _key: Option<&[u8]>, event: Option<&Event>) -> anyhow::Result<()> {
        if let Some(event) = event {
            if let EventBody::StatusChangeRequested(request) = &event.body {
                refuse_set_aside_request(&self.pool, &self.outbox, event.order_id, request).await?;
            }
        }
        Ok(())
    }
}

fn misplaced(body: &EventBody) -> HandleError {
    HandleError::Poison(format!(
        "{} does not belong on the orders topic",
        body.type_name()
    ))
}
