//! The outbox relay: publishes committed outbox rows to Kafka, at least once, in the order they
//! were written, then deletes them.
//!
//! Only one relay publishes at a time across all instances (a transaction-scoped advisory lock
//! held while a batch is in flight), and the producer is idempotent, so one order's events reach
//! its partition in order.
//!
//! Waking: a writer calls [`OutboxWaker::wake`] after committing outbox rows, which wakes the
//! relay of its own instance in-process. If that relay finds another instance's relay active, it
//! sends a Postgres NOTIFY, which every relay listens for, so the active one runs another round.
//! Relays also poll once a second. The writing transactions do not NOTIFY themselves: a NOTIFY
//! in a transaction holds a database-wide lock through its commit, so every writing transaction
//! would commit one after the other (the pgbench ceiling of oms's SQL: 587 orders/s with a NOTIFY
//! in each transaction, 700 with it in a transaction of its own, 826-993 without).

use crate::config::KafkaArgs;
use crate::db;
use crate::db::Db;
use crate::domain::events::Stream;
use crate::metrics::Metrics;
use anyhow::Context;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use sqlx::postgres::PgListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const POLL_INTERVAL: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Wakes this instance's relay once outbox rows are committed (see the module's comment). Wakes
/// that come while the relay is busy add up to one more round. Without a relay (a test calling
/// the services directly) waking does nothing.
#[derive(Clone, Default)]
pub struct OutboxWaker {
    wanted: Arc<Notify>,
}

impl OutboxWaker {
    /// Asks for a relay round: call after committing outbox rows.
    pub fn wake(&self) {
        self.wanted.notify_one();
    }
}

/// What started a relay round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// A writer of this instance.
    Local,
    /// A NOTIFY, the poll timer, or the start.
    Remote,
}

/// What one relay round did.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// Published (and deleted) this many events; 0 when the outbox was empty.
    Published(usize),
    /// Another instance's relay holds the relay lock.
    AnotherRelayIsActive,
}

pub struct Relay {
    pool: Db,
    /// Where the relay may `LISTEN` for other instances' wake-ups: a session of its own, so not
    /// through a transaction-mode pooler. Without one it polls.
    listen_pool: Option<sqlx::PgPool>,
    producer: crate::kafka::Producer,
    kafka: KafkaArgs,
    batch_size: i64,
    metrics: Metrics,
    waker: OutboxWaker,
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
        pool: Db,
        listen_pool: Option<sqlx::PgPool>,
        producer: crate::kafka::Producer,
        kafka: KafkaArgs,
        batch_size: i64,
        metrics: Metrics,
        waker: OutboxWaker,
    ) -> Self {
        Relay {
            pool,
            listen_pool,
            producer,
            kafka,
            batch_size,
            metrics,
            waker,
            producer_broken: AtomicBool::new(false),
        }
    }

    /// Publishes one batch. On error nothing is deleted and the batch is sent again later.
    async fn run_once(&self) -> anyhow::Result<Round> {
        let mut tx = self.pool.begin().await?;
        if !db::outbox::try_lock_relay(&mut tx).await? {
            return Ok(Round::AnotherRelayIsActive);
        }
        let rows = db::outbox::oldest(&mut tx, self.batch_size).await?;
        if rows.is_empty() {
            return Ok(Round::Published(0));
        }
        let started = std::time::Instant::now();
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            let stream = Stream::parse(&row.stream).with_context(|| {
                format!("outbox row {} names unknown stream {}", row.id, row.stream)
            })?;
            // The trace of the change that wrote the event continues in the message's headers.
            let span = tracing::info_span!(
                "outbox publish",
                otel.kind = "producer",
                stream = %row.stream,
                message_key = %row.message_key,
            );
            crate::telemetry::continue_trace(&span, row.traceparent.as_deref());
            let traceparent = span.in_scope(crate::telemetry::current_traceparent);
            let mut record = FutureRecord::to(self.kafka.topic(stream))
                .key(&row.message_key)
                .payload(&row.payload);
            if let Some(headers) = crate::kafka::trace_headers(traceparent.as_deref()) {
                record = record.headers(headers);
            }
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
        // Timed once per published event: a round that failed reads its rows again.
        for row in &rows {
            self.metrics.outbox_wait_seconds.observe(row.waited_seconds);
        }
        self.metrics
            .outbox_publish_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(published = ids.len(), "outbox batch published");
        Ok(Round::Published(ids.len()))
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
        let mut wake = Wake::Remote;
        while !shutdown.is_cancelled() {
            if listener.is_none() && self.listen_pool.is_some() {
                listener = self.listen().await;
            }
            match self.run_once().await {
                Ok(Round::Published(published)) => {
                    backoff = Duration::from_millis(100);
                    if published as i64 == self.batch_size {
                        continue;
                    }
                }
                Ok(Round::AnotherRelayIsActive) => {
                    backoff = Duration::from_millis(100);
                    // Rows written here may have been committed after the active relay read
                    // the outbox: have it run another round. (Not after a NOTIFY or the timer:
                    // those do not mean that this instance wrote anything.) Under load, an
                    // instance whose relay is not the active one sends about one NOTIFY per
                    // wake; a single instance sends none.
                    if wake == Wake::Local {
                        if let Err(error) = db::outbox::wake_relays(&self.pool).await {
                            tracing::warn!(%error, "waking the active outbox relay failed; it polls every second");
                        }
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
            let notified = async {
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
                _ = self.waker.wanted.notified() => wake = Wake::Local,
                _ = tokio::time::sleep(POLL_INTERVAL) => wake = Wake::Remote,
                result = notified => {
                    wake = Wake::Remote;
                    if let Err(error) = result {
                        tracing::warn!(%error, "outbox listener lost; reconnecting");
                        listener = None;
                    }
                }
            }
        }
        match self.run_once().await {
            Ok(round) => tracing::info!(?round, "outbox relay stopped"),
            Err(error) => {
                tracing::warn!(error = ?error, "outbox relay stopped with events left for the next start")
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(self.listen_pool.as_ref()?)
            .await
            .ok()?;
        listener.listen(db::outbox::NOTIFY_CHANNEL).await.ok()?;
        Some(listener)
    }
}
