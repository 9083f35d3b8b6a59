//! Relay's `Node`: every order and inventory item has an id unique across types, and
//! `node(id)` / `nodes(ids)` fetch any of them, so normalised client caches (Relay, Apollo) can
//! refetch what they hold. Order ids are the orders' UUIDs (as `order(id)` has always taken);
//! an inventory item's is `InventoryItem:<SKU>` (a SKU has no colon, so the two never meet).

use super::coalescing::CoalescingLoader;
use super::loaders::{ItemBySku, OrderById};
use super::types::{InventoryItem, Order};
use crate::auth::Viewer;
use crate::domain::order::check_sku;
use crate::error::{AppError, IntoGraphql};
use async_graphql::{Context, ErrorExtensions, Interface, ID};
use uuid::Uuid;

const ITEM_PREFIX: &str = "InventoryItem:";

/// An object with an id unique across types, which `node(id)` fetches again.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "Unique across every type of node."))]
pub enum Node {
    Order(Order),
    InventoryItem(InventoryItem),
}

/// The global id of the inventory item `sku`.
pub fn item_id(sku: &str) -> ID {
    ID(format!("{ITEM_PREFIX}{sku}"))
}

enum NodeId {
    Order(Uuid),
    InventoryItem(String),
}

fn parse(id: &ID) -> async_graphql::Result<NodeId> {
    if let Ok(order) = id.parse::<Uuid>() {
        return Ok(NodeId::Order(order));
    }
    match id.strip_prefix(ITEM_PREFIX) {
        Some(sku) if check_sku(sku).is_ok() => Ok(NodeId::InventoryItem(sku.to_owned())),
        _ => Err(AppError::BadUserInput(format!(
            "{:?} is not a node id (an order's UUID or InventoryItem:<SKU>)",
            id.as_str()
        ))
        .extend()),
    }
}

/// The node behind `id`, if it exists and `viewer` may see it (customers: their own orders).
pub async fn fetch(
    ctx: &Context<'_>,
    viewer: &Viewer,
    id: &ID,
) -> async_graphql::Result<Option<Node>> {
    Ok(match parse(id)? {
        NodeId::Order(id) => ctx
            .data_unchecked::<CoalescingLoader<_, OrderById>>()
            .load_one(id)
            .await
            .gql()?
            .filter(|order| viewer.may_see_order_of(&order.user_id))
            .map(|order| Node::Order(Order::from(order))),
        NodeId::InventoryItem(sku) => ctx
            .data_unchecked::<CoalescingLoader<_, ItemBySku>>()
            .load_one(sku)
            .await
            .gql()?
            .map(|item| Node::InventoryItem(InventoryItem(item))),
    })
}
