//! Orders, their lines and their status history.

use super::inventory::InventoryItemRow;
use super::outbox::OutboxMessage;
use super::Tx;
use crate::domain::events::StockChangeReason;
use crate::domain::role::Role;
use crate::domain::status::OrderStatus;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(sqlx::FromRow, Clone, Debug, PartialEq)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: String,
    pub status: OrderStatus,
    pub rejection_reason: Option<String>,
    pub version: i32,
    pub stock_deducted: bool,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What the order costs, in minor units of `total_currency`, from its lines' prices when it
    /// was placed; None when a line's item had no price (or the order predates prices).
    pub total_amount: Option<i64>,
    pub total_currency: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderLineRow {
    pub order_id: Uuid,
    pub line_no: i32,
    pub sku: String,
    pub quantity: i32,
    /// The item's price when the order was placed (None: it had none).
    pub unit_price_amount: Option<i64>,
    pub unit_price_currency: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StatusChangeRow {
    pub order_id: Uuid,
    pub version: i32,
    pub from_status: Option<OrderStatus>,
    pub to_status: OrderStatus,
    pub reason: Option<String>,
    pub actor_id: Option<String>,
    pub actor_role: Option<Role>,
    pub at: DateTime<Utc>,
}

/// The columns of [`OrderRow`], for the statements assembled at run time (`order_listing`).
pub(super) const ORDER_COLUMNS: &str =
    "id, user_id, status, rejection_reason, version, stock_deducted, \
                             idempotency_key, created_at, updated_at, total_amount, total_currency";

pub const IDEMPOTENCY_CONSTRAINT: &str = "orders_user_idempotency_key";

/// The foreign key of an order line's SKU: violated when a line names an unknown SKU.
pub const LINE_SKU_CONSTRAINT: &str = "order_lines_sku_fkey";

/// Violated when an order's lines are priced in more than one currency (migration 0007).
pub const TOTAL_CURRENCY_CONSTRAINT: &str = "orders_total_one_currency";

/// Violated when an order's total does not fit GraphQL's Int (migration 0007).
pub const TOTAL_RANGE_CONSTRAINT: &str = "orders_total_in_range";

/// Raised (as a check violation) when an order line names a retired item (migration 0006).
pub const LINE_RETIRED_CONSTRAINT: &str = "order_lines_sku_retired";

/// An order to place: as it is stored PENDING, its lines (SKU, quantity) in the order given,
/// its first history entry, and its events.
pub struct Placement {
    pub order: OrderRow,
    pub lines: Vec<(String, i32)>,
    pub placed: StatusChangeRow,
    pub events: Vec<OutboxMessage>,
}

/// Places orders in one statement (so one round trip, atomic without a transaction): each
/// order as it is placed, its lines numbered from 1 and priced, its first history entry, its
/// events in the outbox, and its customer if new. Returns the orders as stored, in no
/// particular order. Fails, placing none, on [`IDEMPOTENCY_CONSTRAINT`] when a key was used,
/// on [`LINE_SKU_CONSTRAINT`] when a SKU does not exist, on [`LINE_RETIRED_CONSTRAINT`],
/// [`TOTAL_CURRENCY_CONSTRAINT`] or [`TOTAL_RANGE_CONSTRAINT`].
pub async fn insert_placed(
    db: impl PgExecutor<'_>,
    placements: &[&Placement],
) -> sqlx::Result<Vec<OrderRow>> {
    let orders = placements.len();
    let (mut ids, mut user_ids, mut keys, mut times) = (
        Vec::with_capacity(orders),
        Vec::with_capacity(orders),
        Vec::with_capacity(orders),
        Vec::with_capacity(orders),
    );
    let (mut versions, mut froms, mut tos, mut reasons, mut actors, mut roles) = (
        Vec::with_capacity(orders),
        Vec::with_capacity(orders),
        Vec::with_capacity(orders),
        Vec::with_capacity(orders),
        Vec::with_capacity(orders),
        Vec::with_capacity(orders),
    );
    let (mut line_orders, mut line_nos, mut line_skus, mut line_quantities) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for placement in placements {
        let (order, entry) = (&placement.order, &placement.placed);
        ids.push(order.id);
        user_ids.push(order.user_id.as_str());
        keys.push(order.idempotency_key.as_deref());
        times.push(order.created_at);
        versions.push(entry.version);
        froms.push(entry.from_status.map(OrderStatus::as_str));
        tos.push(entry.to_status.as_str());
        reasons.push(entry.reason.as_deref());
        actors.push(entry.actor_id.as_deref());
        roles.push(entry.actor_role.map(Role::as_str));
        for (line_no, (sku, quantity)) in (1..).zip(&placement.lines) {
            line_orders.push(order.id);
            line_nos.push(line_no);
            line_skus.push(sku.as_str());
            line_quantities.push(*quantity);
        }
    }
    let (event_ids, streams, message_keys, payloads, traceparents) =
        super::outbox::columns(placements.iter().flat_map(|placement| &placement.events));
    sqlx::query_as!(
        OrderRow,
        r#"-- Each order and its first history entry share status, version and time.
         -- Each line keeps its item's price now; each order its total, in the one currency of
         -- its lines ('MIXED' otherwise, which a check refuses).
         with incoming as (
             select * from unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[],
                                  $5::int[], $6::text[], $7::text[], $8::text[], $9::text[],
                                  $10::text[])
                 as p(id, user_id, idempotency_key, at, version, from_status, to_status, reason,
                      actor_id, actor_role)
         ), priced as (
             select line.order_id, line.line_no, line.sku, line.quantity, item.price_amount,
                    item.price_currency
             from unnest($11::uuid[], $12::int[], $13::text[], $14::int[])
                 as line(order_id, line_no, sku, quantity)
             -- One index lookup per line, whatever the plan would make of a join.
             left join lateral (select price_amount, price_currency from inventory_items
                                where inventory_items.sku = line.sku) item on true
         ), total as (
             select order_id,
                    case when bool_and(price_amount is not null)
                         then sum(quantity * price_amount) end as amount,
                    case when count(distinct price_currency) > 1 then 'MIXED'
                         when bool_and(price_amount is not null) then min(price_currency)
                    end as currency
             from priced group by order_id
         ), placed as (
             insert into orders (id, user_id, status, version, idempotency_key, created_at,
                                 updated_at, total_amount, total_currency)
             select p.id, p.user_id, p.to_status, p.version, p.idempotency_key, p.at, p.at,
                    total.amount, total.currency
             from incoming p join total on total.order_id = p.id
             returning *
         ), lines as (
             insert into order_lines (order_id, line_no, sku, quantity, unit_price_amount,
                                      unit_price_currency)
             select order_id, line_no, sku, quantity, price_amount, price_currency from priced
         ), history as (
             insert into order_status_history
                 (order_id, version, from_status, to_status, reason, actor_id, actor_role, at)
             select id, version, from_status, to_status, reason, actor_id, actor_role, at
             from incoming
         ), events as (
             insert into outbox (event_id, stream, message_key, payload, traceparent)
             select * from unnest($15::uuid[], $16::text[], $17::text[], $18::jsonb[],
                                  $19::text[])
         ), customers as (
             -- Whoever places an order is a customer oms knows, profile or not.
             insert into customers (id, created_at, updated_at)
             select distinct on (user_id) user_id, at, at from incoming order by user_id, at
             on conflict (id) do nothing
         )
         select id as "id!", user_id as "user_id!", status as "status!: OrderStatus",
                rejection_reason, version as "version!", stock_deducted as "stock_deducted!",
                idempotency_key, created_at as "created_at!", updated_at as "updated_at!",
                total_amount, total_currency
         from placed"#,
        &ids,
        &user_ids as _,
        &keys as _,
        &times,
        &versions,
        &froms as _,
        &tos as _,
        &reasons as _,
        &actors as _,
        &roles as _,
        &line_orders,
        &line_nos,
        &line_skus as _,
        &line_quantities,
        &event_ids,
        &streams as _,
        &message_keys as _,
        &payloads as _,
        &traceparents as _,
    )
    .fetch_all(db)
    .await
}

pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as!(
        OrderRow,
        r#"select id, user_id, status as "status: OrderStatus", rejection_reason, version, stock_deducted,
                idempotency_key, created_at, updated_at, total_amount, total_currency
         from orders where id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

pub async fn find_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<OrderRow>> {
    sqlx::query_as!(
        OrderRow,
        r#"select id, user_id, status as "status: OrderStatus", rejection_reason, version, stock_deducted,
                idempotency_key, created_at, updated_at, total_amount, total_currency
         from orders where id = any($1)"#,
        ids
    )
    .fetch_all(db)
    .await
}

/// An [`OrderRow`] of a statement's record that has every column of one under its name (moving
/// those fields out of it).
macro_rules! order_row_of {
    ($record:ident) => {
        OrderRow {
            id: $record.id,
            user_id: $record.user_id,
            status: $record.status,
            rejection_reason: $record.rejection_reason,
            version: $record.version,
            stock_deducted: $record.stock_deducted,
            idempotency_key: $record.idempotency_key,
            created_at: $record.created_at,
            updated_at: $record.updated_at,
            total_amount: $record.total_amount,
            total_currency: $record.total_currency,
        }
    };
}

/// Orders with their lines, in one statement: each order found, with its lines by line number.
pub async fn find_many_with_lines(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
) -> sqlx::Result<Vec<(OrderRow, Vec<OrderLineRow>)>> {
    let rows = sqlx::query!(
        r#"select o.id, o.user_id, o.status as "status: OrderStatus", o.rejection_reason,
                o.version, o.stock_deducted, o.idempotency_key, o.created_at, o.updated_at,
                o.total_amount, o.total_currency,
                l.line_no as "line_no?", l.sku as "sku?", l.quantity as "quantity?",
                l.unit_price_amount, l.unit_price_currency
         from orders o
         left join order_lines l on l.order_id = o.id and l.order_id = any($1)
         where o.id = any($1)
         order by o.id, l.line_no"#,
        ids
    )
    .fetch_all(db)
    .await?;
    let mut orders: Vec<(OrderRow, Vec<OrderLineRow>)> = Vec::new();
    for row in rows {
        if orders.last().is_none_or(|(order, _)| order.id != row.id) {
            let order = order_row_of!(row);
            orders.push((order, Vec::new()));
        }
        if let (Some(line_no), Some(sku), Some(quantity)) = (row.line_no, row.sku, row.quantity) {
            let (_, lines) = orders.last_mut().expect("the row's order was pushed");
            lines.push(OrderLineRow {
                order_id: row.id,
                line_no,
                sku,
                quantity,
                unit_price_amount: row.unit_price_amount,
                unit_price_currency: row.unit_price_currency,
            });
        }
    }
    Ok(orders)
}

/// An order read and locked for a consumer's event (see [`lock_for_events`]).
#[derive(Debug)]
pub struct OrderForEvent {
    /// False when the consumer applied this event before: nothing is to be done.
    pub first_time: bool,
    pub order: OrderRow,
}

/// An event of a batch with its order, as [`lock_for_events`] found them.
#[derive(Debug)]
pub struct BatchOrderForEvent {
    pub event_id: Uuid,
    pub locked: OrderForEvent,
}

/// In one round trip, for a batch of `(event_id, order_id)` pairs: marks each event as applied
/// by `consumer` (its inbox, so a redelivered event is recognised) and reads the order it names,
/// locking the orders' rows, in one global order (by id), until the transaction ends: every
/// status change of one order is serialised on this lock. An event whose order does not exist
/// is missing from the result.
pub async fn lock_for_events(
    tx: &mut Tx,
    consumer: &str,
    events: &[(Uuid, Uuid)],
) -> sqlx::Result<Vec<BatchOrderForEvent>> {
    let (event_ids, order_ids): (Vec<Uuid>, Vec<Uuid>) = events.iter().copied().unzip();
    let rows = sqlx::query!(
        r#"with inbox as (
             insert into processed_events (consumer, event_id)
             select $1, event_id from unnest($2::uuid[]) as event(event_id)
             on conflict do nothing
             returning event_id
         )
         select event.event_id as "event_id!",
                exists(select 1 from inbox where inbox.event_id = event.event_id)
                    as "first_time!",
                o.id, o.user_id, o.status as "status: OrderStatus", o.rejection_reason,
                o.version, o.stock_deducted, o.idempotency_key, o.created_at, o.updated_at,
                o.total_amount, o.total_currency
         from unnest($2::uuid[], $3::uuid[]) as event(event_id, order_id)
         join orders o on o.id = event.order_id
         -- Finds the orders through their index: joined alone, a batch of a few hundred events
         -- is planned as a hash join over every order.
         where o.id = any($3::uuid[])
         order by o.id
         for update of o"#,
        consumer,
        &event_ids,
        &order_ids,
    )
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| BatchOrderForEvent {
            event_id: row.event_id,
            locked: OrderForEvent {
                first_time: row.first_time,
                order: order_row_of!(row),
            },
        })
        .collect())
}

/// An order, its row locked until the transaction ends.
pub async fn lock(tx: &mut Tx, id: Uuid) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as!(
        OrderRow,
        r#"select id, user_id, status as "status: OrderStatus", rejection_reason, version, stock_deducted,
                idempotency_key, created_at, updated_at, total_amount, total_currency
         from orders where id = $1 for update"#,
        id
    )
    .fetch_optional(tx)
    .await
}

/// Seconds the oldest PENDING order has waited for its inventory check (0: none waits).
/// Order ids are time-ordered, so the status index finds it at once.
pub async fn oldest_pending_age_seconds(db: impl PgExecutor<'_>) -> sqlx::Result<f64> {
    sqlx::query_scalar!(
        r#"select coalesce(extract(epoch from now() - (
             select created_at from orders where status = 'PENDING' order by id limit 1
         ))::float8, 0) as "age!""#
    )
    .fetch_one(db)
    .await
}

pub async fn find_by_idempotency_key(
    db: impl PgExecutor<'_>,
    user_id: &str,
    key: &str,
) -> sqlx::Result<Option<OrderRow>> {
    sqlx::query_as!(
        OrderRow,
        r#"select id, user_id, status as "status: OrderStatus", rejection_reason, version, stock_deducted,
                idempotency_key, created_at, updated_at, total_amount, total_currency
         from orders where user_id = $1 and idempotency_key = $2"#,
        user_id,
        key
    )
    .fetch_optional(db)
    .await
}

pub async fn lines_of(
    db: impl PgExecutor<'_>,
    order_ids: &[Uuid],
) -> sqlx::Result<Vec<OrderLineRow>> {
    sqlx::query_as!(
        OrderLineRow,
        "select order_id, line_no, sku, quantity, unit_price_amount, unit_price_currency
         from order_lines where order_id = any($1) order by order_id, line_no",
        order_ids
    )
    .fetch_all(db)
    .await
}

pub async fn history_of(
    db: impl PgExecutor<'_>,
    order_ids: &[Uuid],
) -> sqlx::Result<Vec<StatusChangeRow>> {
    sqlx::query_as!(
        StatusChangeRow,
        r#"select order_id, version, from_status as "from_status: OrderStatus",
                to_status as "to_status: OrderStatus", reason, actor_id,
                actor_role as "actor_role: Role", at
         from order_status_history
         where order_id = any($1) order by order_id, version"#,
        order_ids
    )
    .fetch_all(db)
    .await
}

/// The changes of `user_id`'s orders made at or after `since`, oldest first.
pub async fn history_of_customer_since(
    db: impl PgExecutor<'_>,
    user_id: &str,
    since: DateTime<Utc>,
) -> sqlx::Result<Vec<StatusChangeRow>> {
    sqlx::query_as!(
        StatusChangeRow,
        r#"select order_id, version, from_status as "from_status: OrderStatus",
                to_status as "to_status: OrderStatus", reason, actor_id,
                actor_role as "actor_role: Role", at
         from order_status_history
         where order_id in (select id from orders where user_id = $1 and updated_at >= $2)
           and at >= $2
         order by at, order_id, version"#,
        user_id,
        since
    )
    .fetch_all(db)
    .await
}

/// An order's changes with a version above `after_version`, oldest first.
pub async fn history_after(
    db: impl PgExecutor<'_>,
    order_id: Uuid,
    after_version: i32,
) -> sqlx::Result<Vec<StatusChangeRow>> {
    sqlx::query_as!(
        StatusChangeRow,
        r#"select order_id, version, from_status as "from_status: OrderStatus",
                to_status as "to_status: OrderStatus", reason, actor_id,
                actor_role as "actor_role: Role", at
         from order_status_history
         where order_id = $1 and version > $2 order by version"#,
        order_id,
        after_version
    )
    .fetch_all(db)
    .await
}

/// One status change of a locked order, as [`write_change`] stores it.
pub struct ChangeToWrite<'a> {
    /// The order as the change leaves it (its version one above the locked row's).
    pub order: &'a OrderRow,
    /// Its history entry.
    pub entry: &'a StatusChangeRow,
    /// The stock the change moves; None when it moves none.
    pub stock: Option<StockMoves<'a>>,
    /// The events announcing the change.
    pub events: &'a [OutboxMessage],
}

/// Stock a change moves, and why.
#[derive(Clone, Copy)]
pub struct StockMoves<'a> {
    /// The ledger's reason.
    pub reason: StockChangeReason,
    /// Items locked in this transaction: each as it was locked (its version guards the update),
    /// with the signed amount it moves by.
    pub moves: &'a [(&'a InventoryItemRow, i32)],
}

impl ChangeToWrite<'_> {
    fn stock_moves(&self) -> &[(&InventoryItemRow, i32)] {
        self.stock.map_or(&[], |stock| stock.moves)
    }
}

/// [`write_change`] for the changes of several orders locked in this transaction, in one
/// statement: each item's moves summed into one update (guarded by the version it was locked
/// at, the first move's), every ledger row, order, history entry and event. An item moved by
/// several changes must appear in them in order, each with the version the one before left.
/// Fails with [`sqlx::Error::RowNotFound`] when an order or an item is no longer as locked.
pub async fn write_changes(tx: &mut Tx, changes: &[ChangeToWrite<'_>]) -> sqlx::Result<()> {
    // Per item: the version it was locked at, the summed delta, the number of moves, the time.
    let mut items: Vec<(&str, i32, i32, i32, DateTime<Utc>)> = Vec::new();
    let (mut ledger_skus, mut ledger_orders, mut ledger_deltas, mut ledger_reasons) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for change in changes {
        let Some(stock) = change.stock else { continue };
        for (item, delta) in stock.moves {
            match items.iter_mut().find(|moved| moved.0 == item.sku) {
                Some(moved) => {
                    moved.2 += delta;
                    moved.3 += 1;
                    moved.4 = change.order.updated_at;
                }
                None => items.push((&item.sku, item.version, *delta, 1, change.order.updated_at)),
            }
            ledger_skus.push(item.sku.as_str());
            ledger_orders.push(change.order.id);
            ledger_deltas.push(*delta);
            ledger_reasons.push(super::inventory::ledger_reason(stock.reason));
        }
    }
    let orders: Vec<&OrderRow> = changes.iter().map(|change| change.order).collect();
    let entries: Vec<&StatusChangeRow> = changes.iter().map(|change| change.entry).collect();
    let (event_ids, streams, keys, payloads, traceparents) =
        super::outbox::columns(changes.iter().flat_map(|change| change.events));
    let item_skus: Vec<&str> = items.iter().map(|item| item.0).collect();
    let item_versions: Vec<i32> = items.iter().map(|item| item.1).collect();
    let item_deltas: Vec<i32> = items.iter().map(|item| item.2).collect();
    let item_moves: Vec<i32> = items.iter().map(|item| item.3).collect();
    let item_times: Vec<DateTime<Utc>> = items.iter().map(|item| item.4).collect();
    let order_ids: Vec<Uuid> = orders.iter().map(|order| order.id).collect();
    let order_statuses: Vec<&str> = orders.iter().map(|order| order.status.as_str()).collect();
    let order_versions: Vec<i32> = orders.iter().map(|order| order.version).collect();
    let rejection_reasons: Vec<Option<&str>> = orders
        .iter()
        .map(|order| order.rejection_reason.as_deref())
        .collect();
    let stock_deducted: Vec<bool> = orders.iter().map(|order| order.stock_deducted).collect();
    let order_times: Vec<DateTime<Utc>> = orders.iter().map(|order| order.updated_at).collect();
    let entry_orders: Vec<Uuid> = entries.iter().map(|entry| entry.order_id).collect();
    let entry_versions: Vec<i32> = entries.iter().map(|entry| entry.version).collect();
    let entry_froms: Vec<Option<&str>> = entries
        .iter()
        .map(|entry| entry.from_status.map(OrderStatus::as_str))
        .collect();
    let entry_tos: Vec<&str> = entries
        .iter()
        .map(|entry| entry.to_status.as_str())
        .collect();
    let entry_reasons: Vec<Option<&str>> = entries
        .iter()
        .map(|entry| entry.reason.as_deref())
        .collect();
    let entry_actors: Vec<Option<&str>> = entries
        .iter()
        .map(|entry| entry.actor_id.as_deref())
        .collect();
    let entry_roles: Vec<Option<&str>> = entries
        .iter()
        .map(|entry| entry.actor_role.map(Role::as_str))
        .collect();
    let entry_times: Vec<DateTime<Utc>> = entries.iter().map(|entry| entry.at).collect();
    let written = sqlx::query!(
        r#"with moved as (
             update inventory_items item
             set quantity = item.quantity + m.delta, version = item.version + m.moves,
                 updated_at = m.at
             from unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::timestamptz[])
                 as m(sku, version, delta, moves, at)
             -- `any` lets the items be found through the SKU index: joined alone, a batch
             -- of a few hundred is planned as a hash join over the whole catalogue.
             where item.sku = m.sku and item.version = m.version and item.sku = any($1::text[])
             returning item.sku
         ), ledger as (
             insert into stock_movements (sku, order_id, delta, reason)
             select * from unnest($6::text[], $7::uuid[], $8::int[], $9::text[])
         ), changed as (
             update orders o
             set status = c.status, version = c.version, rejection_reason = c.rejection_reason,
                 stock_deducted = c.stock_deducted, updated_at = c.updated_at
             from unnest($10::uuid[], $11::text[], $12::int[], $13::text[], $14::bool[],
                         $15::timestamptz[])
                 as c(id, status, version, rejection_reason, stock_deducted, updated_at)
             where o.id = c.id and o.version = c.version - 1 and o.id = any($10::uuid[])
             returning o.id
         ), history as (
             insert into order_status_history
                 (order_id, version, from_status, to_status, reason, actor_id, actor_role, at)
             select * from unnest($16::uuid[], $17::int[], $18::text[], $19::text[], $20::text[],
                                  $21::text[], $22::text[], $23::timestamptz[])
         ), events as (
             insert into outbox (event_id, stream, message_key, payload, traceparent)
             select * from unnest($24::uuid[], $25::text[], $26::text[], $27::jsonb[],
                                  $28::text[])
         )
         select (select count(*) from changed) as "orders_changed!",
                (select count(*) from moved) as "items_moved!""#,
        &item_skus as _,
        &item_versions,
        &item_deltas,
        &item_moves,
        &item_times,
        &ledger_skus as _,
        &ledger_orders,
        &ledger_deltas,
        &ledger_reasons as _,
        &order_ids,
        &order_statuses as _,
        &order_versions,
        &rejection_reasons as _,
        &stock_deducted,
        &order_times,
        &entry_orders,
        &entry_versions,
        &entry_froms as _,
        &entry_tos as _,
        &entry_reasons as _,
        &entry_actors as _,
        &entry_roles as _,
        &entry_times,
        &event_ids,
        &streams as _,
        &keys as _,
        &payloads as _,
        &traceparents as _,
    )
    .fetch_one(tx)
    .await?;
    if written.orders_changed == changes.len() as i64 && written.items_moved == items.len() as i64 {
        Ok(())
    } else {
        Err(sqlx::Error::RowNotFound)
    }
}

/// Writes a status change in one statement: the stock moves and their ledger rows, the order
/// (only if it is still at the version before the change), its history entry, and its events
/// in the outbox. The stock check constraint refuses any stock below zero.
/// It takes the transaction that locked the order and the items: it fails with
/// [`sqlx::Error::RowNotFound`] when the order or an item is no longer as locked, and the
/// transaction, rolled back, undoes whatever part of the statement applied.
pub async fn write_change(tx: &mut Tx, change: &ChangeToWrite<'_>) -> sqlx::Result<OrderRow> {
    let order = change.order;
    let moves = change.stock_moves();
    let mut skus = Vec::with_capacity(moves.len());
    let mut deltas = Vec::with_capacity(moves.len());
    let mut item_versions = Vec::with_capacity(moves.len());
    for (item, delta) in moves {
        skus.push(item.sku.as_str());
        deltas.push(*delta);
        item_versions.push(item.version);
    }
    let (event_ids, streams, keys, payloads, traceparents) = super::outbox::columns(change.events);
    let entry = change.entry;
    let written = sqlx::query!(
        r#"-- The stock, the order and its history entry share the change's time ($6).
         with moved as (
             update inventory_items item
             set quantity = item.quantity + m.delta, version = item.version + 1,
                 updated_at = $6
             from unnest($7::text[], $8::int[], $9::int[]) as m(sku, delta, version)
             where item.sku = m.sku and item.version = m.version
             returning item.sku, m.delta
         ), ledger as (
             insert into stock_movements (sku, order_id, delta, reason)
             select sku, $1, delta, $10 from moved
         ), changed as (
             update orders
             set status = $2, version = $3, rejection_reason = $4, stock_deducted = $5,
                 updated_at = $6
             where id = $1 and version = $3 - 1
             returning *
         ), history as (
             insert into order_status_history
                 (order_id, version, from_status, to_status, reason, actor_id, actor_role, at)
             select id, version, $11, status, $12, $13, $14, updated_at from changed
         ), events as (
             insert into outbox (event_id, stream, message_key, payload, traceparent)
             select * from unnest($15::uuid[], $16::text[], $17::text[], $18::jsonb[],
                                  $19::text[])
         )
         select id as "id!", user_id as "user_id!", status as "status!: OrderStatus",
                rejection_reason, version as "version!", stock_deducted as "stock_deducted!",
                idempotency_key, created_at as "created_at!", updated_at as "updated_at!",
                total_amount, total_currency,
                (select count(*) from moved) as "items_moved!"
         from changed"#,
        order.id,
        order.status.as_str(),
        order.version,
        order.rejection_reason.as_deref(),
        order.stock_deducted,
        order.updated_at,
        &skus as _,
        &deltas,
        &item_versions,
        change
            .stock
            .map(|stock| super::inventory::ledger_reason(stock.reason)),
        entry.from_status.map(OrderStatus::as_str),
        entry.reason.as_deref(),
        entry.actor_id.as_deref(),
        entry.actor_role.map(Role::as_str),
        &event_ids,
        &streams as _,
        &keys as _,
        &payloads as _,
        &traceparents as _,
    )
    .fetch_optional(tx)
    .await?;
    match written {
        Some(written) if written.items_moved == moves.len() as i64 => Ok(OrderRow {
            id: written.id,
            user_id: written.user_id,
            status: written.status,
            rejection_reason: written.rejection_reason,
            version: written.version,
            stock_deducted: written.stock_deducted,
            idempotency_key: written.idempotency_key,
            created_at: written.created_at,
            updated_at: written.updated_at,
            total_amount: written.total_amount,
            total_currency: written.total_currency,
        }),
        _ => Err(sqlx::Error::RowNotFound),
    }
}
