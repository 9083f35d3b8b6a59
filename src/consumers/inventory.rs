//! The inventory consumer: a placed order is checked against stock and confirmed or rejected.

use super::ConsumerParts;
use super::{order_of, record_outcome};
use crate::domain::events::{Event, EventBody};
use crate::kafka::consume::{HandleError, Handler};
use crate::service::applying::{
    apply_inventory_check, apply_inventory_checks, reject_set_aside_placement, INVENTORY_CONSUMER,
};

/// Checks placed orders against stock: the inventory consumer's handler.
pub struct InventoryHandler(ConsumerParts);

impl From<ConsumerParts> for InventoryHandler {
    fn from(parts: ConsumerParts) -> Self {
        InventoryHandler(parts)
    }
}

impl std::ops::Deref for InventoryHandler {
    type Target = ConsumerParts;

    fn deref(&self) -> &ConsumerParts {
        &self.0
    }
}

impl Handler for InventoryHandler {
    async fn handle(&self, event: Event) -> Result<(), HandleError> {
        match event.body {
            EventBody::OrderPlaced(_) => {
                let applied =
                    apply_inventory_check(&self.pool, &self.outbox, event.event_id, event.order_id)
                        .await?;
                record_outcome(&self.metrics, INVENTORY_CONSUMER, &applied);
                Ok(())
            }
            other => Err(misplaced(&other)),
        }
    }

    /// A placement set aside leaves its order REJECTED, never PENDING for ever.
    async fn set_aside(&self, key: Option<&[u8]>, event: Option<&Event>) -> anyhow::Result<()> {
        if let Some(order_id) = order_of(key, event) {
            if reject_set_aside_placement(&self.pool, &self.outbox, order_id)
                .await?
                .is_some()
            {
                self.metrics
                    .status_changes
                    .with_label_values(&["REJECTED"])
                    .inc();
            }
        }
        Ok(())
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    async fn handle_batch(&self, events: &[Event]) -> Result<(), HandleError> {
        let mut checks = Vec::with_capacity(events.len());
        for event in events {
            match &event.body {
                EventBody::OrderPlaced(_) => checks.push((event.event_id, event.order_id)),
                other => return Err(misplaced(other)),
            }
        }
        for applied in apply_inventory_checks(&self.pool, &self.outbox, &checks).await? {
            record_outcome(&self.metrics, INVENTORY_CONSUMER, &applied);
        }
        Ok(())
    }
}

fn misplaced(body: &EventBody) -> HandleError {
    HandleError::Poison(format!(
        "{} does not belong on the inventory topic",
        body.type_name()
    ))
}
