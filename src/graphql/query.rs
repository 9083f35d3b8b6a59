//! Queries: orders (a customer sees their own, staff see all), their counts, the viewer, and
//! inventory.

use super::coalescing::CoalescingLoader;
use super::customers::{self, Customer, CustomerFilter};
use super::loaders::{OrderById, OrderWithLinesById};
use super::node::{self, Node};
use super::order_list::{
    self, OrderConnection, OrderFilterInput, OrderOrder, OrderStatusCount, PageArguments,
};
use super::types::{InventoryItem, InventoryItemFilter, Order};
use super::viewer_node::ViewerNode;
use super::{parse_order_id, staff_reader, viewer};
use crate::config::ApiLimits;
use crate::db;
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

/// Checks a page size (`argument`: first or last) against the limit.
pub(super) fn page_size(
    ctx: &Context<'_>,
    argument: &str,
    size: Option<i32>,
) -> async_graphql::Result<usize> {
    let max = ctx.data_unchecked::<ApiLimits>().max_page_size;
    match size {
        None => Ok(DEFAULT_PAGE_SIZE.min(max)),
        Some(n) if n >= 0 && n as usize <= max => Ok(n as usize),
        Some(n) => Err(AppError::BadUserInput(format!(
            "{argument} must be between 0 and {max} (the maximum page size), got {n}"
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
        // Through the instance's loaders: orders asked for by concurrent requests are read in
        // one statement (coalescing.rs), with their lines when the query asks for them (one
        // statement, not a second one after it); who may see it is still checked per request.
        let order = if ctx.look_ahead().field("lines").exists() {
            ctx.data_unchecked::<CoalescingLoader<_, OrderWithLinesById>>()
                .load_one(id)
                .await
                .gql()?
                .map(|(row, lines)| Order::with_lines(row, lines))
        } else {
            ctx.data_unchecked::<CoalescingLoader<_, OrderById>>()
                .load_one(id)
                .await
                .gql()?
                .map(Order::from)
        };
        Ok(order.filter(|order| viewer.may_see_order_of(&order.row.user_id)))
    }

    /// Orders the caller may see (customers: their own), newest first unless `orderBy` says
    /// otherwise. Page forward with `first` and `after`, backward with `last` and `before`.
    #[graphql(
        complexity = "first.or(last).unwrap_or(20).max(0) as usize * child_complexity + DATABASE_READ_COST"
    )]
    // Each GraphQL argument is a parameter: Relay's four page arguments, a filter and a sort.
    #[allow(clippy::too_many_arguments)]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilterInput>,
        order_by: Option<OrderOrder>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(deprecation = "use filter: {statuses: [...]}")] status: Option<OrderStatus>,
    ) -> async_graphql::Result<OrderConnection> {
        let viewer = viewer(ctx)?;
        let mut filter = order_list::scoped_filter(viewer, filter.unwrap_or_default())?;
        if let Some(status) = status {
            filter.statuses = Some(match filter.statuses {
                Some(statuses) => statuses.into_iter().filter(|s| *s == status).collect(),
                None => vec![status],
            });
        }
        let page = PageArguments::new(first, after, last, before);
        order_list::orders_page(ctx, filter, order_by.unwrap_or_default(), page).await
    }

    /// How many orders the caller may see are in each status (customers: their own), every
    /// status listed.
    #[graphql(complexity = "DATABASE_READ_COST")]
    async fn order_counts(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilterInput>,
    ) -> async_graphql::Result<Vec<OrderStatusCount>> {
        let filter = order_list::scoped_filter(viewer(ctx)?, filter.unwrap_or_default())?;
        order_list::order_counts(ctx, &filter).await
    }

    /// Any order or inventory item by its id (Relay's refetch), if the caller may see it.
    #[graphql(complexity = "DATABASE_READ_COST + child_complexity")]
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        node::fetch(ctx, viewer(ctx)?, &id).await
    }

    /// Orders and inventory items by their ids, in the same order; null where one does not
    /// exist or the caller may not see it. Loaded together, one round trip per type.
    #[graphql(complexity = "ids.len() * child_complexity + DATABASE_READ_COST")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<Option<Node>>> {
        let viewer = viewer(ctx)?;
        let max = ctx.data_unchecked::<ApiLimits>().max_page_size;
        if ids.len() > max {
            return Err(AppError::BadUserInput(format!(
                "ask for at most {max} ids at once (the maximum page size), got {}",
                ids.len()
            ))
            .extend());
        }
        futures_util::future::try_join_all(ids.iter().map(|id| node::fetch(ctx, viewer, id))).await
    }

    /// One customer (staff; a customer may ask only for themselves), if oms knows them.
    #[graphql(complexity = "DATABASE_READ_COST + child_complexity")]
    async fn customer(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Customer>> {
        customers::customer(ctx, viewer(ctx)?, &id).await
    }

    /// Customers ordered by id (staff only): all, or those whose name, email or phone starts
    /// with a search text.
    #[graphql(
        complexity = "first.unwrap_or(20).max(0) as usize * child_complexity + DATABASE_READ_COST"
    )]
    async fn customers(
        &self,
        ctx: &Context<'_>,
        filter: Option<CustomerFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Customer>> {
        staff_reader(ctx)?;
        customers::customers(ctx, filter, first, after).await
    }

    /// Who is asking, and what is theirs.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<ViewerNode> {
        Ok(ViewerNode(viewer(ctx)?.clone()))
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

    /// Inventory items ordered by SKU: all, the low-stock ones, or those whose SKU or name
    /// starts with a search text.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity + 1")]
    async fn inventory_items(
        &self,
        ctx: &Context<'_>,
        filter: Option<InventoryItemFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, InventoryItem>> {
        viewer(ctx)?;
        let limit = page_size(ctx, "first", first)?;
        if let Some(cursor) = after.as_deref() {
            check_sku(cursor).map_err(|_| bad_cursor(cursor))?;
        }
        let filter = filter.unwrap_or_default().into_query()?;
        let rows = db::inventory::list(
            ctx.data_unchecked::<Db>(),
            &filter,
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
