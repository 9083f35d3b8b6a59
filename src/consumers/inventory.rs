//! The inventory consumer: a placed order is checked against stock and confirmed or rejected.

use super::record_outcome;
use crate::db::Db;
use crate::domain::events::{Event, EventBody};
use crate::kafka::consume::{HandleError, Handler};
use crate::metrics::Metrics;
use crate::outbox::OutboxWaker;
use crate::service::applying::apply_inventory_check;

pub struct InventoryHandler {
    pub pool: Db,
    pub outbox: OutboxWaker,
    pub metrics: Metrics,
}

impl Handler for InventoryHandler {
    async fn handle(&self, event: Event) -> Result<(), HandleError> {
        match event.body {
            EventBody::OrderPlaced(_) => {
                let applied =
                    apply_inventory_check(&self.pool, &self.outbox, event.event_id, event.order_id)
                        .await?;
                record_outcome(&self.metrics, &applied);
                Ok(())
            }
            other => Err(HandleError::Poison(format!(
                "{} does not belong on the inventory topic",
                other.type_name()
            ))),
        }
    }
}
