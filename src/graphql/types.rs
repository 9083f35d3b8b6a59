//! GraphQL object types. Each wraps a database row; nested fields load through the instance's loaders.

use super::coalescing::CoalescingLoader;
use super::customers::Customer;
use super::loaders::{HistoryByOrder, ItemBySku, LinesByOrder, OrderById};
use super::viewer;
use crate::auth::Role;
use crate::db::inventory::InventoryItemRow;
use crate::db::orders::{OrderLineRow, OrderRow};
use crate::domain::events::{StockChangeReason, StockLevelChanged};
use crate::domain::order::MAX_LINES_PER_ORDER;
use crate::domain::status::OrderStatus;
use crate::error::IntoGraphql;
use crate::live::follow::StatusChange;
use async_graphql::{Context, ErrorExtensions, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// An order: lines of SKU x quantity, moving through the status machine.
pub struct Order {
    pub row: OrderRow,
    /// Its lines, when they were read with it (`order(id)` asking for them); otherwise `lines`
    /// reads them through the instance's loader.
    lines: Option<Vec<OrderLineRow>>,
}

impl From<OrderRow> for Order {
    fn from(row: OrderRow) -> Self {
        Order { row, lines: None }
    }
}

impl Order {
    /// An order whose lines were read with it.
    pub fn with_lines(row: OrderRow, lines: Vec<OrderLineRow>) -> Self {
        Order {
            row,
            lines: Some(lines),
        }
    }
}

#[Object]
impl Order {
    /// The order's UUID: unique across types, as `order(id)` and `node(id)` take it.
    pub async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    /// The customer who placed it.
    async fn user_id(&self) -> ID {
        ID(self.row.user_id.clone())
    }

    /// The customer who placed it, with their profile (each field null while unknown). Null
    /// only where oms has no record of them, which an order placed through this API never lacks.
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        super::customers::load(ctx, &self.row.user_id).await
    }

    async fn status(&self) -> OrderStatus {
        self.row.status
    }

    // Counted as the most lines an order can have, so a page of orders with their lines costs
    // what it may return.
    #[graphql(complexity = "MAX_LINES_PER_ORDER * child_complexity + 1")]
    async fn lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderLine>> {
        let lines = match &self.lines {
            Some(lines) => lines.clone(),
            None => ctx
                .data_unchecked::<CoalescingLoader<_, LinesByOrder>>()
                .load_one(self.row.id)
                .await
                .gql()?
                .unwrap_or_default(),
        };
        Ok(lines.into_iter().map(OrderLine).collect())
    }

    /// Why the inventory check rejected it (each line that could not be filled).
    async fn rejection_reason(&self) -> Option<&str> {
        self.row.rejection_reason.as_deref()
    }

    /// Counts the order's status changes: 1 when placed. Subscribers use it to spot gaps.
    async fn version(&self) -> i32 {
        self.row.version
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }

    /// What the order costs: its lines at the prices they were placed at. Never changes once
    /// placed; null when an item had no price then.
    async fn total(&self) -> Option<Money> {
        Money::of(self.row.total_amount, self.row.total_currency.as_deref())
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }

    /// Every status the order has had, oldest first (versions 1, 2, 3, ...).
    // No status comes twice (the machine has no cycle), so a history is never longer than the
    // list of statuses; it is counted as that long.
    #[graphql(complexity = "OrderStatus::ALL.len() * child_complexity + 1")]
    async fn history(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderStatusChange>> {
        let history = ctx
            .data_unchecked::<CoalescingLoader<_, HistoryByOrder>>()
            .load_one(self.row.id)
            .await
            .gql()?
            .unwrap_or_default();
        Ok(history
            .into_iter()
            .map(|row| OrderStatusChange(StatusChange::from_history(row)))
            .collect())
    }
}

pub struct OrderLine(pub OrderLineRow);

#[Object]
impl OrderLine {
    async fn sku(&self) -> &str {
        &self.0.sku
    }

    async fn quantity(&self) -> i32 {
        self.0.quantity
    }

    /// The item's price when the order was placed (null if it had none).
    async fn unit_price(&self) -> Option<Money> {
        Money::of(
            self.0.unit_price_amount,
            self.0.unit_price_currency.as_deref(),
        )
    }

    /// The inventory item as it is now.
    async fn item(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<InventoryItem>> {
        Ok(ctx
            .data_unchecked::<CoalescingLoader<_, ItemBySku>>()
            .load_one(self.0.sku.clone())
            .await
            .gql()?
            .map(InventoryItem))
    }
}

pub struct InventoryItem(pub InventoryItemRow);

#[Object]
impl InventoryItem {
    /// The item's id, unique across types (`InventoryItem:<SKU>`), for client caches and
    /// `node(id)`.
    pub async fn id(&self) -> ID {
        super::node::item_id(&self.0.sku)
    }

    async fn sku(&self) -> &str {
        &self.0.sku
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Units in stock now.
    async fn quantity(&self) -> i32 {
        self.0.quantity
    }

    /// At or below this quantity the item counts as low on stock.
    async fn low_stock_threshold(&self) -> i32 {
        self.0.low_stock_threshold
    }

    /// Whether the quantity is at or below the low-stock threshold.
    async fn low_stock(&self) -> bool {
        self.0.is_low_stock()
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// Retired by staff: kept in every order that names it, but no new order may.
    async fn retired(&self) -> bool {
        self.0.retired_at.is_some()
    }

    /// When it was retired, if it is.
    async fn retired_at(&self) -> Option<DateTime<Utc>> {
        self.0.retired_at
    }

    /// Its price now (orders keep the price they were placed at).
    async fn price(&self) -> Option<Money> {
        Money::of(self.0.price_amount, self.0.price_currency.as_deref())
    }
}

/// An amount of money: `amount` in minor units of `currency` (an ISO 4217 code).
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct Money {
    pub amount: i32,
    pub currency: String,
}

impl Money {
    /// From stored columns; amounts are kept within Int's range by the database's checks.
    fn of(amount: Option<i64>, currency: Option<&str>) -> Option<Money> {
        Some(Money {
            amount: i32::try_from(amount?).ok()?,
            currency: currency?.to_owned(),
        })
    }
}

/// Which inventory items to list.
#[derive(InputObject, Clone, Debug, Default)]
pub struct InventoryItemFilter {
    /// Only items at or below their low-stock threshold.
    #[graphql(default)]
    pub low_stock: bool,
    /// Items whose SKU or name starts with this text, ignoring case (1 to 64 characters).
    pub search: Option<String>,
    /// Retired items too (left out otherwise).
    #[graphql(default)]
    pub include_retired: bool,
}

/// The longest search text: as long as a SKU.
const MAX_SEARCH_LEN: usize = 64;

impl InventoryItemFilter {
    pub fn into_query(self) -> async_graphql::Result<crate::db::inventory::ItemFilter> {
        if let Some(search) = &self.search {
            let length = search.chars().count();
            if length == 0 || length > MAX_SEARCH_LEN {
                return Err(crate::error::AppError::BadUserInput(format!(
                    "search must be 1 to {MAX_SEARCH_LEN} characters, got {length}"
                ))
                .extend());
            }
        }
        Ok(crate::db::inventory::ItemFilter {
            low_stock: self.low_stock,
            include_retired: self.include_retired,
            search: self.search,
        })
    }
}

pub use crate::live::follow::ChangeOutcome;

/// A status change of an order, as kept in its history and pushed to subscribers.
pub struct OrderStatusChange(pub StatusChange);

/// Who asked for a status change.
#[derive(SimpleObject, Clone, Debug)]
pub struct ChangedBy {
    /// The person's user id: shown to staff and to the person themselves, null otherwise.
    pub user_id: Option<ID>,
    pub role: Role,
}

/// A status change of an order, as kept in its history and pushed to subscribers.
#[Object]
impl OrderStatusChange {
    async fn order_id(&self) -> ID {
        ID(self.0.order_id.to_string())
    }

    /// The status before; absent for the first entry (the order was placed).
    async fn from(&self) -> Option<OrderStatus> {
        self.0.from
    }

    /// The status after (for a refusal: the status the order keeps).
    async fn to(&self) -> OrderStatus {
        self.0.to
    }

    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }

    /// The order's version after the change (unchanged for a refusal).
    async fn version(&self) -> i32 {
        self.0.version
    }

    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }

    async fn outcome(&self) -> ChangeOutcome {
        self.0.outcome
    }

    /// For a refusal: the status that was asked for.
    async fn requested_status(&self) -> Option<OrderStatus> {
        self.0.requested_status
    }

    /// Who asked for the change; null when the inventory check decided it.
    async fn changed_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ChangedBy>> {
        let viewer = viewer(ctx)?;
        Ok(self.0.actor.as_ref().map(|actor| ChangedBy {
            user_id: (viewer.is_staff() || viewer.user_id == actor.user_id)
                .then(|| ID(actor.user_id.clone())),
            role: actor.role,
        }))
    }

    /// The order as it is now.
    async fn order(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Order>> {
        let viewer = viewer(ctx)?;
        let order = ctx
            .data_unchecked::<CoalescingLoader<_, OrderById>>()
            .load_one(self.0.order_id)
            .await
            .gql()?;
        Ok(order
            .filter(|order| viewer.may_see_order_of(&order.user_id))
            .map(Order::from))
    }
}

/// An inventory item's stock level changed (or staff set the item), pushed to staff live.
pub struct InventoryChange(pub Arc<StockLevelChanged>);

#[Object]
impl InventoryChange {
    async fn sku(&self) -> &str {
        &self.0.sku
    }

    /// Whether the item is retired after this change (no new order may name it).
    async fn retired(&self) -> bool {
        self.0.retired
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Units in stock after the change.
    async fn quantity(&self) -> i32 {
        self.0.quantity
    }

    /// How much the quantity moved: negative when stock was deducted, 0 when only the name or
    /// the threshold changed.
    async fn delta(&self) -> i32 {
        self.0.delta
    }

    async fn low_stock_threshold(&self) -> i32 {
        self.0.low_stock_threshold
    }

    /// Whether the item is now at or below its low-stock threshold.
    async fn low_stock(&self) -> bool {
        self.0.is_low_stock()
    }

    /// Whether this change took the item from above its threshold to at or below it.
    async fn became_low_stock(&self) -> bool {
        self.0.became_low_stock()
    }

    async fn reason(&self) -> StockChangeReason {
        self.0.reason
    }

    /// The order whose confirmation or cancellation moved the stock.
    async fn order_id(&self) -> Option<ID> {
        self.0.order_id.map(|id| ID(id.to_string()))
    }

    /// Counts the item's changes; a client that reconnects can tell what it has seen.
    async fn version(&self) -> i32 {
        self.0.version
    }

    async fn at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }

    /// The item as it is now.
    async fn item(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<InventoryItem>> {
        Ok(ctx
            .data_unchecked::<CoalescingLoader<_, ItemBySku>>()
            .load_one(self.0.sku.clone())
            .await
            .gql()?
            .map(InventoryItem))
    }
}
