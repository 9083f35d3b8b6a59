//! `viewer`: who is asking, and their own orders and counts.

use super::customers::Customer;
use super::order_list::{
    self, OrderConnection, OrderFilterInput, OrderOrder, OrderStatusCount, PageArguments,
};
use crate::auth::{Role, Viewer};
use crate::db::Db;
use crate::error::IntoGraphql;
use crate::service;
use crate::service::customers::ClaimsTaken;
use async_graphql::{Context, Object, ID};

pub struct ViewerNode(pub Viewer);

/// The caller, as their token says.
#[Object(name = "Viewer")]
impl ViewerNode {
    /// The user id the token names.
    async fn id(&self) -> ID {
        ID(self.0.user_id.clone())
    }

    async fn role(&self) -> Role {
        self.0.role
    }

    /// The caller's own customer profile, as their token's claims gave it or as they set it
    /// (`updateMyProfile`); null while oms has none.
    async fn profile(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        service::customers::take_claims(
            ctx.data_unchecked::<Db>(),
            ctx.data_unchecked::<ClaimsTaken>(),
            &self.0,
        )
        .await
        .gql()?;
        super::customers::load(ctx, &self.0.user_id).await
    }

    /// The caller's own orders (for staff too), newest first unless `orderBy` says otherwise.
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
        let filter = order_list::own_filter(&self.0, filter.unwrap_or_default())?;
        let page = PageArguments::new(first, after, last, before);
        order_list::orders_page(ctx, filter, order_by.unwrap_or_default(), page).await
    }

    /// How many of the caller's own orders are in each status, every status listed.
    #[graphql(complexity = "10")]
    async fn order_counts(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilterInput>,
    ) -> async_graphql::Result<Vec<OrderStatusCount>> {
        let filter = order_list::own_filter(&self.0, filter.unwrap_or_default())?;
        order_list::order_counts(ctx, &filter).await
    }
}
