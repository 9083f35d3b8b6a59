//! What a live subscription follows: one order, every order a viewer may see, or stock levels.
//! Each change reaches the follower once and in order per order (or item): events are delivered
//! at least once and may overtake one another across partitions, so each stream remembers the
//! newest version it sent, and fills what the live feed skipped from the order history.
//!
//! For one order the live feed is subscribed before the history is read, so nothing committed
//! in between is missed; a gap in versions is filled from the history.

use super::{StatusFeed, StockFeed};
use crate::auth::Viewer;
use crate::db;
use crate::db::orders::StatusChangeRow;
use crate::db::Db;
use crate::domain::events::{Actor, Event, EventBody, StockLevelChanged};
use crate::domain::status::OrderStatus;
use crate::error::AppError;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// Whether a status change happened or a requested one was refused.
#[derive(async_graphql::Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ChangeOutcome {
    /// The order moved from `from` to `to`.
    Applied,
    /// A requested change (`requestedStatus`) could not be applied when its turn came; the
    /// order stays `to` and `reason` says why.
    Refused,
}

/// A status change of an order, from its history or from a live event.
#[derive(Clone, Debug)]
pub struct StatusChange {
    pub order_id: Uuid,
    /// The status before; None for the first entry (the order was placed).
    pub from: Option<OrderStatus>,
    /// The status after (for a refusal: the status the order keeps).
    pub to: OrderStatus,
    pub reason: Option<String>,
    /// The order's version after the change (unchanged for a refusal).
    pub version: i32,
    pub at: DateTime<Utc>,
    pub outcome: ChangeOutcome,
    /// For a refusal: the status that was asked for.
    pub requested_status: Option<OrderStatus>,
    /// The order's owner, where the change says it (events do, history entries do not).
    pub owner_id: Option<String>,
    /// Who asked for the change; None when the inventory check decided it.
    pub actor: Option<Actor>,
}

impl StatusChange {
    /// An entry of an order's history.
    pub fn from_history(row: StatusChangeRow) -> Self {
        StatusChange {
            order_id: row.order_id,
            from: row.from_status,
            to: row.to_status,
            reason: row.reason,
            version: row.version,
            at: row.at,
            outcome: ChangeOutcome::Applied,
            requested_status: None,
            owner_id: None,
            actor: row
                .actor_id
                .zip(row.actor_role)
                .map(|(user_id, role)| Actor { user_id, role }),
        }
    }
}

impl StatusChange {
    /// The change a status event announces; `None` for events that are not status changes.
    pub fn from_event(event: &Event) -> Option<Self> {
        let (from, to, reason, outcome, requested, owner, actor) = match &event.body {
            EventBody::OrderStatusChanged(changed) => (
                changed.from,
                changed.to,
                changed.reason.clone(),
                ChangeOutcome::Applied,
                None,
                &changed.user_id,
                changed.changed_by.clone(),
            ),
            EventBody::StatusChangeRefused(refused) => (
                Some(refused.current),
                refused.current,
                Some(refused.message.clone()),
                ChangeOutcome::Refused,
                Some(refused.requested),
                &refused.user_id,
                Some(refused.requested_by.clone()),
            ),
            _ => return None,
        };
        Some(StatusChange {
            order_id: event.order_id,
            from,
            to,
            reason,
            version: event.version,
            at: event.occurred_at,
            outcome,
            requested_status: requested,
            owner_id: Some(owner.clone()),
            actor,
        })
    }
}

/// A follower's status changes; an error ends the stream.
pub type StatusChanges = BoxStream<'static, Result<StatusChange, AppError>>;
/// A follower's stock level changes; an error ends the stream.
pub type StockChanges = BoxStream<'static, Result<Arc<StockLevelChanged>, AppError>>;

/// Orders (or items) whose last sent version one subscription remembers.
const MAX_TRACKED_KEYS: usize = 10_000;

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

/// Stock level changes of every item, or of `only_sku`: each change once, in order per item. A
/// follower that falls behind the live feed gets [`AppError::Lagged`] and the stream ends.
pub fn stock_levels(feed: StockFeed, only_sku: Option<String>) -> StockChanges {
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
                        yield Ok(change);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    yield Err(AppError::Lagged(missed));
                    break;
                }
                Err(RecvError::Closed) => break,
            }
        }
    }
    .boxed()
}

/// The changes of one order `viewer` may see: its history after `after_version` (by default only
/// the latest entry, its current state), then live, with no gap and no duplicate by version.
pub async fn one_order(
    pool: Db,
    feed: StatusFeed,
    viewer: &Viewer,
    order_id: Uuid,
    after_version: Option<i32>,
) -> Result<StatusChanges, AppError> {
    // Subscribe before reading, so nothing committed after the read can be missed.
    let mut live = feed.subscribe_to_order(order_id);
    let order = db::orders::find(&pool, order_id)
        .await?
        .filter(|order| viewer.may_see_order_of(&order.user_id))
        .ok_or_else(|| AppError::NotFound(format!("no order {order_id} is visible to you")))?;
    if let Some(version) = after_version.filter(|v| *v < 0 || *v > order.version) {
        return Err(AppError::BadUserInput(format!(
            "afterVersion must be between 0 and the order's version {}, got {version}",
            order.version
        )));
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
                        yield Ok(StatusChange::from_history(change));
                    },
                    Err(error) => {
                        yield Err::<StatusChange, _>(AppError::from(error));
                        break;
                    }
                }
            }
            match live.recv().await {
                Ok(event) if event.order_id == order_id => {
                    let Some(change) = StatusChange::from_event(&event) else { continue };
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

/// The changes of every order `viewer` may see (a customer's own, all for staff), optionally
/// only those reaching `status`: each applied change once. A customer's stream that falls behind
/// the live feed catches up from the database; staff's ends with [`AppError::Lagged`].
pub fn every_visible_order(
    pool: Db,
    feed: StatusFeed,
    viewer: Viewer,
    status: Option<OrderStatus>,
) -> StatusChanges {
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
                    let Some(change) = StatusChange::from_event(&event) else { continue };
                    let visible = change
                        .owner_id
                        .as_deref()
                        .is_some_and(|owner| viewer.may_see_order_of(owner));
                    if !visible {
                        continue;
                    }
                    if change.outcome == ChangeOutcome::Applied
                        && !sent.is_new(&change.order_id, change.version)
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
                                yield Ok(StatusChange::from_history(change));
                            }
                        },
                        Err(error) => {
                            yield Err::<StatusChange, _>(AppError::from(error));
                            break;
                        }
                    }
                }
                // Staff's stream of every order has no such catch-up: it ends, saying why.
                Err(RecvError::Lagged(missed)) => {
                    yield Err(AppError::Lagged(missed));
                    break;
                }
                Err(RecvError::Closed) => break,
            }
        }
    }
    .boxed()
}
