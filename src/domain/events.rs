//! The events oms writes to Kafka, exactly as they appear on the wire (JSON, camelCase).
//! `docs/events.md` documents them for other consumers.
//!
//! Every event is keyed by its order id, so one order's events stay in order within a partition.

use super::role::Role;
use super::status::OrderStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope layout this build writes and reads. An event with a higher `schemaVersion` comes
/// from a newer producer and is not guessed at.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// The logical streams; the Kafka topic names behind them are configurable.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Hash)]
pub enum Stream {
    /// Orders waiting for the inventory check.
    Inventory,
    /// Requested status changes, applied by the orders consumer.
    Orders,
    /// Applied (or refused) status changes, read by every instance for live subscriptions.
    OrderStatus,
    /// Stock level changes ([`StockLevelChanged`], keyed by SKU), read by every instance for
    /// live inventory subscriptions.
    StockLevels,
}

impl Stream {
    pub const ALL: [Stream; 4] = [
        Stream::Inventory,
        Stream::Orders,
        Stream::OrderStatus,
        Stream::StockLevels,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Inventory => "inventory",
            Stream::Orders => "orders",
            Stream::OrderStatus => "order-status",
            Stream::StockLevels => "stock-levels",
        }
    }

    pub fn parse(name: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique per event; consumers use it to apply each event at most once.
    pub event_id: Uuid,
    pub schema_version: u32,
    pub order_id: Uuid,
    /// The order's version this event speaks of: the new version for an applied change, the
    /// version the request was checked against otherwise.
    pub version: i32,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", content = "data")]
pub enum EventBody {
    OrderPlaced(OrderPlaced),
    StatusChangeRequested(StatusChangeRequested),
    OrderStatusChanged(OrderStatusChanged),
    StatusChangeRefused(StatusChangeRefused),
}

/// The person behind a change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub user_id: String,
    pub role: Role,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    pub sku: String,
    pub quantity: i32,
}

/// A new PENDING order, for the inventory check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub user_id: String,
    pub lines: Vec<EventLine>,
}

/// Someone asked for a status change; the orders consumer checks it again and applies it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusChangeRequested {
    pub to: OrderStatus,
    pub reason: Option<String>,
    pub requested_by: Actor,
}

/// An order's status changed (`from` is absent when the order was just placed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatusChanged {
    /// The order's owner, so that subscriptions can filter without a database read.
    pub user_id: String,
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub reason: Option<String>,
    /// Absent when the inventory check made the change.
    pub changed_by: Option<Actor>,
}

/// A requested change could not be applied when its turn came (the order had moved on).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusChangeRefused {
    pub user_id: String,
    pub requested: OrderStatus,
    pub current: OrderStatus,
    pub message: String,
    pub requested_by: Actor,
}

impl EventBody {
    /// The stream an event of this kind travels on.
    pub fn stream(&self) -> Stream {
        match self {
            EventBody::OrderPlaced(_) => Stream::Inventory,
            EventBody::StatusChangeRequested(_) => Stream::Orders,
            EventBody::OrderStatusChanged(_) | EventBody::StatusChangeRefused(_) => {
                Stream::OrderStatus
            }
        }
    }

    /// The customer whose order the event is about, where the event says.
    pub fn order_owner(&self) -> Option<&str> {
        match self {
            EventBody::OrderPlaced(placed) => Some(&placed.user_id),
            EventBody::OrderStatusChanged(changed) => Some(&changed.user_id),
            EventBody::StatusChangeRefused(refused) => Some(&refused.user_id),
            EventBody::StatusChangeRequested(_) => None,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::OrderPlaced(_) => "OrderPlaced",
            EventBody::StatusChangeRequested(_) => "StatusChangeRequested",
            EventBody::OrderStatusChanged(_) => "OrderStatusChanged",
            EventBody::StatusChangeRefused(_) => "StatusChangeRefused",
        }
    }
}

impl Event {
    /// A new event about `order_id` at `version`, stamped now.
    pub fn new(order_id: Uuid, version: i32, body: EventBody) -> Self {
        Event {
            event_id: Uuid::now_v7(),
            schema_version: EVENT_SCHEMA_VERSION,
            order_id,
            version,
            occurred_at: Utc::now(),
            body,
        }
    }
}

/// Why an item's stock level changed.
#[derive(Serialize, Deserialize, Copy, Clone, Debug, PartialEq, Eq, Hash, async_graphql::Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StockChangeReason {
    /// Staff set the item (its quantity, name or low-stock threshold).
    StockSet,
    /// An order was confirmed and its lines deducted.
    OrderConfirmed,
    /// A confirmed order was cancelled and its lines restored.
    OrderCancelled,
    /// Staff retired the item: no new order may name it; its stock stays as it is.
    ItemRetired,
}

/// An inventory item changed: its stock level after the change, and why. Travels on its own
/// stream, keyed by SKU; `version` counts the item's changes, so a repeated or stale event is
/// recognised by it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StockLevelChanged {
    pub event_id: Uuid,
    pub schema_version: u32,
    pub sku: String,
    pub version: i32,
    pub name: String,
    pub quantity: i32,
    /// How much the quantity moved (0 when only the name or threshold changed).
    pub delta: i32,
    pub low_stock_threshold: i32,
    /// Whether the item was low on stock before this change.
    pub was_low_stock: bool,
    pub reason: StockChangeReason,
    /// The order that moved the stock, if an order did.
    pub order_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// Whether the item is retired after this change (absent in events of earlier builds:
    /// false).
    #[serde(default)]
    pub retired: bool,
}

impl StockLevelChanged {
    /// Low on stock: at or below the item's threshold (the `lowStock` of an inventory item).
    pub fn is_low_stock(&self) -> bool {
        super::order::is_low_stock(self.quantity, self.low_stock_threshold)
    }

    /// Whether this change took the item from above its threshold to at or below it.
    pub fn became_low_stock(&self) -> bool {
        self.is_low_stock() && !self.was_low_stock
    }
}

/// Why a Kafka payload is not an event this build can apply. Such a message is set aside in the
/// topic's dead-letter queue rather than retried.
#[derive(Debug, thiserror::Error)]
pub enum UndecodableEvent {
    #[error("payload is not a JSON event: {0}")]
    NotAnEvent(#[from] serde_json::Error),
    #[error(
        "event schema version {0} is newer than this build understands ({EVENT_SCHEMA_VERSION})"
    )]
    FromTheFuture(u32),
    #[error("the message has no payload")]
    Empty,
}

/// Decodes a Kafka payload into an [`Event`], refusing unknown layouts.
pub fn decode(payload: Option<&[u8]>) -> Result<Event, UndecodableEvent> {
    decode_any(payload)
}

/// Decodes a `stock-levels` payload, refusing unknown layouts.
pub fn decode_stock_level(payload: Option<&[u8]>) -> Result<StockLevelChanged, UndecodableEvent> {
    decode_any(payload)
}

fn decode_any<T: serde::de::DeserializeOwned>(
    payload: Option<&[u8]>,
) -> Result<T, UndecodableEvent> {
    let payload = payload.ok_or(UndecodableEvent::Empty)?;
    // Look at the schema version first, so a future layout is named as such rather than as
    // a parse error on some field it changed.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        schema_version: u32,
    }
    let head: Head = serde_json::from_slice(payload)?;
    if head.schema_version > EVENT_SCHEMA_VERSION {
        return Err(UndecodableEvent::FromTheFuture(head.schema_version));
    }
    Ok(serde_json::from_slice(payload)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_trips_through_its_wire_form() {
        let event = Event::new(
            Uuid::now_v7(),
            1,
            EventBody::OrderPlaced(OrderPlaced {
                user_id: "alice".into(),
                lines: vec![EventLine {
                    sku: "A".into(),
                    quantity: 2,
                }],
            }),
        );
        let wire = serde_json::to_vec(&event).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        assert_eq!(json["type"], "OrderPlaced");
        assert_eq!(json["data"]["lines"][0]["sku"], "A");
        assert_eq!(json["schemaVersion"], 1);
        assert_eq!(decode(Some(&wire)).unwrap(), event);
    }

    #[test]
    fn a_stock_change_says_when_it_crosses_the_low_stock_threshold() {
        let change = |quantity, was_low_stock| StockLevelChanged {
            event_id: Uuid::now_v7(),
            schema_version: EVENT_SCHEMA_VERSION,
            sku: "A".into(),
            version: 2,
            name: "A thing".into(),
            quantity,
            delta: -1,
            low_stock_threshold: 5,
            was_low_stock,
            reason: StockChangeReason::OrderConfirmed,
            order_id: Some(Uuid::now_v7()),
            occurred_at: Utc::now(),
            retired: false,
        };
        assert!(
            change(5, false).became_low_stock(),
            "at the threshold is low"
        );
        assert!(!change(4, true).became_low_stock(), "already low before");
        assert!(change(4, true).is_low_stock());
        assert!(!change(6, false).is_low_stock());
        let event = change(3, false);
        let wire = serde_json::to_vec(&event).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        assert_eq!(json["reason"], "ORDER_CONFIRMED");
        assert_eq!(json["lowStockThreshold"], 5);
        assert_eq!(json["wasLowStock"], false);
        assert_eq!(decode_stock_level(Some(&wire)).unwrap(), event);
    }

    #[test]
    fn payloads_that_are_not_events_are_named_as_such() {
        assert!(matches!(
            decode(Some(b"not json")),
            Err(UndecodableEvent::NotAnEvent(_))
        ));
        assert!(matches!(decode(None), Err(UndecodableEvent::Empty)));
        let unknown_type = br#"{"eventId":"0190c0c0-0000-7000-8000-000000000000","schemaVersion":1,"orderId":"0190c0c0-0000-7000-8000-000000000000","version":1,"occurredAt":"2026-01-01T00:00:00Z","type":"OrderTeleported","data":{}}"#;
        assert!(matches!(
            decode(Some(unknown_type)),
            Err(UndecodableEvent::NotAnEvent(_))
        ));
        assert!(matches!(
            decode(Some(br#"{"schemaVersion":99,"type":"Whatever"}"#)),
            Err(UndecodableEvent::FromTheFuture(99))
        ));
    }
}
