//! Listing and counting orders by filter, in either time order, a page at a time (keyset
//! pagination on the sort time and the id). Every filter is served by an index (migration 0005),
//! as `tests/api/order_listing.rs` checks in the plans PostgreSQL chooses.
//!
//! The SQL is assembled from the filters present (sqlx's `QueryBuilder`), so it cannot use the
//! compile-time checked macros; each shape is exercised by `tests/api/order_listing.rs`. Only
//! the predicates a request uses are sent, so each shape gets the plan of its own indexes rather
//! than one generic plan with `$n is null or ...` branches.

use super::orders::{OrderRow, ORDER_COLUMNS};
use crate::domain::status::OrderStatus;
use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

/// Which orders: every field narrows the list; `None` leaves it open.
#[derive(Clone, Debug, Default)]
pub struct OrderFilter {
    /// One customer's orders.
    pub user_id: Option<String>,
    /// Orders in any of these statuses (an empty list matches none).
    pub statuses: Option<Vec<OrderStatus>>,
    /// Orders with a line of this SKU.
    pub sku: Option<String>,
    pub created: TimeRange,
    pub updated: TimeRange,
}

/// From (inclusive) and before (exclusive).
#[derive(Clone, Copy, Debug, Default)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
}

/// The time orders are sorted by; the id breaks ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortTime {
    Created,
    Updated,
}

impl SortTime {
    fn column(self) -> &'static str {
        match self {
            SortTime::Created => "created_at",
            SortTime::Updated => "updated_at",
        }
    }
}

/// Where a row sits in a sorted list: its sort time and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl Position {
    pub fn of(row: &OrderRow, sort: SortTime) -> Position {
        let at = match sort {
            SortTime::Created => row.created_at,
            SortTime::Updated => row.updated_at,
        };
        Position { at, id: row.id }
    }
}

/// One page's worth: rows strictly between `after` and `before` in the list's order, the first
/// `limit` of them, or the last `limit` with `from_end`.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest {
    pub sort: SortTime,
    pub descending: bool,
    pub after: Option<Position>,
    pub before: Option<Position>,
    pub limit: i64,
    pub from_end: bool,
}

/// The rows of `page` among the orders `filter` selects, in the list's order.
pub async fn page(
    db: impl PgExecutor<'_>,
    filter: &OrderFilter,
    page: &PageRequest,
) -> sqlx::Result<Vec<OrderRow>> {
    let mut rows: Vec<OrderRow> = page_statement("", filter, page)
        .build_query_as()
        .fetch_all(db)
        .await?;
    if page.from_end {
        rows.reverse();
    }
    Ok(rows)
}

/// The plan PostgreSQL chooses for [`page`] (`EXPLAIN`, one line a row): which indexes serve a
/// filter, for operators and tests.
pub async fn explain_page(
    db: impl PgExecutor<'_>,
    filter: &OrderFilter,
    page: &PageRequest,
) -> sqlx::Result<Vec<String>> {
    page_statement("explain ", filter, page)
        .build_query_scalar()
        // Asked rarely (operators, tests): not worth a place in the connection's statement cache.
        .persistent(false)
        .fetch_all(db)
        .await
}

fn page_statement<'q>(
    prefix: &str,
    filter: &OrderFilter,
    page: &PageRequest,
) -> QueryBuilder<'q, Postgres> {
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("{prefix}select {ORDER_COLUMNS} from orders"));
    let mut conditions = Conditions::new(&mut sql);
    conditions.of(filter);
    let column = page.sort.column();
    // "after" in a descending list is an earlier time.
    let (after_op, before_op) = if page.descending {
        ("<", ">")
    } else {
        (">", "<")
    };
    for (position, op) in [(page.after, after_op), (page.before, before_op)] {
        if let Some(position) = position {
            let sql = conditions.next();
            sql.push(format_args!("({column}, id) {op} ("))
                .push_bind(position.at)
                .push(", ")
                .push_bind(position.id)
                .push(")");
        }
    }
    // The last rows of a list are read in the opposite order, then the page is turned around.
    let read_descending = page.descending != page.from_end;
    let direction = if read_descending { "desc" } else { "asc" };
    sql.push(format_args!(
        " order by {column} {direction}, id {direction} limit "
    ))
    .push_bind(page.limit);
    sql
}

/// How many orders `filter` selects.
pub async fn count(db: impl PgExecutor<'_>, filter: &OrderFilter) -> sqlx::Result<i64> {
    let mut sql = QueryBuilder::<Postgres>::new("select count(*) from orders");
    Conditions::new(&mut sql).of(filter);
    sql.build_query_scalar().fetch_one(db).await
}

/// How many orders `filter` selects, by status (statuses without orders left out).
pub async fn count_by_status(
    db: impl PgExecutor<'_>,
    filter: &OrderFilter,
) -> sqlx::Result<Vec<(OrderStatus, i64)>> {
    let mut sql = QueryBuilder::<Postgres>::new("select status, count(*) from orders");
    Conditions::new(&mut sql).of(filter);
    sql.push(" group by status");
    sql.build_query_as().fetch_all(db).await
}

/// Appends `where a and b and ...` to a statement, one condition at a time.
struct Conditions<'q, 's> {
    sql: &'s mut QueryBuilder<'q, Postgres>,
    any: bool,
}

impl<'q, 's> Conditions<'q, 's> {
    fn new(sql: &'s mut QueryBuilder<'q, Postgres>) -> Self {
        Conditions { sql, any: false }
    }

    /// The statement, ready for the next condition.
    fn next(&mut self) -> &mut QueryBuilder<'q, Postgres> {
        self.sql.push(if self.any { " and " } else { " where " });
        self.any = true;
        self.sql
    }

    fn of(&mut self, filter: &OrderFilter) {
        if let Some(user_id) = &filter.user_id {
            self.next().push("user_id = ").push_bind(user_id.clone());
        }
        match filter.statuses.as_deref() {
            None => {}
            // Equality lets the status index also give the order (`= any` of one does not).
            Some([status]) => {
                self.next().push("status = ").push_bind(status.as_str());
            }
            Some(statuses) => {
                let names: Vec<&'static str> =
                    statuses.iter().map(|status| status.as_str()).collect();
                self.next().push("status = any(").push_bind(names).push(")");
            }
        }
        if let Some(sku) = &filter.sku {
            self.next()
                .push("id in (select order_id from order_lines where sku = ")
                .push_bind(sku.clone())
                .push(")");
        }
        for (column, range) in [
            ("created_at", filter.created),
            ("updated_at", filter.updated),
        ] {
            if let Some(from) = range.from {
                self.next()
                    .push(format_args!("{column} >= "))
                    .push_bind(from);
            }
            if let Some(before) = range.before {
                self.next()
                    .push(format_args!("{column} < "))
                    .push_bind(before);
            }
        }
    }
}
