//! Customers as the API shows them: a profile (name, email, phone) and their orders. Staff see
//! every customer; a customer sees only their own profile (under `viewer`, or on their orders).

use super::coalescing::CoalescingLoader;
use super::loaders::CustomerById;
use super::order_list::{
    self, OrderConnection, OrderFilterInput, OrderOrder, OrderStatusCount, PageArguments,
};
use super::query::page_size;
use crate::auth::Viewer;
use crate::db;
use crate::db::customers::CustomerRow;
use crate::db::Db;
use crate::domain::customer::ProfileChange;
use crate::error::{AppError, IntoGraphql};
use async_graphql::connection::{Connection, CursorType, Edge, OpaqueCursor};
use async_graphql::{
    Context, ErrorExtensions, InputObject, MaybeUndefined, Object, SimpleObject, ID,
};
use chrono::{DateTime, Utc};

/// The longest search text.
const MAX_SEARCH_LEN: usize = 100;

/// A customer: the user id their tokens carry, and their profile as their identity provider's
/// claims gave it or as they (or staff) set it. Each profile field is null while unknown.
pub struct Customer(pub CustomerRow);

#[Object]
impl Customer {
    /// The customer's user id, as their tokens name them (`Order.userId`).
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }

    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }

    /// 10 digits.
    async fn phone(&self) -> Option<&str> {
        self.0.phone.as_deref()
    }

    /// When oms first knew the customer.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// When the profile last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }

    /// The customer's orders, newest first unless `orderBy` says otherwise: the same list as
    /// `orders(filter: {userId: ...})`.
    #[graphql(complexity = "first.or(last).unwrap_or(20).max(0) as usize * child_complexity + 10")]
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
    ) -> async_graphql::Result<OrderConnection> {
        let filter = self.orders_filter(ctx, filter)?;
        let page = PageArguments::new(first, after, last, before);
        order_list::orders_page(ctx, filter, order_by.unwrap_or_default(), page).await
    }

    /// How many of the customer's orders are in each status, every status listed.
    #[graphql(complexity = "10")]
    async fn order_counts(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilterInput>,
    ) -> async_graphql::Result<Vec<OrderStatusCount>> {
        let filter = self.orders_filter(ctx, filter)?;
        order_list::order_counts(ctx, &filter).await
    }
}

impl Customer {
    /// `filter` narrowed to this customer's orders, as the viewer may list them.
    fn orders_filter(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilterInput>,
    ) -> async_graphql::Result<db::order_listing::OrderFilter> {
        let mut filter = filter.unwrap_or_default();
        if filter.user_id.as_ref().is_some_and(|id| *id != self.0.id) {
            return Err(AppError::BadUserInput(
                "Customer.orders lists that customer's orders; leave userId out of its filter"
                    .into(),
            )
            .extend());
        }
        filter.user_id = Some(self.0.id.clone());
        order_list::scoped_filter(super::viewer(ctx)?, filter)
    }
}

/// Which customers to list.
#[derive(InputObject, Default)]
pub struct CustomerFilter {
    /// Customers whose name or email starts with this text (whatever its case), or whose phone
    /// starts with these digits; 1 to 100 characters.
    pub search: Option<String>,
}

/// Customer `id` as `viewer` may see them: staff anyone, a customer only themselves.
pub async fn customer(
    ctx: &Context<'_>,
    viewer: &Viewer,
    id: &str,
) -> async_graphql::Result<Option<Customer>> {
    if !viewer.is_staff() && id != viewer.user_id {
        return Err(AppError::Forbidden(
            "customers may see only their own profile (viewer { profile })".into(),
        )
        .extend());
    }
    load(ctx, id).await
}

/// Customer `id`, if oms has a profile for them.
pub async fn load(ctx: &Context<'_>, id: &str) -> async_graphql::Result<Option<Customer>> {
    Ok(ctx
        .data_unchecked::<CoalescingLoader<_, CustomerById>>()
        .load_one(id.to_owned())
        .await
        .gql()?
        .map(Customer))
}

/// A page of customers by id (staff).
pub async fn customers(
    ctx: &Context<'_>,
    filter: Option<CustomerFilter>,
    first: Option<i32>,
    after: Option<String>,
) -> async_graphql::Result<Connection<String, Customer>> {
    let limit = page_size(ctx, "first", first)?;
    let after = match after {
        Some(cursor) => Some(
            OpaqueCursor::<String>::decode_cursor(&cursor)
                .map_err(|_| {
                    AppError::BadUserInput(format!(
                        "after {cursor:?} is not a cursor from this list"
                    ))
                    .extend()
                })?
                .0,
        ),
        None => None,
    };
    let search = match filter.and_then(|filter| filter.search) {
        None => None,
        Some(search) => {
            let search = search.trim().to_owned();
            let len = search.chars().count();
            if len == 0 || len > MAX_SEARCH_LEN {
                return Err(AppError::BadUserInput(format!(
                    "search must be 1 to {MAX_SEARCH_LEN} characters"
                ))
                .extend());
            }
            Some(search)
        }
    };
    // A search of digits (with a phone's separators) also matches phones that start with them.
    let phone_prefix = search.as_deref().and_then(|search| {
        let phone_like = search
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '(' | ')'));
        let digits: String = search.chars().filter(char::is_ascii_digit).collect();
        (phone_like && !digits.is_empty()).then_some(digits)
    });
    let mut rows = db::customers::list(
        ctx.data_unchecked::<Db>(),
        search.as_deref(),
        phone_prefix.as_deref(),
        after.as_deref(),
        limit as i64 + 1,
    )
    .await
    .gql()?;
    let has_next = rows.len() > limit;
    rows.truncate(limit);
    let mut connection = Connection::new(after.is_some(), has_next);
    connection.edges.extend(
        rows.into_iter()
            .map(|row| Edge::new(OpaqueCursor(row.id.clone()).encode_cursor(), Customer(row))),
    );
    Ok(connection)
}

/// A change to a profile: each field left out stays as it is; `email` and `phone` may be set to
/// null to remove them.
#[derive(InputObject)]
pub struct UpdateMyProfileInput {
    /// 1 to 100 characters on one line.
    pub name: Option<String>,
    /// An address like name@example.com, at most 254 characters; no other customer's.
    pub email: MaybeUndefined<String>,
    /// 10 digits (spaces, dots, dashes and parentheses between them are allowed); no other
    /// customer's.
    pub phone: MaybeUndefined<String>,
}

/// A change to any customer's profile (staff).
#[derive(InputObject)]
pub struct UpdateCustomerInput {
    /// The customer's id.
    pub id: ID,
    /// 1 to 100 characters on one line.
    pub name: Option<String>,
    /// An address like name@example.com, at most 254 characters; no other customer's.
    pub email: MaybeUndefined<String>,
    /// 10 digits (spaces, dots, dashes and parentheses between them are allowed); no other
    /// customer's.
    pub phone: MaybeUndefined<String>,
}

#[derive(SimpleObject)]
pub struct CustomerProfilePayload {
    /// The customer as the change left them.
    pub customer: Option<Customer>,
    pub user_errors: Vec<crate::domain::user_error::UserError>,
}

/// The change the input fields ask for.
pub fn profile_change(
    name: Option<String>,
    email: MaybeUndefined<String>,
    phone: MaybeUndefined<String>,
) -> ProfileChange {
    let nullable = |value: MaybeUndefined<String>| match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(text) => Some(Some(text)),
    };
    ProfileChange {
        name: name.map(Some),
        email: nullable(email),
        phone: nullable(phone),
    }
}
