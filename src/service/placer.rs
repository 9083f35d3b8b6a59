//! Orders placed together: the placements that arrive while earlier ones are being written go
//! into the database in one statement, one round trip and one commit, instead of one each.
//!
//! Nothing waits for a batch to fill: a placement that finds a writer free is written at once,
//! alone. Only when every writer is busy do placements queue, and the next free writer takes
//! all that wait (up to the batch's maximum). A batch that fails (a used idempotency key, an
//! unknown or retired SKU, a total out of range: any one order's fault) is split in halves and
//! retried, down to single orders, so each order gets its own answer and one bad order never
//! fails its neighbours.

use crate::db;
use crate::db::orders::{OrderRow, Placement};
use crate::db::Db;
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

/// Placements that may wait for a writer before placing waits for room in the queue.
const QUEUE: usize = 4096;

/// A placement waiting for its statement, and where its answer goes.
struct Waiting {
    placement: Placement,
    answer: oneshot::Sender<sqlx::Result<OrderRow>>,
}

/// Places orders, in batches when they arrive faster than one statement commits.
#[derive(Clone)]
pub struct Placer {
    db: Db,
    /// None when batching is off (a batch of at most one).
    queue: Option<mpsc::Sender<Waiting>>,
    metrics: Metrics,
}

impl Placer {
    /// A placer writing up to `batch_max` orders per statement (1: each order alone, with no
    /// task in between) with up to `writers` statements at once. Batching starts a task, so
    /// this runs inside the runtime.
    pub fn start(db: Db, batch_max: u16, writers: u16, metrics: Metrics) -> Placer {
        if batch_max <= 1 {
            return Placer {
                db,
                queue: None,
                metrics,
            };
        }
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(take_batches(
            db.clone(),
            waiting,
            batch_max,
            writers,
            metrics.clone(),
        ));
        Placer {
            db,
            queue: Some(queue),
            metrics,
        }
    }

    /// Places one order: the order as stored, or the statement's error as if it were placed
    /// alone (see [`db::orders::insert_placed`]).
    pub async fn place(&self, placement: Placement) -> sqlx::Result<OrderRow> {
        let Some(queue) = &self.queue else {
            self.metrics.place_batch_orders.observe(1.0);
            return only_order(db::orders::insert_placed(&self.db, &[&placement]).await);
        };
        let (answer, answered) = oneshot::channel();
        self.metrics.placements_waiting.inc();
        if queue.send(Waiting { placement, answer }).await.is_err() {
            self.metrics.placements_waiting.dec();
            return Err(sqlx::Error::PoolClosed);
        }
        // The writer always answers; it is gone only when the instance is stopping.
        answered.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

fn only_order(stored: sqlx::Result<Vec<OrderRow>>) -> sqlx::Result<OrderRow> {
    stored?.pop().ok_or(sqlx::Error::RowNotFound)
}

/// Takes what waits, up to `batch_max`, whenever a writer is free, and writes it on a task of
/// its own; ends when the placer is dropped.
async fn take_batches(
    db: Db,
    mut waiting: mpsc::Receiver<Waiting>,
    batch_max: u16,
    writers: u16,
    metrics: Metrics,
) {
    let writers = Arc::new(Semaphore::new(usize::from(writers.max(1))));
    loop {
        let Ok(writer) = writers.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < usize::from(batch_max) {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        metrics.placements_waiting.sub(batch.len() as i64);
        let (db, metrics) = (db.clone(), metrics.clone());
        tokio::spawn(async move {
            write(&db, batch, &metrics).await;
            drop(writer);
        });
    }
}

/// Writes `batch` in one statement; when that fails, each half again, down to single orders,
/// which get their own error.
async fn write(db: &Db, batch: Vec<Waiting>, metrics: &Metrics) {
    let mut parts = vec![batch];
    while let Some(mut part) = parts.pop() {
        let placements: Vec<&Placement> = part.iter().map(|waiting| &waiting.placement).collect();
        metrics.place_batch_orders.observe(part.len() as f64);
        match db::orders::insert_placed(db, &placements).await {
            Ok(stored) => answer_each(part, stored),
            Err(error) if part.len() == 1 => {
                let waiting = part.pop().expect("one placement");
                let _ = waiting.answer.send(Err(error));
            }
            Err(error) => {
                tracing::debug!(orders = part.len(), error = %error, "a batch of placements failed; placing its halves apart");
                let second = part.split_off(part.len() / 2);
                parts.push(second);
                parts.push(part);
            }
        }
    }
}

/// Sends each waiting placement its stored order.
fn answer_each(part: Vec<Waiting>, stored: Vec<OrderRow>) {
    let mut by_id: HashMap<Uuid, OrderRow> =
        stored.into_iter().map(|order| (order.id, order)).collect();
    for waiting in part {
        let order = by_id
            .remove(&waiting.placement.order.id)
            .ok_or(sqlx::Error::RowNotFound);
        // A request that gave up waiting no longer listens; its order is placed all the same.
        let _ = waiting.answer.send(order);
    }
}
