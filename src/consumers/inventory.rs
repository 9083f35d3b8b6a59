//! The inventory consumer: a placed order is checked against stock and confirmed or rejected.

use super::{order_of, record_outcome};
use crate::db::Db;
use crate::domain::events::{Event, EventBody};
use crate::kafka::consume::{HandleError, Handler};
use crate::metrics::Metrics;
use crate::outbox::OutboxWaker;
use crate::service::applying::{
    apply_inventory_check, apply_inventory_checks, reject_set_aside_placement, INVENTORY_CONSUMER,
};

pub struct InventoryHandler {
    pub pool: Db,
    pub outbox: OutboxWaker,
    pub metrics: Metrics,
    /// Most placed orders checked in one transaction.
    pub max_batch: usize,
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
