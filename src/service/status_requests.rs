//! A requested status change: checked against the order as it stands now, then queued on the
//! `orders` stream. The orders consumer checks it again when it applies it, because the order
//! may move in between; the outcome (applied or refused) reaches subscribers either way.
//!
//! Requests that arrive while earlier ones are being written are queued together, in one
//! statement and one commit ([`super::batched`]).

use super::batched::{BatchMetrics, BatchWrite, Batched};
use crate::auth::Viewer;
use crate::db;
use crate::db::orders::OrderRow;
use crate::db::outbox::OutboxMessage;
use crate::db::Db;
use crate::domain::events::{Actor, Event, EventBody, StatusChangeRequested};
use crate::domain::order::check_reason;
use crate::domain::permissions::may_request_status;
use crate::domain::status::{ChangeOrigin, OrderStatus, Transition};
use crate::domain::user_error::{UserError, UserErrorCode};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::outbox::OutboxWaker;
use std::future::Future;
use uuid::Uuid;

/// Queues status change requests in the outbox, in batches when they arrive faster than one
/// statement commits.
pub type StatusRequests = Batched<QueueRequests>;

/// Queueing requests' events in one statement, then waking the relay.
pub struct QueueRequests {
    db: Db,
    outbox: OutboxWaker,
}

impl BatchWrite for QueueRequests {
    type Item = OutboxMessage;
    type Written = ();

    async fn write(&self, requests: &[&OutboxMessage]) -> sqlx::Result<Vec<()>> {
        db::outbox::enqueue(&self.db, requests).await?;
        self.outbox.wake();
        Ok(vec![(); requests.len()])
    }
}

impl StatusRequests {
    /// Queues up to `batch_max` requests per statement (1: each alone) with up to `writers`
    /// statements at once.
    pub fn start_queueing(
        db: Db,
        outbox: OutboxWaker,
        batch_max: u16,
        writers: u16,
        metrics: &Metrics,
    ) -> StatusRequests {
        Batched::start(
            QueueRequests { db, outbox },
            batch_max,
            writers,
            BatchMetrics {
                items_per_statement: metrics.status_request_batch_requests.clone(),
                waiting: metrics.status_requests_waiting.clone(),
            },
        )
    }
}

pub struct StatusRequestOutcome {
    /// The order as it stands (before the change is applied); absent when it is not visible.
    pub order: Option<OrderRow>,
    /// The change was queued (or the order already has that status).
    pub accepted: bool,
    pub user_errors: Vec<UserError>,
}

impl StatusRequestOutcome {
    fn refused(order: Option<OrderRow>, error: UserError) -> Self {
        StatusRequestOutcome {
            order,
            accepted: false,
            user_errors: vec![error],
        }
    }
}

/// Checks and queues a change of order `order_id`. `read_order` reads that order (None when
/// there is none); it runs once the request itself is valid. The API reads through its shared
/// loader, with other requests' reads.
#[tracing::instrument(name = "request status change", skip_all, fields(%order_id))]
pub async fn request_status_change<E: Into<AppError>>(
    requests: &StatusRequests,
    viewer: &Viewer,
    order_id: Uuid,
    read_order: impl Future<Output = Result<Option<OrderRow>, E>>,
    to: OrderStatus,
    reason: Option<String>,
) -> Result<StatusRequestOutcome, AppError> {
    if let Some(error) = reason.as_deref().and_then(check_reason) {
        return Ok(StatusRequestOutcome::refused(None, error));
    }
    let order = match read_order.await.map_err(Into::into)? {
        Some(order) if viewer.may_see_order_of(&order.user_id) => order,
        _ => {
            return Ok(StatusRequestOutcome::refused(
                None,
                UserError::new(
                    ["orderId"],
                    UserErrorCode::OrderNotFound,
                    format!("no order {order_id} is visible to you"),
                ),
            ))
        }
    };
    let owns_order = order.user_id == viewer.user_id;
    if let Err(refusal) = may_request_status(viewer.role, owns_order, to) {
        return Ok(StatusRequestOutcome::refused(
            Some(order),
            UserError::new(["status"], UserErrorCode::NotPermitted, refusal.to_string()),
        ));
    }
    match order.status.transition_to(to, ChangeOrigin::Request) {
        Err(refusal) => Ok(StatusRequestOutcome::refused(
            Some(order),
            UserError::new(
                ["status"],
                UserErrorCode::InvalidTransition,
                refusal.to_string(),
            ),
        )),
        Ok(Transition::NoOp) => Ok(StatusRequestOutcome {
            order: Some(order),
            accepted: true,
            user_errors: vec![],
        }),
        Ok(Transition::Apply { .. }) => {
            let request = Event::new(
                order.id,
                order.version,
                EventBody::StatusChangeRequested(StatusChangeRequested {
                    to,
                    reason,
                    requested_by: Actor {
                        user_id: viewer.user_id.clone(),
                        role: viewer.role,
                    },
                }),
            );
            requests.write(OutboxMessage::from(&request)).await?;
            tracing::info!(order_id = %order.id, event_id = %request.event_id, to = %to, "status change queued");
            Ok(StatusRequestOutcome {
                order: Some(order),
                accepted: true,
                user_errors: vec![],
            })
        }
    }
}
