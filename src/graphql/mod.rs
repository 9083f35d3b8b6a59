//! The GraphQL API: schema, resolvers (thin: they check who asks and call `service`), types and
//! DataLoaders. `schema.graphql` at the top level is this schema's SDL; a test keeps them equal.

pub mod error_codes;
pub mod loaders;
pub mod mutation;
pub mod query;
pub mod rate_limit;
pub mod subscription;
pub mod types;

use crate::auth::Viewer;
use crate::config::ApiLimits;
use crate::error::AppError;
use crate::live::LiveFeeds;
use crate::metrics::Metrics;
use crate::outbox::OutboxWaker;
use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, ErrorExtensions, Schema, SchemaBuilder};
use loaders::{HistoryByOrder, ItemBySku, LinesByOrder, OrderById};
use rate_limit::MutationRateLimiter;
use sqlx::PgPool;

pub type OmsSchema =
    Schema<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot>;

fn builder(
) -> SchemaBuilder<query::QueryRoot, mutation::MutationRoot, subscription::SubscriptionRoot> {
    Schema::build(
        query::QueryRoot,
        mutation::MutationRoot,
        subscription::SubscriptionRoot,
    )
}

/// The schema with everything resolvers need.
pub fn schema(
    pool: PgPool,
    outbox: OutboxWaker,
    feeds: LiveFeeds,
    metrics: Metrics,
    limits: ApiLimits,
) -> OmsSchema {
    let mut builder = builder()
        .limit_depth(limits.max_query_depth)
        .limit_complexity(limits.max_query_complexity)
        .limit_directives(limits.max_directives)
        // Bounds the parser's recursion on hostile documents, whatever the depth limit.
        .limit_recursive_depth(64)
        .extension(error_codes::ErrorCodes(limits.clone()));
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder
        .data(DataLoader::new(ItemBySku(pool.clone()), tokio::spawn))
        .data(DataLoader::new(LinesByOrder(pool.clone()), tokio::spawn))
        .data(DataLoader::new(HistoryByOrder(pool.clone()), tokio::spawn))
        .data(DataLoader::new(OrderById(pool.clone()), tokio::spawn))
        .data(pool)
        .data(outbox)
        .data(feeds.status)
        .data(feeds.stock)
        .data(MutationRateLimiter::new(
            limits.mutations_per_second,
            limits.mutation_burst,
        ))
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

/// The caller of a mutation, within their rate limit.
pub fn mutating_viewer<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Viewer> {
    let viewer = viewer(ctx)?;
    ctx.data_unchecked::<MutationRateLimiter>()
        .check(&viewer.user_id)
        .map_err(|retry_after| AppError::RateLimited(retry_after).extend())?;
    Ok(viewer)
}

/// The caller, who must be staff.
pub fn staff<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Viewer> {
    let viewer = mutating_viewer(ctx)?;
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
