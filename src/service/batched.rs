//! Writes that arrive together go to the database together: the writes that come while earlier
//! ones are being written are written in one statement, one round trip and one commit, instead
//! of one each.
//!
//! Nothing waits for a batch to fill: a write that finds a writer free is written at once,
//! alone. Only when every writer is busy do writes queue, and the next free writer takes all
//! that wait (up to the batch's maximum). A batch that fails (for one item's fault, say) is
//! split in halves and retried, down to single items, so each item gets its own answer and one
//! bad item never fails its neighbours.
//!
//! Orders placed ([`super::placer`]) and status changes requested ([`super::status_requests`])
//! are written this way.

use prometheus::{Histogram, IntGauge};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Writes that may wait for a writer before writing waits for room in the queue.
const QUEUE: usize = 4096;

/// One kind of write, of any number of items in one statement.
pub trait BatchWrite: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Written: Send + 'static;

    /// Writes `items` in one statement, all or none: what was written for each item, in the
    /// order of `items`.
    fn write<'a>(
        &'a self,
        items: &'a [&'a Self::Item],
    ) -> impl Future<Output = sqlx::Result<Vec<Self::Written>>> + Send + 'a;
}

/// What a batched write reports: how many items each statement wrote, and how many wait for a
/// free writer.
#[derive(Clone)]
pub struct BatchMetrics {
    pub items_per_statement: Histogram,
    pub waiting: IntGauge,
}

/// An item waiting for its statement, and where its answer goes.
struct Waiting<W: BatchWrite> {
    item: W::Item,
    answer: oneshot::Sender<sqlx::Result<W::Written>>,
}

/// Writes items with `W`, in batches when they arrive faster than one statement commits.
pub struct Batched<W: BatchWrite> {
    write: Arc<W>,
    /// None when batching is off (a batch of at most one).
    queue: Option<mpsc::Sender<Waiting<W>>>,
    metrics: BatchMetrics,
}

impl<W: BatchWrite> Clone for Batched<W> {
    fn clone(&self) -> Self {
        Batched {
            write: self.write.clone(),
            queue: self.queue.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<W: BatchWrite> Batched<W> {
    /// Writes up to `batch_max` items per statement (1: each item alone, with no task in
    /// between) with up to `writers` statements at once. Batching starts a task, so this runs
    /// inside the runtime.
    pub fn start(write: W, batch_max: u16, writers: u16, metrics: BatchMetrics) -> Self {
        let write = Arc::new(write);
        if batch_max <= 1 {
            return Batched {
                write,
                queue: None,
                metrics,
            };
        }
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(take_batches(
            write.clone(),
            waiting,
            batch_max,
            writers,
            metrics.clone(),
        ));
        Batched {
            write,
            queue: Some(queue),
            metrics,
        }
    }

    /// Writes one item: what was written, or the statement's error as if it were written alone.
    pub async fn write(&self, item: W::Item) -> sqlx::Result<W::Written> {
        let Some(queue) = &self.queue else {
            self.metrics.items_per_statement.observe(1.0);
            return only_item(self.write.write(&[&item]).await);
        };
        let (answer, answered) = oneshot::channel();
        self.metrics.waiting.inc();
        if queue.send(Waiting { item, answer }).await.is_err() {
            self.metrics.waiting.dec();
            return Err(sqlx::Error::PoolClosed);
        }
        // The writer always answers; it is gone only when the instance is stopping.
        answered.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

fn only_item<T>(written: sqlx::Result<Vec<T>>) -> sqlx::Result<T> {
    written?.pop().ok_or(sqlx::Error::RowNotFound)
}

/// Takes what waits, up to `batch_max`, whenever a writer is free, and writes it on a task of
/// its own; ends when every [`Batched`] handle is dropped.
async fn take_batches<W: BatchWrite>(
    write: Arc<W>,
    mut waiting: mpsc::Receiver<Waiting<W>>,
    batch_max: u16,
    writers: u16,
    metrics: BatchMetrics,
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
        metrics.waiting.sub(batch.len() as i64);
        let (write, metrics) = (write.clone(), metrics.clone());
        tokio::spawn(async move {
            write_in_halves(&*write, batch, &metrics).await;
            drop(writer);
        });
    }
}

/// Writes `batch` in one statement; when that fails, each half again, down to single items,
/// which get their own error.
async fn write_in_halves<W: BatchWrite>(write: &W, batch: Vec<Waiting<W>>, metrics: &BatchMetrics) {
    let mut parts = vec![batch];
    while let Some(mut part) = parts.pop() {
        metrics.items_per_statement.observe(part.len() as f64);
        let items: Vec<&W::Item> = part.iter().map(|waiting| &waiting.item).collect();
        match write.write(&items).await {
            Ok(written) => {
                // A writer that answers for fewer items than it was given breaks its contract:
                // the items it left out get an error, never a wrong answer.
                let answers = written
                    .into_iter()
                    .map(Ok)
                    .chain(std::iter::repeat_with(|| Err(sqlx::Error::RowNotFound)));
                for (waiting, answer) in part.into_iter().zip(answers) {
                    // A request that gave up waiting no longer listens; its item is written all
                    // the same.
                    let _ = waiting.answer.send(answer);
                }
            }
            Err(error) if part.len() == 1 => {
                let waiting = part.pop().expect("one item");
                let _ = waiting.answer.send(Err(error));
            }
            Err(error) => {
                tracing::debug!(items = part.len(), error = %error, "a batch of writes failed; writing its halves apart");
                let second = part.split_off(part.len() / 2);
                parts.push(second);
                parts.push(part);
            }
        }
    }
}
