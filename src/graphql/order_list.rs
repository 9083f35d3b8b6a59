//! Lists of orders as clients page through them: the filter and sort inputs, opaque cursors,
//! Relay pagination in both directions, `totalCount`, and counts by status. Who may list whose
//! orders is decided here, before any SQL (`db::order_listing`) runs.

use super::types::Order;
use crate::auth::Viewer;
use crate::db::order_listing::{self, OrderFilter, PageRequest, Position, SortTime, TimeRange};
use crate::db::Db;
use crate::domain::status::OrderStatus;
use crate::error::{AppError, IntoGraphql};
use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields, OpaqueCursor};
use async_graphql::{Context, Enum, ErrorExtensions, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which orders to list or count. Every field narrows the selection.
#[derive(InputObject, Clone, Debug, Default)]
#[graphql(name = "OrderFilter")]
pub struct OrderFilterInput {
    /// Orders in any of these statuses.
    pub statuses: Option<Vec<OrderStatus>>,
    /// One customer's orders. Staff only: customers always see just their own.
    pub user_id: Option<String>,
    /// Orders with a line of this SKU.
    pub sku: Option<String>,
    /// Placed at or after this time.
    pub created_from: Option<DateTime<Utc>>,
    /// Placed before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Last changed at or after this time.
    pub updated_from: Option<DateTime<Utc>>,
    /// Last changed before this time.
    pub updated_before: Option<DateTime<Utc>>,
}

/// What a list of orders is sorted by.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub enum OrderOrderField {
    /// When the order was placed.
    CreatedAt,
    /// When the order last changed.
    UpdatedAt,
}

/// Which way a list runs.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum OrderDirection {
    /// Earliest first.
    Asc,
    /// Latest first.
    Desc,
}

/// How a list of orders is sorted; orders with the same time are sorted by id.
#[derive(InputObject, Copy, Clone, Debug)]
pub struct OrderOrder {
    pub field: OrderOrderField,
    pub direction: OrderDirection,
}

impl Default for OrderOrder {
    /// Newest first.
    fn default() -> Self {
        OrderOrder {
            field: OrderOrderField::CreatedAt,
            direction: OrderDirection::Desc,
        }
    }
}

/// The page arguments of a list, as the client sent them.
pub struct PageArguments {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

impl PageArguments {
    pub fn new(
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Self {
        PageArguments {
            first,
            after,
            last,
            before,
        }
    }
}

/// The fields of an order connection beside its edges.
pub struct OrderConnectionFields {
    filter: OrderFilter,
}

#[Object]
impl OrderConnectionFields {
    /// How many orders the filter selects, on every page.
    async fn total_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        order_listing::count(ctx.data_unchecked::<Db>(), &self.filter)
            .await
            .gql()
    }
}

pub type OrderConnection = Connection<String, Order, OrderConnectionFields, EmptyFields>;

/// How many orders are in one status.
#[derive(SimpleObject, Clone, Debug)]
pub struct OrderStatusCount {
    pub status: OrderStatus,
    pub count: i64,
}

/// What a cursor holds: where its order sits in a list sorted by `sort`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
struct CursorData {
    sort: OrderOrderField,
    /// The sort time, in microseconds since the epoch (PostgreSQL's precision).
    at: i64,
    id: Uuid,
}

fn encode_cursor(sort: OrderOrderField, position: Position) -> String {
    OpaqueCursor(CursorData {
        sort,
        at: position.at.timestamp_micros(),
        id: position.id,
    })
    .encode_cursor()
}

fn bad_cursor(argument: &str, cursor: &str, why: &str) -> async_graphql::Error {
    AppError::BadUserInput(format!("{argument} {cursor:?} is not a cursor {why}")).extend()
}

/// Where the cursor `argument` points in a list sorted by `sort`. A bare order id (the cursors
/// of earlier versions) still works in lists sorted by creation.
async fn decode_cursor(
    db: &Db,
    argument: &str,
    cursor: &str,
    sort: OrderOrderField,
) -> async_graphql::Result<Position> {
    if let Ok(OpaqueCursor(data)) = OpaqueCursor::<CursorData>::decode_cursor(cursor) {
        if data.sort != sort {
            return Err(bad_cursor(argument, cursor, "of a list in this order"));
        }
        let at = DateTime::from_timestamp_micros(data.at)
            .ok_or_else(|| bad_cursor(argument, cursor, "from this list"))?;
        return Ok(Position { at, id: data.id });
    }
    let legacy = cursor
        .parse::<Uuid>()
        .ok()
        .filter(|_| sort == OrderOrderField::CreatedAt)
        .ok_or_else(|| bad_cursor(argument, cursor, "from this list"))?;
    let order = crate::db::orders::find(db, legacy)
        .await
        .gql()?
        .ok_or_else(|| bad_cursor(argument, cursor, "from this list"))?;
    Ok(Position::of(&order, SortTime::Created))
}

fn sort_time(field: OrderOrderField) -> SortTime {
    match field {
        OrderOrderField::CreatedAt => SortTime::Created,
        OrderOrderField::UpdatedAt => SortTime::Updated,
    }
}

/// The orders `filter` selects that `viewer` may see: customers only ever their own.
pub fn scoped_filter(
    viewer: &Viewer,
    filter: OrderFilterInput,
) -> async_graphql::Result<OrderFilter> {
    let user_id = match filter.user_id {
        Some(user_id) if viewer.is_staff() || user_id == viewer.user_id => Some(user_id),
        Some(_) => {
            return Err(AppError::Forbidden(
                "customers may list and count only their own orders".into(),
            )
            .extend())
        }
        None if viewer.is_staff() => None,
        None => Some(viewer.user_id.clone()),
    };
    Ok(OrderFilter {
        user_id,
        statuses: filter.statuses,
        sku: filter.sku,
        created: TimeRange {
            from: filter.created_from,
            before: filter.created_before,
        },
        updated: TimeRange {
            from: filter.updated_from,
            before: filter.updated_before,
        },
    })
}

/// One page of the orders `filter` selects (already scoped to the viewer), sorted by `order`.
pub async fn orders_page(
    ctx: &Context<'_>,
    filter: OrderFilter,
    order: OrderOrder,
    page: PageArguments,
) -> async_graphql::Result<OrderConnection> {
    let db = ctx.data_unchecked::<Db>();
    let (limit, from_end) = match (page.first, page.last) {
        (Some(_), Some(_)) => {
            return Err(AppError::BadUserInput(
                "ask for first (with after) or last (with before), not both".into(),
            )
            .extend())
        }
        (_, Some(last)) => (super::query::page_size(ctx, "last", Some(last))?, true),
        (first, None) => (super::query::page_size(ctx, "first", first)?, false),
    };
    let after = match page.after.as_deref() {
        Some(cursor) => Some(decode_cursor(db, "after", cursor, order.field).await?),
        None => None,
    };
    let before = match page.before.as_deref() {
        Some(cursor) => Some(decode_cursor(db, "before", cursor, order.field).await?),
        None => None,
    };
    let sort = sort_time(order.field);
    let request = PageRequest {
        sort,
        descending: order.direction == OrderDirection::Desc,
        after,
        before,
        limit: limit as i64 + 1,
        from_end,
    };
    let mut rows = order_listing::page(db, &filter, &request).await.gql()?;
    // The extra row only tells that there is more beyond this page.
    let more = rows.len() > limit;
    if more {
        if from_end {
            rows.remove(0);
        } else {
            rows.pop();
        }
    }
    let (has_previous, has_next) = if from_end {
        (more, before.is_some())
    } else {
        (after.is_some(), more)
    };
    let mut connection = Connection::with_additional_fields(
        has_previous,
        has_next,
        OrderConnectionFields { filter },
    );
    connection.edges.extend(rows.into_iter().map(|row| {
        Edge::new(
            encode_cursor(order.field, Position::of(&row, sort)),
            Order::from(row),
        )
    }));
    Ok(connection)
}

/// How many orders `filter` (already scoped to the viewer) selects in each status, every status
/// listed, in the order of an order's life.
pub async fn order_counts(
    ctx: &Context<'_>,
    filter: &OrderFilter,
) -> async_graphql::Result<Vec<OrderStatusCount>> {
    let counted = order_listing::count_by_status(ctx.data_unchecked::<Db>(), filter)
        .await
        .gql()?;
    Ok(OrderStatus::ALL
        .into_iter()
        .map(|status| OrderStatusCount {
            status,
            count: counted
                .iter()
                .find(|(counted, _)| *counted == status)
                .map_or(0, |(_, count)| *count),
        })
        .collect())
}

/// The orders of `filter` that are the viewer's own, whatever their role.
pub fn own_filter(viewer: &Viewer, filter: OrderFilterInput) -> async_graphql::Result<OrderFilter> {
    if filter
        .user_id
        .as_ref()
        .is_some_and(|user_id| *user_id != viewer.user_id)
    {
        return Err(AppError::BadUserInput(
            "viewer lists your own orders; to list another customer's, staff use \
             orders(filter: {userId: ...})"
                .into(),
        )
        .extend());
    }
    let mut filter = scoped_filter(viewer, filter)?;
    filter.user_id = Some(viewer.user_id.clone());
    Ok(filter)
}
