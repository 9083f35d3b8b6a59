//! Placing an order: validated, stored PENDING with its lines and first history entry, and
//! announced to the inventory check and to subscribers, all in one statement (one round trip),
//! which it may share with other orders placed at the same moment ([`Placer`]).

use super::placer::Placer;
use super::Outcome;
use crate::auth::Viewer;
use crate::db;
use crate::db::orders::{OrderRow, Placement};
use crate::db::Db;
use crate::domain::events::{Actor, Event, EventBody, EventLine, OrderPlaced};
use crate::domain::order::{check_idempotency_key, validate_lines, RequestedLine};
use crate::domain::status::OrderStatus;
use crate::domain::user_error::{UserError, UserErrorCode};
use crate::error::AppError;
use crate::outbox::OutboxWaker;
use chrono::{SubsecRound, Utc};
use uuid::Uuid;

#[tracing::instrument(name = "place order", skip_all, fields(user_id = %viewer.user_id))]
pub async fn place_order(
    pool: &Db,
    placer: &Placer,
    outbox: &OutboxWaker,
    viewer: &Viewer,
    lines: Vec<RequestedLine>,
    idempotency_key: Option<String>,
) -> Result<Outcome<OrderRow>, AppError> {
    let mut errors = validate_lines(&lines);
    errors.extend(idempotency_key.as_deref().and_then(check_idempotency_key));
    if !errors.is_empty() {
        return Ok(Outcome::Refused(errors));
    }
    if let Some(key) = &idempotency_key {
        if let Some(existing) =
            db::orders::find_by_idempotency_key(pool, &viewer.user_id, key).await?
        {
            return replay(pool, existing, &lines).await;
        }
    }
    // The order as it will be stored; the statement that stores it also writes its lines, its
    // first history entry and its events, in one round trip.
    let now = Utc::now().trunc_subsecs(6);
    let pending = OrderRow {
        id: Uuid::now_v7(),
        user_id: viewer.user_id.clone(),
        status: OrderStatus::Pending,
        rejection_reason: None,
        version: 1,
        stock_deducted: false,
        idempotency_key: idempotency_key.clone(),
        created_at: now,
        updated_at: now,
        // The statement that stores the order prices it.
        total_amount: None,
        total_currency: None,
    };
    let placed = Event::new(
        pending.id,
        pending.version,
        EventBody::OrderPlaced(OrderPlaced {
            user_id: pending.user_id.clone(),
            lines: lines
                .iter()
                .map(|l| EventLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                })
                .collect(),
        }),
    );
    let actor = Actor {
        user_id: viewer.user_id.clone(),
        role: viewer.role,
    };
    let (first_entry, changed) = super::status_change(&pending, None, None, Some(actor));
    let placement = Placement {
        order: pending,
        lines: lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect(),
        placed: first_entry,
        events: vec![(&placed).into(), (&changed).into()],
    };
    let order = match placer.place(placement).await {
        Ok(order) => order,
        // The same key placed concurrently: the other request won; answer with its order.
        Err(e) if db::is_unique_violation(&e, db::orders::IDEMPOTENCY_CONSTRAINT) => {
            let key = idempotency_key.as_deref().unwrap_or_default();
            let existing = db::orders::find_by_idempotency_key(pool, &viewer.user_id, key)
                .await?
                .ok_or_else(|| AppError::Internal(e.into()))?;
            return replay(pool, existing, &lines).await;
        }
        Err(e) if db::is_check_violation(&e, db::orders::TOTAL_CURRENCY_CONSTRAINT) => {
            return Ok(Outcome::Refused(vec![UserError::new(
                ["items"],
                UserErrorCode::CurrencyMismatch,
                "the items are priced in more than one currency; one order takes one currency",
            )]));
        }
        Err(e) if db::is_check_violation(&e, db::orders::TOTAL_RANGE_CONSTRAINT) => {
            return Ok(Outcome::Refused(vec![UserError::new(
                ["items"],
                UserErrorCode::TotalTooLarge,
                "the order's total is more than 2147483647 minor units; split the order",
            )]));
        }
        Err(e) if db::is_check_violation(&e, db::orders::LINE_RETIRED_CONSTRAINT) => {
            let retired = retired_skus(pool, &lines).await?;
            if retired.is_empty() {
                return Err(AppError::Internal(e.into()));
            }
            return Ok(Outcome::Refused(retired));
        }
        Err(e) if db::is_foreign_key_violation(&e, db::orders::LINE_SKU_CONSTRAINT) => {
            let unknown = unknown_skus(pool, &lines).await?;
            if unknown.is_empty() {
                return Err(AppError::Internal(e.into()));
            }
            return Ok(Outcome::Refused(unknown));
        }
        Err(e) => return Err(e.into()),
    };
    outbox.wake();
    tracing::info!(order_id = %order.id, user_id = %order.user_id, lines = lines.len(), "order placed");
    Ok(Outcome::Done(order))
}

/// A repeated idempotency key: the first order if the lines are the same, a user error if not.
async fn replay(
    pool: &Db,
    existing: OrderRow,
    lines: &[RequestedLine],
) -> Result<Outcome<OrderRow>, AppError> {
    // The same lines in any order are the same order.
    let mut stored: Vec<(String, i32)> = db::orders::lines_of(pool, &[existing.id])
        .await?
        .into_iter()
        .map(|l| (l.sku, l.quantity))
        .collect();
    let mut requested: Vec<(String, i32)> =
        lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
    stored.sort();
    requested.sort();
    if stored == requested {
        Ok(Outcome::Done(existing))
    } else {
        Ok(Outcome::Refused(vec![UserError::new(
            ["idempotencyKey"],
            UserErrorCode::IdempotencyKeyReused,
            format!(
                "this idempotency key was already used for order {} with different lines",
                existing.id
            ),
        )]))
    }
}

/// One `ITEM_RETIRED` per line naming a retired item.
async fn retired_skus(pool: &Db, lines: &[RequestedLine]) -> Result<Vec<UserError>, AppError> {
    let skus: Vec<String> = lines.iter().map(|l| l.sku.clone()).collect();
    let items = db::inventory::find_by_skus(pool, &skus).await?;
    Ok(lines
        .iter()
        .enumerate()
        .filter(|(_, line)| {
            items
                .iter()
                .any(|item| item.sku == line.sku && item.retired_at.is_some())
        })
        .map(|(index, line)| {
            UserError::new(
                ["items".to_owned(), index.to_string(), "sku".to_owned()],
                UserErrorCode::ItemRetired,
                format!("{} is retired and cannot be ordered", line.sku),
            )
        })
        .collect())
}

async fn unknown_skus(pool: &Db, lines: &[RequestedLine]) -> Result<Vec<UserError>, AppError> {
    let skus: Vec<String> = lines.iter().map(|l| l.sku.clone()).collect();
    let known = db::inventory::find_by_skus(pool, &skus).await?;
    Ok(lines
        .iter()
        .enumerate()
        .filter(|(_, line)| !known.iter().any(|item| item.sku == line.sku))
        .map(|(index, line)| {
            UserError::new(
                ["items".to_owned(), index.to_string(), "sku".to_owned()],
                UserErrorCode::UnknownSku,
                format!("no inventory item has SKU {}", line.sku),
            )
        })
        .collect())
}
