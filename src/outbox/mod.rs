//! The outbox relay: publishes committed outbox rows to Kafka, at least once, in the order they
//! were written, then deletes them.
//!
//! Only one relay publishes at a time across all instances (a transaction-scoped advisory lock
//! held while a batch is in flight), and the producer is idempotent, so one order's events reach
//! its partition in order. Relays wake on a Postgres NOTIFY sent by the committing transaction,
//! and poll once a second in case a notification is missed.

use crate::config::KafkaArgs;
use crate::db;
use crate::domain::events::Stream;
use crate::metrics::Metrics;
use anyhow::Context;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const POLL_INTERVAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Relay {
    pool: PgPool,
    producer: FutureProducer,
    kafka: KafkaArgs,
    batch_size: i64,
    metrics: Metrics,
    /// Set when a delivery failed in a way that leaves the idempotent producer unusable.
    producer_broken: AtomicBool,
}

/// Delivery errors after which an idempotent producer's identity is no longer accepted.
fn breaks_the_producer(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::Fatal
        )
    )
}

impl Relay {
    pub fn new(
        pool: PgPool,
        producer: FutureProducer,
        kafka: KafkaArgs,
        batch_size: i64,
        metrics: Metrics,
    ) -> Self {
        Relay {
            pool,
            producer,
            kafka,
            batch_size,
            metrics,
            producer_broken: AtomicBool::new(false),
        }
    }

    /// Publishes one batch. Returns how many events left the outbox (0 when it is empty or
    /// another relay is active). On error nothing is deleted and the batch is sent again later.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        if !db::outbox::try_lock_relay(&mut tx).await? {
            return Ok(0);
        }
        let rows = db::outbox::oldest(&mut tx, self.batch_size).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            let stream = Stream::parse(&row.stream).with_context(|| {
                format!("outbox row {} names unknown stream {}", row.id, row.stream)
            })?;
            let record = FutureRecord::to(self.kafka.topic(stream))
                .key(&row.message_key)
                .payload(&row.payload);
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(error, _)| error)
                .context("queueing an outbox event in the producer")?;
            deliveries.push(delivery);
        }
        for delivery in deliveries {
            let delivered = delivery.await.context("the producer dropped a delivery")?;
            if let Err((error, _)) = delivered {
                if breaks_the_producer(&error) {
                    self.producer_broken.store(true, Ordering::Relaxed);
                }
                return Err(
                    anyhow::Error::new(error).context("the broker did not take an outbox event")
                );
            }
        }
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        db::outbox::delete(&mut tx, &ids).await?;
        tx.commit().await?;
        self.metrics.outbox_published.inc_by(ids.len() as u64);
        self.metrics
            .outbox_publish_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(published = ids.len(), "outbox batch published");
        Ok(ids.len())
    }

    /// An idempotent producer that hit a fatal error (e.g. fenced after its messages timed out
    /// while the broker was unreachable) never works again: replace it.
    fn replace_producer_if_broken(&mut self) {
        use rdkafka::producer::Producer;
        let fatal = self.producer.client().fatal_error();
        if fatal.is_none() && !self.producer_broken.swap(false, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(
            ?fatal,
            "the Kafka producer can no longer send; creating a new one"
        );
        match crate::kafka::producer(&self.kafka) {
            Ok(producer) => self.producer = producer,
            Err(error) => tracing::error!(error = ?error, "creating a new Kafka producer failed"),
        }
    }

    /// Publishes until `shutdown`, then drains what it can.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut listener: Option<PgListener> = None;
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            if listener.is_none() {
                listener = self.listen().await;
            }
            match self.run_once().await {
                Ok(published) => {
                    backoff = Duration::from_millis(100);
                    if published as i64 == self.batch_size {
                        continue;
                    }
                }
                Err(error) => {
                    tracing::error!(error = ?error, retry_in = ?backoff, "outbox relay failed; retrying");
                    self.replace_producer_if_broken();
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            let woken = async {
                match listener.as_mut() {
                    Some(l) => l.try_recv().await.map(|_| ()),
                    None => {
                        tokio::time::sleep(POLL_INTERVAL).await;
                        Ok(())
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                result = woken => if let Err(error) = result {
                    tracing::warn!(%error, "outbox listener lost; reconnecting");
                    listener = None;
                }
            }
        }
        match self.run_once().await {
            Ok(published) => tracing::info!(published, "outbox relay stopped"),
            Err(error) => {
                tracing::warn!(error = ?error, "outbox relay stopped with events left for the next start")
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(db::outbox::NOTIFY_CHANNEL).await.ok()?;
        Some(listener)
    }
}
