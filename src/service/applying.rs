//! The consumers' effects: the inventory check of a placed order, and applying a requested status
//! change. Each runs in one transaction that also marks the event as processed, so a redelivered
//! event changes nothing.

use crate::db;
use crate::db::inventory::{InventoryItemRow, LineStock, MovedItem};
use crate::db::orders::{ChangeToWrite, OrderForEvent, OrderRow, StatusChangeRow};
use crate::db::outbox::OutboxMessage;
use crate::db::Db;
use crate::db::Tx;
use crate::domain::events::{
    Actor, Event, EventBody, StatusChangeRefused, StatusChangeRequested, StockChangeReason,
};
use crate::domain::permissions::may_request_status;
use crate::domain::status::{ChangeOrigin, OrderStatus, Transition};
use crate::outbox::OutboxWaker;
use chrono::{SubsecRound, Utc};
use std::collections::HashMap;
use uuid::Uuid;

pub const INVENTORY_CONSUMER: &str = "inventory";
pub const ORDERS_CONSUMER: &str = "orders";

/// What applying an event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// The event was applied before; nothing changed.
    Duplicate,
    /// The event no longer applies (e.g. the order was cancelled before its inventory check).
    Moot { status: OrderStatus },
    /// The order moved to a new status.
    Changed(OrderRow),
    /// The requested change was refused; subscribers were told why.
    Refused { message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The event names an order that does not exist: it can never apply.
    #[error("order {0} does not exist")]
    UnknownOrder(Uuid),
    /// The database refused the effect outright (a constraint): retrying cannot help, and the
    /// event is set aside for an operator instead of blocking its partition.
    #[error("the database refused the effect: {0}")]
    Refused(sqlx::Error),
    /// Worth retrying: the database failed.
    #[error("database error")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for ApplyError {
    fn from(error: sqlx::Error) -> Self {
        // SQLSTATE class 22 (data exception, e.g. a NUL in text) and 23 (integrity constraint
        // violation): the statement can never succeed with this event's data.
        let constraint = matches!(&error, sqlx::Error::Database(db)
            if db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23")));
        if constraint {
            ApplyError::Refused(error)
        } else {
            ApplyError::Database(error)
        }
    }
}

/// Deducts a PENDING order's stock and confirms it, or rejects it naming each line that cannot be
/// filled (and then moves no stock). Five round trips: BEGIN, the inbox mark with the order's
/// lock, the lines with their stock locked, the change, COMMIT.
#[tracing::instrument(name = "inventory check", skip_all, fields(%order_id))]
pub async fn apply_inventory_check(
    pool: &Db,
    outbox: &OutboxWaker,
    event_id: Uuid,
    order_id: Uuid,
) -> Result<Applied, ApplyError> {
    let mut applied = apply_inventory_checks(pool, outbox, &[(event_id, order_id)]).await?;
    Ok(applied.pop().expect("one outcome per event"))
}

/// The inventory checks of several placed orders (`(event_id, order_id)`, in arrival order) in
/// one transaction: the orders and the union of their stock rows are locked once, each order is
/// decided in arrival order against the stock the ones before it left (an order that does not
/// fit is rejected, the next may still fit), and everything commits once. One outcome per
/// event, in order. A batch naming an order that does not exist applies nothing.
#[tracing::instrument(name = "inventory checks", skip_all, fields(orders = events.len()))]
pub async fn apply_inventory_checks(
    pool: &Db,
    outbox: &OutboxWaker,
    events: &[(Uuid, Uuid)],
) -> Result<Vec<Applied>, ApplyError> {
    let mut tx = pool.begin().await?;
    let mut locked: HashMap<Uuid, OrderForEvent> =
        db::orders::lock_for_events(&mut tx, INVENTORY_CONSUMER, events)
            .await?
            .into_iter()
            .map(|row| (row.event_id, row.locked))
            .collect();
    // Only orders still waiting for their check need stock.
    let waiting: Vec<Uuid> = locked
        .values()
        .filter(|row| row.first_time && row.order.status == OrderStatus::Pending)
        .map(|row| row.order.id)
        .collect();
    let (mut lines, mut stock) = lock_stock_of(&mut tx, &waiting).await?;
    // Outcomes in arrival order; None where a change is written below.
    let mut outcomes: Vec<Option<Applied>> = Vec::with_capacity(events.len());
    let mut prepared_changes = Vec::new();
    for (event_id, order_id) in events {
        let row = locked
            .remove(event_id)
            .ok_or(ApplyError::UnknownOrder(*order_id))?;
        if !row.first_time {
            tracing::info!(%order_id, %event_id, "event already applied; skipping the redelivery");
            outcomes.push(Some(Applied::Duplicate));
            continue;
        }
        let order = row.order;
        if order.status != OrderStatus::Pending {
            // Cancelled (or already decided) before its check: nothing to deduct.
            outcomes.push(Some(Applied::Moot {
                status: order.status,
            }));
            continue;
        }
        let order_lines = lines.remove(&order.id).unwrap_or_default();
        let decision = decide(&order_lines, &stock);
        let fits = decision.shortages.is_empty();
        // A rejected order moves no stock, though some of its lines would fit.
        let moves: Vec<(InventoryItemRow, i32)> = decision
            .deductions
            .iter()
            .filter(|_| fits)
            .map(|(sku, delta)| (stock[sku].clone(), *delta))
            .collect();
        let change = if fits {
            Change {
                to: OrderStatus::Confirmed,
                reason: None,
                stock_deducted: true,
                actor: None,
                stock: StockChange::of(StockChangeReason::OrderConfirmed, &moves),
            }
        } else {
            Change {
                to: OrderStatus::Rejected,
                reason: Some(decision.shortages.join("; ")),
                stock_deducted: false,
                actor: None,
                stock: None,
            }
        };
        // The next order of the batch sees the stock this one left.
        prepared_changes.push(prepare_in_batch(&order, &change, &moves, &mut stock));
        outcomes.push(None);
    }
    write_prepared(&mut tx, &prepared_changes).await?;
    tx.commit().await?;
    let outcomes = settle_outcomes(outcomes, prepared_changes, "inventory check applied");
    if outcomes
        .iter()
        .any(|outcome| matches!(outcome, Applied::Changed(_)))
    {
        outbox.wake();
    }
    Ok(outcomes)
}

/// The lines of `order_ids` by order, each with its item, and the items by SKU, locked.
async fn lock_stock_of(
    tx: &mut Tx,
    order_ids: &[Uuid],
) -> sqlx::Result<(
    HashMap<Uuid, Vec<LineStock>>,
    HashMap<String, InventoryItemRow>,
)> {
    let mut lines: HashMap<Uuid, Vec<LineStock>> = HashMap::new();
    let mut stock: HashMap<String, InventoryItemRow> = HashMap::new();
    if order_ids.is_empty() {
        return Ok((lines, stock));
    }
    for (order_id, line) in db::inventory::lock_stock_of_orders(tx, order_ids).await? {
        if let Some(item) = &line.item {
            stock
                .entry(item.sku.clone())
                .or_insert_with(|| item.clone());
        }
        lines.entry(order_id).or_default().push(line);
    }
    Ok((lines, stock))
}

/// A change prepared in a batch, with the stock it moves (each item as the changes before it
/// in the batch left it).
type PreparedWithMoves = (PreparedChange, Vec<(InventoryItemRow, i32)>);

/// Prepares `change` of `order` and moves `stock` (the batch's view of its items) as it does.
fn prepare_in_batch(
    order: &OrderRow,
    change: &Change<'_>,
    moves: &[(InventoryItemRow, i32)],
    stock: &mut HashMap<String, InventoryItemRow>,
) -> PreparedWithMoves {
    let prepared = prepare_change(order, change);
    for (item, delta) in moves {
        let moved = item.moved_by(*delta, prepared.order.updated_at).item;
        stock.insert(moved.sku.clone(), moved);
    }
    (prepared, moves.to_vec())
}

/// Writes every prepared change of a batch in one statement.
async fn write_prepared(tx: &mut Tx, prepared: &[PreparedWithMoves]) -> sqlx::Result<()> {
    if prepared.is_empty() {
        return Ok(());
    }
    let stock_moves: Vec<Vec<(&InventoryItemRow, i32)>> = prepared
        .iter()
        .map(|(_, moves)| moves.iter().map(|(item, delta)| (item, *delta)).collect())
        .collect();
    let writes: Vec<ChangeToWrite<'_>> = prepared
        .iter()
        .zip(&stock_moves)
        .map(|((prepared, _), moves)| prepared.to_write(moves))
        .collect();
    db::orders::write_changes(tx, &writes).await
}

/// The batch's outcomes in arrival order: each `None` is the next written change.
fn settle_outcomes(
    outcomes: Vec<Option<Applied>>,
    prepared: Vec<PreparedWithMoves>,
    what: &'static str,
) -> Vec<Applied> {
    let mut changed = prepared.into_iter().map(|(prepared, _)| prepared.order);
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| {
                let order = changed.next().expect("one change per order decided");
                tracing::info!(order_id = %order.id, status = %order.status, "{what}");
                Applied::Changed(order)
            })
        })
        .collect()
}

/// How an order's lines fit the stock: the deductions when every line fits, else why not.
#[derive(Debug, Default, PartialEq)]
struct Decision {
    /// `(sku, -quantity)` per line.
    deductions: Vec<(String, i32)>,
    shortages: Vec<String>,
}

/// Decides an order's lines against `stock` (by SKU), in line order.
fn decide(lines: &[LineStock], stock: &HashMap<String, InventoryItemRow>) -> Decision {
    let mut decision = Decision::default();
    for line in lines {
        match stock.get(&line.sku) {
            None => decision
                .shortages
                .push(format!("SKU {} no longer exists", line.sku)),
            Some(item) if item.quantity < line.requested => decision.shortages.push(format!(
                "insufficient stock for SKU {}: requested {}, available {}",
                line.sku, line.requested, item.quantity
            )),
            Some(item) => decision
                .deductions
                .push((item.sku.clone(), -line.requested)),
        }
    }
    decision
}

/// Applies a requested change if the order still allows it; restores stock exactly once when a
/// deducted order is cancelled. A change no longer allowed is announced as refused.
#[tracing::instrument(name = "apply status change", skip_all, fields(%order_id))]
pub async fn apply_requested_change(
    pool: &Db,
    outbox: &OutboxWaker,
    event_id: Uuid,
    order_id: Uuid,
    request: &StatusChangeRequested,
) -> Result<Applied, ApplyError> {
    let mut applied =
        apply_requested_changes(pool, outbox, &[(event_id, order_id, request)]).await?;
    Ok(applied.pop().expect("one outcome per request"))
}

/// What a request asks of its order, decided before any stock is read.
enum Decided {
    Done(Applied),
    Refuse(OrderRow, String),
    Apply {
        order: OrderRow,
        restores_stock: bool,
    },
}

/// The requested changes of several orders (`(event_id, order_id, request)`, in arrival order)
/// in one transaction: the orders locked once, each request decided as alone, the stock of the
/// cancelled deducted orders locked once and restored, every change written in one statement
/// and every refusal announced, one commit. One outcome per request, in order.
#[tracing::instrument(name = "apply status changes", skip_all, fields(requests = requests.len()))]
pub async fn apply_requested_changes(
    pool: &Db,
    outbox: &OutboxWaker,
    requests: &[(Uuid, Uuid, &StatusChangeRequested)],
) -> Result<Vec<Applied>, ApplyError> {
    let mut tx = pool.begin().await?;
    let pairs: Vec<(Uuid, Uuid)> = requests
        .iter()
        .map(|(event_id, order_id, _)| (*event_id, *order_id))
        .collect();
    let mut locked: HashMap<Uuid, OrderForEvent> =
        db::orders::lock_for_events(&mut tx, ORDERS_CONSUMER, &pairs)
            .await?
            .into_iter()
            .map(|row| (row.event_id, row.locked))
            .collect();
    let mut decided = Vec::with_capacity(requests.len());
    for (event_id, order_id, request) in requests {
        let row = locked
            .remove(event_id)
            .ok_or(ApplyError::UnknownOrder(*order_id))?;
        if !row.first_time {
            tracing::info!(%order_id, %event_id, "event already applied; skipping the redelivery");
            decided.push(Decided::Done(Applied::Duplicate));
            continue;
        }
        let order = row.order;
        let actor = &request.requested_by;
        let decision = may_request_status(actor.role, actor.user_id == order.user_id, request.to)
            .map_err(|refusal| refusal.to_string())
            .and_then(|()| {
                order
                    .status
                    .transition_to(request.to, ChangeOrigin::Request)
                    .map_err(|refusal| refusal.to_string())
            });
        decided.push(match decision {
            Err(message) => Decided::Refuse(order, message),
            Ok(Transition::NoOp) => Decided::Done(Applied::Moot {
                status: order.status,
            }),
            Ok(Transition::Apply { restores_stock }) => Decided::Apply {
                order,
                restores_stock,
            },
        });
    }
    let restoring: Vec<Uuid> = decided
        .iter()
        .filter_map(|decided| match decided {
            Decided::Apply {
                order,
                restores_stock: true,
            } if order.stock_deducted => Some(order.id),
            _ => None,
        })
        .collect();
    let (mut lines, mut stock) = lock_stock_of(&mut tx, &restoring).await?;
    let mut outcomes: Vec<Option<Applied>> = Vec::with_capacity(requests.len());
    let mut prepared_changes = Vec::new();
    let mut refusals = Vec::new();
    for ((_, _, request), decided) in requests.iter().zip(decided) {
        match decided {
            Decided::Done(applied) => outcomes.push(Some(applied)),
            Decided::Refuse(order, message) => {
                refusals.push(refusal_of(&order, request, &message));
                outcomes.push(Some(Applied::Refused { message }));
            }
            Decided::Apply {
                order,
                restores_stock,
            } => {
                // Every line's item exists: the lines' foreign key keeps a SKU with orders.
                let moves: Vec<(InventoryItemRow, i32)> = lines
                    .remove(&order.id)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|line| {
                        stock
                            .get(&line.sku)
                            .map(|item| (item.clone(), line.requested))
                    })
                    .collect();
                let change = Change {
                    to: request.to,
                    reason: request.reason.clone(),
                    stock_deducted: order.stock_deducted && !restores_stock,
                    actor: Some(request.requested_by.clone()),
                    stock: StockChange::of(StockChangeReason::OrderCancelled, &moves),
                };
                prepared_changes.push(prepare_in_batch(&order, &change, &moves, &mut stock));
                outcomes.push(None);
            }
        }
    }
    write_prepared(&mut tx, &prepared_changes).await?;
    db::outbox::enqueue(&mut tx, &refusals).await?;
    tx.commit().await?;
    let outcomes = settle_outcomes(outcomes, prepared_changes, "status request applied");
    if outcomes
        .iter()
        .any(|outcome| matches!(outcome, Applied::Changed(_) | Applied::Refused { .. }))
    {
        outbox.wake();
    }
    Ok(outcomes)
}

/// What a customer reads when their order's placement was set aside: the technical reason is
/// in the log and the dead letter's headers, for the operator.
pub const SET_ASIDE_REJECTION: &str =
    "the order could not be checked against stock and was set aside for an operator; nothing was deducted";

/// What the requester hears when their status request was set aside.
pub const SET_ASIDE_REFUSAL: &str =
    "the request could not be processed and was set aside for an operator";

/// After the inventory consumer set aside (dead-lettered) an order's placement: the order, if
/// still PENDING, is REJECTED saying so, so it never waits forever. Returns the rejected order.
pub async fn reject_set_aside_placement(
    pool: &Db,
    outbox: &OutboxWaker,
    order_id: Uuid,
) -> Result<Option<OrderRow>, ApplyError> {
    let mut tx = pool.begin().await?;
    let order = db::orders::lock(&mut tx, order_id).await?;
    let Some(order) = order.filter(|order| order.status == OrderStatus::Pending) else {
        return Ok(None);
    };
    let change = Change {
        to: OrderStatus::Rejected,
        reason: Some(SET_ASIDE_REJECTION.to_owned()),
        stock_deducted: false,
        actor: None,
        stock: None,
    };
    let rejected = change_status(&mut tx, &order, change).await?;
    tx.commit().await?;
    outbox.wake();
    tracing::warn!(%order_id, "the order's placement was set aside; the order is rejected");
    Ok(Some(rejected))
}

/// After the orders consumer set aside a status request: its requester hears it refused, as
/// for any other refusal (the API had answered `accepted: true`).
pub async fn refuse_set_aside_request(
    pool: &Db,
    outbox: &OutboxWaker,
    order_id: Uuid,
    request: &StatusChangeRequested,
) -> Result<(), ApplyError> {
    let mut tx = pool.begin().await?;
    if let Some(order) = db::orders::find(&mut tx, order_id).await? {
        refuse(&mut tx, &order, request, SET_ASIDE_REFUSAL).await?;
    }
    tx.commit().await?;
    outbox.wake();
    Ok(())
}

/// A status change of a locked order.
struct Change<'a> {
    to: OrderStatus,
    reason: Option<String>,
    stock_deducted: bool,
    actor: Option<Actor>,
    /// The stock the change moves; None when it moves none.
    stock: Option<StockChange<'a>>,
}

/// Stock a change moves, and why.
struct StockChange<'a> {
    reason: StockChangeReason,
    /// Locked items and the amount each moves by.
    moves: Vec<(&'a InventoryItemRow, i32)>,
}

impl<'a> StockChange<'a> {
    /// `moves` for `reason`; None when there are none.
    fn of(reason: StockChangeReason, moves: &'a [(InventoryItemRow, i32)]) -> Option<Self> {
        (!moves.is_empty()).then(|| StockChange {
            reason,
            moves: moves.iter().map(|(item, delta)| (item, *delta)).collect(),
        })
    }
}

/// A locked order's change as it will be written: the order as it leaves it, its history entry
/// and its events.
struct PreparedChange {
    order: OrderRow,
    entry: StatusChangeRow,
    events: Vec<OutboxMessage>,
    /// Why its stock moves; None when it moves none.
    stock_reason: Option<StockChangeReason>,
}

/// The order `change` leaves, its history entry and its events (the order's status event and
/// one stock event per item moved).
fn prepare_change(order: &OrderRow, change: &Change<'_>) -> PreparedChange {
    let at = Utc::now().trunc_subsecs(6);
    let rejection_reason = if change.to == OrderStatus::Rejected {
        change.reason.clone()
    } else {
        order.rejection_reason.clone()
    };
    let changed = OrderRow {
        status: change.to,
        version: order.version + 1,
        rejection_reason,
        stock_deducted: change.stock_deducted,
        updated_at: at,
        ..order.clone()
    };
    let mut events = match &change.stock {
        Some(stock) => {
            let moved: Vec<MovedItem> = stock
                .moves
                .iter()
                .map(|(item, delta)| item.moved_by(*delta, at))
                .collect();
            super::stock_moved_by_order(&moved, stock.reason, order.id)
        }
        None => Vec::new(),
    };
    let (entry, announced) = super::status_change(
        &changed,
        Some(order.status),
        change.reason.clone(),
        change.actor.clone(),
    );
    events.push((&announced).into());
    PreparedChange {
        order: changed,
        entry,
        events,
        stock_reason: change.stock.as_ref().map(|stock| stock.reason),
    }
}

impl PreparedChange {
    fn to_write<'a>(&'a self, stock_moves: &'a [(&'a InventoryItemRow, i32)]) -> ChangeToWrite<'a> {
        ChangeToWrite {
            order: &self.order,
            entry: &self.entry,
            stock: self.stock_reason.map(|reason| db::orders::StockMoves {
                reason,
                moves: stock_moves,
            }),
            events: &self.events,
        }
    }
}

/// Moves a locked order to `change.to`, bumps its version, moves its stock, and announces it
/// all, in one statement.
async fn change_status(
    tx: &mut Tx,
    order: &OrderRow,
    change: Change<'_>,
) -> sqlx::Result<OrderRow> {
    let prepared = prepare_change(order, &change);
    let moves = change
        .stock
        .as_ref()
        .map_or(&[][..], |stock| stock.moves.as_slice());
    db::orders::write_change(tx, &prepared.to_write(moves)).await
}

async fn refuse(
    tx: &mut Tx,
    order: &OrderRow,
    request: &StatusChangeRequested,
    message: &str,
) -> sqlx::Result<()> {
    db::outbox::enqueue(tx, &[refusal_of(order, request, message)]).await
}

/// The `StatusChangeRefused` announcing that `request` was refused for `message`.
fn refusal_of(order: &OrderRow, request: &StatusChangeRequested, message: &str) -> OutboxMessage {
    let refused = Event::new(
        order.id,
        order.version,
        EventBody::StatusChangeRefused(StatusChangeRefused {
            user_id: order.user_id.clone(),
            requested: request.to,
            current: order.status,
            message: message.to_owned(),
            requested_by: request.requested_by.clone(),
        }),
    );
    (&refused).into()
}
