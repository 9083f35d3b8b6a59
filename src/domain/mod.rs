//! Pure types and rules of the order domain: no I/O lives here.
//!
//! - [`status`]: the order status machine, the one place that decides which change may follow which.
//! - [`order`]: validation of what a client asks for (order lines, SKUs, quantities, reasons).
//! - [`role`]: customer or staff.
//! - [`permissions`]: who may ask for which status change.
//! - [`customer`]: a customer's profile and the rules it keeps.
//! - [`events`]: the events that travel through Kafka, as they are written to the wire.
//! - [`user_error`]: a business failure a client can act on, with a stable code.

pub mod customer;
pub mod events;
pub mod order;
pub mod permissions;
pub mod role;
pub mod status;
pub mod user_error;
