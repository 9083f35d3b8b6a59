//! Business failures that a client can act on. They travel in a mutation's payload
//! (`userErrors { field code message }`), never as top-level GraphQL errors.

use async_graphql::{Enum, SimpleObject};

/// A stable, machine-readable reason; clients switch on it, people read the message.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum UserErrorCode {
    /// The order has no lines.
    EmptyOrder,
    /// More lines than one order may hold.
    TooManyLines,
    /// A quantity is zero, negative or above the maximum.
    InvalidQuantity,
    /// A SKU is empty, too long or has characters outside `A-Z a-z 0-9 . _ -`.
    InvalidSku,
    /// The same SKU appears on two lines.
    DuplicateSku,
    /// No inventory item has that SKU.
    UnknownSku,
    /// The inventory item is retired: no new order may name it.
    ItemRetired,
    /// The order's items are priced in more than one currency.
    CurrencyMismatch,
    /// The order's total does not fit in 2147483647 minor units.
    TotalTooLarge,
    /// A price's amount is negative or its currency is not an ISO 4217 code.
    InvalidPrice,
    /// An idempotency key is empty or too long.
    InvalidIdempotencyKey,
    /// The idempotency key was already used for an order with other lines.
    IdempotencyKeyReused,
    /// No order with that id is visible to the caller.
    OrderNotFound,
    /// The status machine does not allow that change from the order's current status.
    InvalidTransition,
    /// The caller's role may not make that change (customers may only cancel).
    NotPermitted,
    /// A free-text reason is too long or has control characters.
    InvalidReason,
    /// A name (an inventory item's or a customer's) is empty, too long or not clean text.
    InvalidName,
    /// A low-stock threshold is negative or above the maximum.
    InvalidThreshold,
    /// The id is not a valid order id.
    InvalidId,
    /// An email address is not of the form name@example.com.
    InvalidEmail,
    /// A phone number is not 10 digits.
    InvalidPhone,
    /// Another customer has that email address.
    EmailTaken,
    /// Another customer has that phone number.
    PhoneTaken,
    /// No customer has that id.
    CustomerNotFound,
}

/// One problem with a mutation's input.
#[derive(SimpleObject, Clone, Debug, Eq, PartialEq)]
pub struct UserError {
    /// Path to the input field at fault, e.g. `["items", "2", "quantity"]`.
    pub field: Option<Vec<String>>,
    pub code: UserErrorCode,
    pub message: String,
}

impl UserError {
    pub fn new<P: ToString>(
        field: impl IntoIterator<Item = P>,
        code: UserErrorCode,
        message: impl Into<String>,
    ) -> Self {
        let field: Vec<String> = field.into_iter().map(|p| p.to_string()).collect();
        UserError {
            field: (!field.is_empty()).then_some(field),
            code,
            message: message.into(),
        }
    }
}
