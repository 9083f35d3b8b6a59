//! The order status machine.
//!
//! ```text
//!             ┌──────────► REJECTED            (inventory check only; final)
//!  PENDING ───┼──────────► CONFIRMED ──► RECEIVED ──► OUT_FOR_DELIVERY ──► DELIVERED (final)
//!             │                │             │
//!             └──► CANCELLED ◄─┴─────────────┘  (final; from CONFIRMED or RECEIVED it restores stock)
//! ```
//!
//! A change to the status an order already has is a no-op. Every other rule is enforced here and
//! only here: the API checks a request against it before queueing, and the consumers check again
//! when they apply it, because the order may have moved in between.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where an order is in its life.
#[derive(async_graphql::Enum, Copy, Clone, Debug, Eq, PartialEq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Placed; waiting for the inventory check.
    Pending,
    /// Stock was deducted for every line.
    Confirmed,
    /// At least one line could not be filled; no stock moved. Final.
    Rejected,
    /// The warehouse has the order in hand.
    Received,
    /// On its way to the customer.
    OutForDelivery,
    /// Handed over. Final.
    Delivered,
    /// Cancelled; any deducted stock was restored. Final.
    Cancelled,
}

/// Who applies a status change: the inventory check, or a person through the API.
#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub enum ChangeOrigin {
    /// The inventory consumer deciding on a PENDING order.
    InventoryCheck,
    /// A person's request (`updateOrderStatus`), applied by the orders consumer.
    Request,
}

/// What applying a permitted change involves.
#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub enum Transition {
    /// The order already has that status: nothing to do.
    NoOp,
    /// Move to the new status.
    Apply {
        /// Stock deducted for this order must go back (a confirmed or received order is cancelled).
        restores_stock: bool,
    },
}

/// Why a change may not happen.
#[derive(Copy, Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum TransitionError {
    #[error("the order is {from} and that is final")]
    FromFinal { from: OrderStatus },
    #[error("{to} is decided by the inventory check, not requested")]
    ReservedForInventoryCheck { to: OrderStatus },
    #[error("an order that is {from} cannot become {to}")]
    NotAllowed { from: OrderStatus, to: OrderStatus },
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Rejected,
        OrderStatus::Received,
        OrderStatus::OutForDelivery,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    /// The name used in the database, in events and in GraphQL.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Rejected => "REJECTED",
            OrderStatus::Received => "RECEIVED",
            OrderStatus::OutForDelivery => "OUT_FOR_DELIVERY",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Rejected | OrderStatus::Delivered | OrderStatus::Cancelled
        )
    }

    /// Statuses in which the order's stock is deducted from inventory.
    pub fn holds_stock(self) -> bool {
        matches!(
            self,
            OrderStatus::Confirmed
                | OrderStatus::Received
                | OrderStatus::OutForDelivery
                | OrderStatus::Delivered
        )
    }

    /// Decides whether this order may move to `to` when `origin` asks.
    pub fn transition_to(
        self,
        to: OrderStatus,
        origin: ChangeOrigin,
    ) -> Result<Transition, TransitionError> {
        use OrderStatus::*;
        if self == to {
            return Ok(Transition::NoOp);
        }
        if self.is_final() {
            return Err(TransitionError::FromFinal { from: self });
        }
        let decided_by_inventory = matches!(to, Confirmed | Rejected);
        match origin {
            ChangeOrigin::Request if decided_by_inventory => {
                return Err(TransitionError::ReservedForInventoryCheck { to })
            }
            ChangeOrigin::InventoryCheck if !(decided_by_inventory && self == Pending) => {
                return Err(TransitionError::NotAllowed { from: self, to })
            }
            _ => {}
        }
        let allowed = matches!(
            (self, to),
            (Pending, Confirmed | Rejected | Cancelled)
                | (Confirmed, Received | Cancelled)
                | (Received, OutForDelivery | Cancelled)
                | (OutForDelivery, Delivered)
        );
        if !allowed {
            return Err(TransitionError::NotAllowed { from: self, to });
        }
        Ok(Transition::Apply {
            restores_stock: to == Cancelled && self.holds_stock(),
        })
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    fn requested(from: OrderStatus, to: OrderStatus) -> Result<Transition, TransitionError> {
        from.transition_to(to, ChangeOrigin::Request)
    }

    #[test]
    fn the_happy_path_moves_one_step_at_a_time() {
        let apply = Ok(Transition::Apply {
            restores_stock: false,
        });
        assert_eq!(
            Pending.transition_to(Confirmed, ChangeOrigin::InventoryCheck),
            apply
        );
        assert_eq!(requested(Confirmed, Received), apply);
        assert_eq!(requested(Received, OutForDelivery), apply);
        assert_eq!(requested(OutForDelivery, Delivered), apply);
    }

    #[test]
    fn cancelling_restores_stock_only_when_stock_was_deducted() {
        let restores = |from| match requested(from, Cancelled) {
            Ok(Transition::Apply { restores_stock }) => restores_stock,
            other => panic!("{from} -> CANCELLED gave {other:?}"),
        };
        assert!(!restores(Pending));
        assert!(restores(Confirmed));
        assert!(restores(Received));
    }

    #[test]
    fn out_for_delivery_can_no_longer_be_cancelled() {
        assert_eq!(
            requested(OutForDelivery, Cancelled),
            Err(TransitionError::NotAllowed {
                from: OutForDelivery,
                to: Cancelled
            })
        );
    }

    #[test]
    fn final_statuses_accept_no_change() {
        for from in [Rejected, Delivered, Cancelled] {
            for to in OrderStatus::ALL.into_iter().filter(|to| *to != from) {
                assert_eq!(
                    requested(from, to),
                    Err(TransitionError::FromFinal { from })
                );
            }
        }
    }

    #[test]
    fn only_the_inventory_check_confirms_or_rejects() {
        assert_eq!(
            requested(Pending, Confirmed),
            Err(TransitionError::ReservedForInventoryCheck { to: Confirmed })
        );
        assert_eq!(
            requested(Pending, Rejected),
            Err(TransitionError::ReservedForInventoryCheck { to: Rejected })
        );
        assert!(Confirmed
            .transition_to(Rejected, ChangeOrigin::InventoryCheck)
            .is_err());
        assert!(Pending
            .transition_to(Cancelled, ChangeOrigin::InventoryCheck)
            .is_err());
    }

    #[test]
    fn a_change_to_the_same_status_is_a_no_op() {
        for status in OrderStatus::ALL {
            assert_eq!(requested(status, status), Ok(Transition::NoOp));
        }
    }

    #[test]
    fn skipping_a_step_is_refused() {
        assert!(requested(Pending, Received).is_err());
        assert!(requested(Confirmed, Delivered).is_err());
        assert!(requested(Received, Confirmed).is_err());
    }

    #[test]
    fn status_names_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>().unwrap(), status);
        }
        assert!("SHIPPED".parse::<OrderStatus>().is_err());
    }
}
