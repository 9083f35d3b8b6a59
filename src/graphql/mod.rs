//! The GraphQL API: schema, resolvers, types and loaders. `schema.graphql` at the top level
//! is this schema's SDL; a test keeps them equal.
//!
//! The rule for resolvers: they check who asks and what they may see, then mutations call
//! `service` (where every business rule and write lives), reads call `db` directly (queries and
//! loaders: a read has no rule beyond who may see it, which the resolver checks), and
//! subscriptions follow `live::follow`.

pub mod coalescing;
pub mod customers;
pub mod error_codes;
pub mod guard;
pub mod loaders;
pub mod mutation;
pub mod node;
pub mod order_list;
pub mod query;
pub mod rate_limit;
pub mod subscription;
pub mod types;
pub mod viewer_node;

use crate::auth::Viewer;
use crate::config::ApiLimits;
use crate::db::Db;
use crate::error::AppError;
use crate::live::LiveFeeds;
use crate::metrics::Metrics;
use crate::outbox::OutboxWaker;
use crate::service::placer::Placer;
use crate::service::status_requests::StatusRequests;
use async_graphql::{Context, ErrorExtensions, Schema, SchemaBuilder};
use coalescing::CoalescingLoader;
use loaders::{
    CustomerById, HistoryByOrder, ItemBySku, LinesByOrder, OrderById, OrderWithLinesById,
};
use rate_limit::{MutationRateLimiter, RateLimiter, RequestRateLimiter};
use std::sync::Arc;

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

/// What the mutations write through, shared by every request: orders placed and status
/// changes requested together go in one statement (`service::batched`), and the relay is woken
/// once outbox rows are committed.
pub struct Writers {
    pub placer: Placer,
    pub status_requests: StatusRequests,
    pub outbox: OutboxWaker,
}

/// The schema with everything resolvers need.
pub fn schema(
    pool: Db,
    Writers {
        placer,
        status_requests,
        outbox,
    }: Writers,
    feeds: LiveFeeds,
    metrics: Metrics,
    limits: ApiLimits,
    requests: Arc<RequestRateLimiter>,
) -> OmsSchema {
    // The guard checks depth, directives and the expanded size first, in linear time; only
    // then may async-graphql's own walks (which expand fragments without memoisation) run. Its
    // complexity check stays: it knows the page size each list asks for.
    let mut builder = builder()
        .extension(rate_limit::WebSocketOperationLimit)
        .extension(guard::DocumentGuard(Arc::new(
            guard::DocumentLimits::from_api_limits(&limits),
        )))
        .limit_complexity(limits.max_query_complexity)
        .limit_recursive_depth(guard::MAX_NESTING)
        .extension(error_codes::ErrorCodes(limits.clone()));
    if !limits.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder
        .data(CoalescingLoader::new(ItemBySku(pool.clone())))
        .data(CoalescingLoader::new(LinesByOrder(pool.clone())))
        .data(CoalescingLoader::new(HistoryByOrder(pool.clone())))
        .data(CoalescingLoader::new(OrderById(pool.clone())))
        .data(CoalescingLoader::new(OrderWithLinesById(pool.clone())))
        .data(CoalescingLoader::new(CustomerById(pool.clone())))
        .data(crate::service::customers::ClaimsTaken::default())
        .data(pool)
        .data(placer)
        .data(status_requests)
        .data(outbox)
        .data(feeds.status)
        .data(feeds.stock)
        .data(MutationRateLimiter(RateLimiter::new(
            limits.mutations_per_second,
            limits.mutation_burst,
        )))
        .data(requests)
        .data(limits)
        .data(metrics)
        .finish()
}

/// The schema's SDL, as kept in `schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

/// The authenticated caller, or an `UNAUTHENTICATED` error. A viewer whose token has expired
/// since the request or WebSocket connection began acts no more.
pub fn viewer<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Viewer> {
    let viewer = ctx
        .data_opt::<Viewer>()
        .ok_or_else(|| AppError::Unauthenticated("no token was sent".into()).extend())?;
    if viewer.has_expired() {
        return Err(AppError::Unauthenticated(
            "the token has expired; reconnect with a fresh token".into(),
        )
        .extend());
    }
    Ok(viewer)
}

/// The caller of a mutation, within their rate limit.
pub fn mutating_viewer<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Viewer> {
    let viewer = viewer(ctx)?;
    ctx.data_unchecked::<MutationRateLimiter>()
        .check(&viewer.user_id)
        .map_err(|retry_after| {
            AppError::RateLimited {
                what: "mutations",
                retry_after,
            }
            .extend()
        })?;
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

/// The caller of a query, who must be staff.
pub fn staff_reader<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Viewer> {
    let viewer = viewer(ctx)?;
    if viewer.is_staff() {
        Ok(viewer)
    } else {
        Err(AppError::Forbidden("only staff may see this".into()).extend())
    }
}

/// Parses an order id argument.
pub fn parse_order_id(id: &async_graphql::ID) -> async_graphql::Result<uuid::Uuid> {
    id.parse().map_err(|_| {
        AppError::BadUserInput(format!("{:?} is not an order id (a UUID)", id.as_str())).extend()
    })
}
