//! The GraphQL API: schema, resolvers (thin: they check who asks and call `service`), types and
//! DataLoaders. `schema.graphql` at the top level is this schema's SDL; a test keeps them equal.

pub mod loaders;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use crate::auth::Viewer;
use crate::error::AppError;
use crate::live::StatusFeed;
use crate::metrics::Metrics;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, ErrorExtensions, Schema, SchemaBuilder};
use loaders::{HistoryByOrder, ItemBySku, LinesByOrder, OrderById};
use sqlx::PgPool;

pub type OmsSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

/// Limits a request must stay within.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_page_size: usize,
}

fn builder(
) -> SchemaBuilder<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot> {
    Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
}

/// The schema with everything resolvers need.
pub fn schema(pool: PgPool, feed: StatusFeed, metrics: Metrics, limits: Limits) -> OmsSchema {
    builder()
        .data(DataLoader::new(ItemBySku(pool.clone()), tokio::spawn))
        .data(DataLoader::new(LinesByOrder(pool.clone()), tokio::spawn))
        .data(DataLoader::new(HistoryByOrder(pool.clone()), tokio::spawn))
        .data(DataLoader::new(OrderById(pool.clone()), tokio::spawn))
        .data(pool)
        .data(feed)
        .data(limits)
        .data(metrics)
        .finish()
}

/// The schema's SDL, as kept in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

/// The authenticated caller, or an `UNAUTHENTICATED` error.
pub fn viewer<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Viewer> {
    ctx.data_opt::<Viewer>()
        .ok_or_else(|| AppError::Unauthenticated("no token was sent".into()).extend())
}

/// The caller, who must be staff.
pub fn staff<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Viewer> {
    let viewer = viewer(ctx)?;
    if viewer.is_staff() {
        Ok(viewer)
    } else {
        Err(AppError::Forbidden("only staff may do this".into()).extend())
    }
}

/// Parses an order id argument.
pub fn parse_order_id(id: &async_graphql::ID) -> async_graphql::Result<uuid::Uuid> {
    id.parse().map_err(|_| {
        AppError::BadUserInput(format!("{:?} is not an order id (a UUID)", id.as_str())).extend()
    })
}
