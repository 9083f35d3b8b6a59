//! Live status changes, pushed the moment they are applied, and stock level changes for staff.
//! The resolvers check the arguments and who may follow what, hold one of the connection's
//! subscription slots, and map what `live::follow` streams (each change once, in order, gaps
//! filled from the history) to GraphQL types.

use super::types::{InventoryChange, OrderStatusChange};
use super::{parse_order_id, viewer};
use crate::db;
use crate::db::Db;
use crate::error::{AppError, IntoGraphql};
use crate::live::{follow, StatusFeed, StockFeed};
use async_graphql::{Context, ErrorExtensions, Subscription, ID};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct SubscriptionRoot;

/// The subscriptions one WebSocket connection holds, up to a maximum.
pub struct SubscriptionSlots {
    held: Arc<AtomicUsize>,
    max: usize,
}

/// One held subscription; released when its stream ends.
pub struct SubscriptionSlot(Arc<AtomicUsize>);

impl SubscriptionSlots {
    pub fn new(max: usize) -> Self {
        SubscriptionSlots {
            held: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    fn acquire(&self) -> Result<SubscriptionSlot, AppError> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.max).then_some(held + 1)
            })
            .map(|_| SubscriptionSlot(self.held.clone()))
            .map_err(|_| AppError::TooManySubscriptions(self.max))
    }
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

type ChangeStream = BoxStream<'static, async_graphql::Result<OrderStatusChange>>;
type InventoryStream = BoxStream<'static, async_graphql::Result<InventoryChange>>;

/// Holds a subscription slot for as long as `stream` lives.
fn holding<T: Send + 'static>(
    stream: BoxStream<'static, T>,
    slot: Option<SubscriptionSlot>,
) -> BoxStream<'static, T> {
    stream
        .map(move |item| {
            let _held = &slot;
            item
        })
        .boxed()
}

fn acquire_slot(ctx: &Context<'_>) -> async_graphql::Result<Option<SubscriptionSlot>> {
    ctx.data_opt::<SubscriptionSlots>()
        .map(SubscriptionSlots::acquire)
        .transpose()
        .map_err(|e| e.extend())
}

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Status changes of one order (`orderId`), or of every order the caller may see (their own
    /// for a customer, all for staff), optionally only those reaching `status`. With `orderId`,
    /// the current state comes first; `afterVersion` replays the history after that version
    /// instead (0 for the whole history), so a reconnecting client misses nothing.
    async fn order_status_changed(
        &self,
        ctx: &Context<'_>,
        order_id: Option<ID>,
        after_version: Option<i32>,
        status: Option<crate::domain::status::OrderStatus>,
    ) -> async_graphql::Result<ChangeStream> {
        let viewer = viewer(ctx)?.clone();
        let slot = acquire_slot(ctx)?;
        let feed = ctx.data_unchecked::<StatusFeed>().clone();
        let pool = ctx.data_unchecked::<Db>().clone();
        let stream = match order_id {
            Some(_) if status.is_some() => Err(AppError::BadUserInput(
                "status filters the stream of all orders; with orderId every change comes".into(),
            )
            .extend()),
            Some(id) => {
                let id = parse_order_id(&id)?;
                follow::one_order(pool, feed, &viewer, id, after_version)
                    .await
                    .map_err(|error| error.extend())
            }
            None if after_version.is_some() => Err(AppError::BadUserInput(
                "afterVersion needs orderId: versions count one order's changes".into(),
            )
            .extend()),
            None => Ok(follow::every_visible_order(pool, feed, viewer, status)),
        }?;
        let changes = stream.map(|change| change.map(OrderStatusChange).map_err(|e| e.extend()));
        Ok(holding(changes.boxed(), slot))
    }

    /// Stock level changes of every item, or of one `sku` (staff only): each change once, in
    /// order per item, flagged when the item falls to or below its low-stock threshold.
    async fn inventory_changed(
        &self,
        ctx: &Context<'_>,
        sku: Option<String>,
    ) -> async_graphql::Result<InventoryStream> {
        if !viewer(ctx)?.is_staff() {
            return Err(
                AppError::Forbidden("only staff may watch inventory changes".into()).extend(),
            );
        }
        if let Some(sku) = &sku {
            let pool = ctx.data_unchecked::<Db>();
            if db::inventory::find_by_skus(pool, std::slice::from_ref(sku))
                .await
                .gql()?
                .is_empty()
            {
                return Err(AppError::NotFound(format!("no inventory item {sku:?}")).extend());
            }
        }
        let slot = acquire_slot(ctx)?;
        let feed = ctx.data_unchecked::<StockFeed>().clone();
        let changes = follow::stock_levels(feed, sku)
            .map(|change| change.map(InventoryChange).map_err(|e| e.extend()));
        Ok(holding(changes.boxed(), slot))
    }
}
