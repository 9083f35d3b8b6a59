//! Live status changes, pushed the moment they are applied.
//!
//! For one order the stream first replays its history after `afterVersion` (by default only the
//! latest entry, i.e. its current state), then continues live, with no gap and no duplicate by
//! `version`: the live feed is subscribed before the history is read, and anything already sent
//! is dropped. A gap (a missed event) is filled from the history.
//!
//! `inventoryChanged` pushes stock level changes to staff, each item's changes once and in order.

use super::types::{ChangeOutcome, InventoryChange, OrderStatusChange};
use super::{parse_order_id, viewer};
use crate::auth::Viewer;
use crate::db;
use crate::db::Db;
use crate::error::{AppError, IntoGraphql};
use crate::live::{StatusFeed, StockFeed};
use async_graphql::{Context, ErrorExtensions, Subscription, ID};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

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

/// Orders (or items) whose last sent version one subscription remembers.
const MAX_TRACKED_KEYS: usize = 10_000;

type ChangeStream = BoxStream<'static, async_graphql::Result<OrderStatusChange>>;
type InventoryStream = BoxStream<'static, async_graphql::Result<InventoryChange>>;

/// The newest version sent per order or item: events are delivered at least once, and a stale or
/// repeated change must not reach the client. Bounded: past [`MAX_TRACKED_KEYS`] the lower half
/// of the keys is forgotten (for UUIDv7 order ids, the oldest orders).
struct SentVersions<K> {
    newest: HashMap<K, i32>,
}

impl<K: Hash + Eq + Ord + Clone> SentVersions<K> {
    fn new() -> Self {
        SentVersions {
            newest: HashMap::new(),
        }
    }

    /// Whether `version` of `key` is newer than anything sent; if so it counts as sent.
    fn is_new(&mut self, key: &K, version: i32) -> bool {
        if self
            .newest
            .get(key)
            .is_some_and(|newest| version <= *newest)
        {
            return false;
        }
        self.newest.insert(key.clone(), version);
        if self.newest.len() > MAX_TRACKED_KEYS {
            let mut keys: Vec<K> = self.newest.keys().cloned().collect();
            keys.sort_unstable();
            for key in &keys[..keys.len() / 2] {
                self.newest.remove(key);
            }
        }
        true
    }
}

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
                one_order(pool, feed, &viewer, id, after_version).await
            }
            None if after_version.is_some() => Err(AppError::BadUserInput(
                "afterVersion needs orderId: versions count one order's changes".into(),
            )
            .extend()),
            None => Ok(every_visible_order(pool, feed, viewer, status)),
        }?;
        Ok(holding(stream, slot))
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
        Ok(holding(inventory_changes(feed, sku), slot))
    }
}

fn inventory_changes(feed: StockFeed, only_sku: Option<String>) -> InventoryStream {
    let mut live = feed.subscribe();
    let mut sent = SentVersions::new();
    async_stream::stream! {
        loop {
            match live.recv().await {
                Ok(change) => {
                    if only_sku.as_ref().is_some_and(|sku| *sku != change.sku) {
                        continue;
                    }
                    if sent.is_new(&change.sku, change.version) {
                        yield Ok(InventoryChange(change));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    yield Err(AppError::Lagged(missed).extend());
                    break;
                }
                Err(RecvError::Closed) => break,
            }
        }
    }
    .boxed()
}

async fn one_order(
    pool: Db,
    feed: StatusFeed,
    viewer: &Viewer,
    order_id: Uuid,
    after_version: Option<i32>,
) -> async_graphql::Result<ChangeStream> {
    // Subscribe before reading, so nothing committed after the read can be missed.
    let mut live = feed.subscribe_to_order(order_id);
    let order = db::orders::find(&pool, order_id)
        .await
        .gql()?
        .filter(|order| viewer.may_see_order_of(&order.user_id))
        .ok_or_else(|| {
            AppError::NotFound(format!("no order {order_id} is visible to you")).extend()
        })?;
    if let Some(version) = after_version.filter(|v| *v < 0 || *v > order.version) {
        return Err(AppError::BadUserInput(format!(
            "afterVersion must be between 0 and the order's version {}, got {version}",
            order.version
        ))
        .extend());
    }
    let mut sent = after_version.unwrap_or(order.version - 1);
    Ok(async_stream::stream! {
        let mut catch_up = true;
        loop {
            if catch_up {
                catch_up = false;
                match db::orders::history_after(&pool, order_id, sent).await {
                    Ok(changes) => for change in changes {
                        sent = change.version;
                        yield Ok(OrderStatusChange::from_history(change));
                    },
                    Err(error) => {
                        yield Err::<OrderStatusChange, _>(AppError::from(error).extend());
                        break;
                    }
                }
            }
            match live.recv().await {
                Ok(event) if event.order_id == order_id => {
                    let Some(change) = OrderStatusChange::from_event(&event) else { continue };
                    match change.outcome {
                        ChangeOutcome::Refused => yield Ok(change),
                        ChangeOutcome::Applied if change.version <= sent => {}
                        ChangeOutcome::Applied if change.version == sent + 1 => {
                            sent = change.version;
                            yield Ok(change);
                        }
                        // A gap: fetch what was missed from the history.
                        ChangeOutcome::Applied => catch_up = true,
                    }
                }
                Ok(_) => {}
                // Fell behind the buffer: resynchronise from the history.
                Err(RecvError::Lagged(_)) => catch_up = true,
                Err(RecvError::Closed) => break,
            }
        }
    }
    .boxed())
}

/// How far before the newest change a customer's stream has sent it looks again when it fell
/// behind: changes of different orders may reach it slightly out of order (different
/// partitions), and anything already sent is dropped by version.
const CATCH_UP_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

fn every_visible_order(
    pool: Db,
    feed: StatusFeed,
    viewer: Viewer,
    status: Option<crate::domain::status::OrderStatus>,
) -> ChangeStream {
    // A customer sees only their own orders: their channel carries only those.
    let mut live = if viewer.is_staff() {
        feed.subscribe()
    } else {
        feed.subscribe_to_customer(&viewer.user_id)
    };
    let mut sent = SentVersions::new();
    let mut newest_sent = chrono::Utc::now();
    async_stream::stream! {
        loop {
            match live.recv().await {
                Ok(event) => {
                    let Some(change) = OrderStatusChange::from_event(&event) else { continue };
                    let visible = change
                        .owner_id
                        .as_deref()
                        .is_some_and(|owner| viewer.may_see_order_of(owner));
                    if !visible {
                        continue;
                    }
                    if change.outcome == ChangeOutcome::Applied
                        && !sent.is_new(&change.order_uuid, change.version)
                    {
                        continue;
                    }
                    newest_sent = newest_sent.max(change.at);
                    if status.is_none_or(|wanted| wanted == change.to) {
                        yield Ok(change);
                    }
                }
                // A customer's stream that fell behind catches up from the database: the
                // changes of their orders since shortly before the newest one it has seen.
                // (Refused requests missed meanwhile are not replayed: they changed nothing.)
                Err(RecvError::Lagged(missed)) if !viewer.is_staff() => {
                    tracing::debug!(user_id = %viewer.user_id, missed, "a customer's live stream fell behind; catching up");
                    let since = newest_sent - CATCH_UP_MARGIN;
                    match db::orders::history_of_customer_since(&pool, &viewer.user_id, since).await {
                        Ok(changes) => for change in changes {
                            if !sent.is_new(&change.order_id, change.version) {
                                continue;
                            }
                            newest_sent = newest_sent.max(change.at);
                            if status.is_none_or(|wanted| wanted == change.to_status) {
                                yield Ok(OrderStatusChange::from_history(change));
                            }
                        },
                        Err(error) => {
                            yield Err::<OrderStatusChange, _>(AppError::from(error).extend());
                            break;
                        }
                    }
                }
                // Staff's stream of every order has no such catch-up: it ends, saying why.
                Err(RecvError::Lagged(missed)) => {
                    yield Err(AppError::Lagged(missed).extend());
                    break;
                }
                Err(RecvError::Closed) => break,
            }
        }
    }
    .boxed()
}
