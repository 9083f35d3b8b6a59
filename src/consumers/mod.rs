//! The Kafka consumers: each turns one message into one database transaction through
//! [`service::applying`](crate::service::applying).
//!
//! - [`inventory`]: group `<prefix>-inventory` on the `inventory` topic: the stock check.
//! - [`orders`]: group `<prefix>-orders` on the `orders` topic: requested status changes.
//! - [`inbox`]: prunes the inbox the two share of entries no redelivery can need.

pub mod inbox;
pub mod inventory;
pub mod orders;

use crate::db::Db;
use crate::kafka::consume::HandleError;
use crate::metrics::Metrics;
use crate::outbox::OutboxWaker;
use crate::service::applying::{Applied, ApplyError};

/// What a consumer's handler works with.
pub struct ConsumerParts {
    pub pool: Db,
    pub outbox: OutboxWaker,
    pub metrics: Metrics,
    /// Most events applied in one transaction.
    pub max_batch: usize,
}

/// The order a message names: its event's, else its key (order events are keyed by order id).
fn order_of(
    key: Option<&[u8]>,
    event: Option<&crate::domain::events::Event>,
) -> Option<uuid::Uuid> {
    event.map(|event| event.order_id).or_else(|| {
        key.and_then(|key| std::str::from_utf8(key).ok())
            .and_then(|key| key.parse().ok())
    })
}

/// Counts an applied status change by the status it reached, and a redelivered event by the
/// consumer that recognised it.
fn record_outcome(metrics: &Metrics, consumer: &str, applied: &Applied) {
    match applied {
        Applied::Changed(order) => metrics
            .status_changes
            .with_label_values(&[order.status.as_str()])
            .inc(),
        Applied::Duplicate => metrics
            .events_redelivered
            .with_label_values(&[consumer])
            .inc(),
        Applied::Moot { .. } | Applied::Refused { .. } => {}
    }
}

impl From<ApplyError> for HandleError {
    fn from(error: ApplyError) -> Self {
        match error {
            ApplyError::UnknownOrder(_) | ApplyError::Refused(_) => {
                HandleError::Poison(error.to_string())
            }
            ApplyError::Database(cause) => HandleError::Transient(cause.into()),
        }
    }
}
