//! Who may ask for which status change. Checked by the API before queueing and again by the
//! orders consumer before applying, from this one place.

use super::role::Role;
use super::status::OrderStatus;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotPermitted {
    #[error("customers may only cancel their orders, not set them {0}")]
    CustomersOnlyCancel(OrderStatus),
    #[error("customers may only change their own orders")]
    NotTheirOrder,
}

/// Staff may ask for any change; a customer may only cancel an order of their own.
pub fn may_request_status(
    role: Role,
    owns_order: bool,
    to: OrderStatus,
) -> Result<(), NotPermitted> {
    match role {
        Role::Staff => Ok(()),
        Role::Customer if !owns_order => Err(NotPermitted::NotTheirOrder),
        Role::Customer if to != OrderStatus::Cancelled => {
            Err(NotPermitted::CustomersOnlyCancel(to))
        }
        Role::Customer => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_may_only_cancel_their_own_orders_and_staff_may_ask_anything() {
        assert!(may_request_status(Role::Customer, true, OrderStatus::Cancelled).is_ok());
        assert_eq!(
            may_request_status(Role::Customer, true, OrderStatus::Received),
            Err(NotPermitted::CustomersOnlyCancel(OrderStatus::Received))
        );
        assert_eq!(
            may_request_status(Role::Customer, false, OrderStatus::Cancelled),
            Err(NotPermitted::NotTheirOrder)
        );
        assert!(may_request_status(Role::Staff, false, OrderStatus::Delivered).is_ok());
    }
}
