//! Queries: orders (a customer sees their own, staff see all) and inventory.

use super::types::{InventoryItem, Order};
use super::{parse_order_id, viewer};
use crate::config::ApiLimits;
use crate::db;
use crate::db::orders::OrderFilter;
use crate::db::Db;
use crate::domain::order::check_sku;
use crate::domain::status::OrderStatus;
use crate::error::{AppError, IntoGraphql};
use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ErrorExtensions, Object, ID};

pub struct QueryRoot;

const DEFAULT_PAGE_SIZE: usize = 20;

/// What a field that makes a database round trip of its own counts toward the complexity, so
/// a document of many aliased lookups is bounded by its round trips rather than its size.
const DATABASE_READ_COST: usize = 10;

/// Checks `first` against the page size limit.
fn page_size(ctx: &Context<'_>, first: Option<i32>) -> async_graphql::Result<usize> {
    let max = ctx.data_unchecked::<ApiLimits>().max_page_size;
    match first {
        None => Ok(DEFAULT_PAGE_SIZE.min(max)),
        Some(n) if n >= 0 && n as usize <= max => Ok(n as usize),
        Some(n) => Err(AppError::BadUserInput(format!(
            "first must be between 0 and {max} (the maximum page size), got {n}"
        ))
        .extend()),
    }
}

/// A page from `limit + 1` fetched rows: the extra row only tells that there is a next page.
fn page<Row, Node: async_graphql::OutputType>(
    mut rows: Vec<Row>,
    limit: usize,
    has_previous: bool,
    edge: impl FnMut(Row) -> Edge<String, Node, async_graphql::connection::EmptyFields>,
) -> Connection<String, Node> {
    let has_next = rows.len() > limit;
    rows.truncate(limit);
    let mut connection = Connection::new(has_previous, has_next);
    connection.edges.extend(rows.into_iter().map(edge));
    connection
}

fn bad_cursor(after: &str) -> async_graphql::Error {
    AppError::BadUserInput(format!("after {after:?} is not a cursor from this list")).extend()
}

#[Object(name = "Query")]
impl QueryRoot {
    /// One order, if it exists and the caller may see it.
    #[graphql(complexity = "DATABASE_READ_COST + child_complexity")]
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Order>> {
        let viewer = viewer(ctx)?;
        let id = parse_order_id(&id)?;
        let order = db::orders::find(ctx.data_unchecked::<Db>(), id)
            .await
            .gql()?;
        Ok(order
            .filter(|order| viewer.may_see_order_of(&order.user_id))
            .map(Order))
    }

    /// Orders the caller may see, newest first.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity + 1")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<OrderStatus>,
    ) -> async_graphql::Result<Connection<String, Order>> {
        let viewer = viewer(ctx)?;
        let limit = page_size(ctx, first)?;
        let before_id = after
            .as_deref()
            .map(|cursor| cursor.parse().map_err(|_| bad_cursor(cursor)))
            .transpose()?;
        let filter = OrderFilter {
            user_id: (!viewer.is_staff()).then_some(viewer.user_id.as_str()),
            status,
            before_id,
        };
        let rows = db::orders::list(ctx.data_unchecked::<Db>(), &filter, limit as i64 + 1)
            .await
            .gql()?;
        Ok(page(rows, limit, after.is_some(), |row| {
            Edge::new(row.id.to_string(), Order(row))
        }))
    }

    /// One inventory item by SKU.
    #[graphql(complexity = "DATABASE_READ_COST + child_complexity")]
    async fn inventory_item(
        &self,
        ctx: &Context<'_>,
        sku: String,
    ) -> async_graphql::Result<Option<InventoryItem>> {
        viewer(ctx)?;
        check_sku(&sku).map_err(|problem| AppError::BadUserInput(problem).extend())?;
        let mut items = db::inventory::find_by_skus(ctx.data_unchecked::<Db>(), &[sku])
            .await
            .gql()?;
        Ok(items.pop().map(InventoryItem))
    }

    /// Inventory items ordered by SKU.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity + 1")]
    async fn inventory_items(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, InventoryItem>> {
        viewer(ctx)?;
        let limit = page_size(ctx, first)?;
        if let Some(cursor) = after.as_deref() {
            check_sku(cursor).map_err(|_| bad_cursor(cursor))?;
        }
        let rows = db::inventory::list(
            ctx.data_unchecked::<Db>(),
            after.as_deref(),
            limit as i64 + 1,
        )
        .await
        .gql()?;
        Ok(page(rows, limit, after.is_some(), |row| {
            Edge::new(row.sku.clone(), InventoryItem(row))
        }))
    }
}
