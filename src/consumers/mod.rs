//! The Kafka consumers: each turns one message into one database transaction through
//! [`service::applying`](crate::service::applying).
//!
//! - [`inventory`]: group `<prefix>-inventory` on the `inventory` topic: the stock check.
//! - [`orders`]: group `<prefix>-orders` on the `orders` topic: requested status changes.

pub mod inventory;
pub mod orders;

use crate::kafka::consume::HandleError;
use crate::service::applying::ApplyError;

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
