//! The consumer loop shared by every Kafka consumer of oms.
//!
//! For each message: decode it, hand it to the handler, and only when the handler has committed
//! its effect store the offset. A transient failure (the database is down, a lock timed out) is
//! retried with backoff, never skipped. A message that can never apply (not an event, an unknown
//! order, an event from a newer schema) goes to the topic's dead-letter queue with headers saying
//! why and where it came from, and the consumer carries on.

use crate::domain::events::{decode, Event};
use crate::kafka::LagReporting;
use crate::metrics::Metrics;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The event can never apply; retrying would not help.
    #[error("unprocessable: {0}")]
    Poison(String),
    /// Worth retrying.
    #[error("transient failure")]
    Transient(#[source] anyhow::Error),
}

/// What a consumer does with one event. It commits its effect itself, in one transaction.
pub trait Handler: Send + Sync {
    fn handle(&self, event: Event) -> impl Future<Output = Result<(), HandleError>> + Send;
}

pub struct ConsumerLoop<H> {
    pub name: &'static str,
    pub consumer: StreamConsumer<LagReporting>,
    pub handler: H,
    pub producer: FutureProducer,
    pub dead_letter_topic: String,
    pub metrics: Metrics,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl<H: Handler> ConsumerLoop<H> {
    /// Consumes until `shutdown`; then commits the offsets of everything handled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut receive_backoff = Duration::from_millis(100);
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self.consumer.recv() => received,
            };
            match received {
                Ok(message) => {
                    receive_backoff = Duration::from_millis(100);
                    if !self.process(&message, &shutdown).await {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(consumer = self.name, %error, "receiving from Kafka failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(receive_backoff) => {}
                    }
                    receive_backoff = (receive_backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit, or the group is gone: redelivery is harmless.
            tracing::debug!(consumer = self.name, %error, "final offset commit");
        }
        tracing::info!(consumer = self.name, "consumer stopped");
    }

    /// Handles one message until it is applied or dead-lettered, then stores its offset.
    /// Returns false when shutdown interrupted it (its offset is then not stored, so it is
    /// delivered again).
    pub async fn process(
        &self,
        message: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> bool {
        let span = tracing::info_span!(
            "consume",
            consumer = self.name,
            partition = message.partition(),
            offset = message.offset(),
            order_id = tracing::field::Empty,
            event_id = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        async {
            let verdict = match decode(message.payload()) {
                Err(undecodable) => Err(undecodable.to_string()),
                Ok(event) => {
                    let span = tracing::Span::current();
                    span.record("order_id", tracing::field::display(event.order_id));
                    span.record("event_id", tracing::field::display(event.event_id));
                    self.handle_with_retries(event, shutdown).await
                }
            };
            match verdict {
                Ok(true) => {}
                Ok(false) => return false,
                Err(reason) => {
                    if !self.dead_letter(message, &reason, shutdown).await {
                        return false;
                    }
                }
            }
            if let Err(error) = self.consumer.store_offset_from_message(message) {
                tracing::warn!(%error, "storing the offset failed; the message may be redelivered");
            }
            self.record(message, started);
            true
        }
        .instrument(span)
        .await
    }

    fn record(&self, message: &BorrowedMessage<'_>, started: std::time::Instant) {
        let topic = message.topic();
        self.metrics
            .consumer_processing_seconds
            .with_label_values(&[topic])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Ok(true): applied. Ok(false): interrupted by shutdown. Err: poison, with the reason.
    async fn handle_with_retries(
        &self,
        event: Event,
        shutdown: &CancellationToken,
    ) -> Result<bool, String> {
        let mut backoff = Duration::from_millis(100);
        for attempt in 1u32.. {
            match self.handler.handle(event.clone()).await {
                Ok(()) => return Ok(true),
                Err(HandleError::Poison(reason)) => return Err(reason),
                Err(HandleError::Transient(error)) => {
                    tracing::error!(attempt, error = ?error, retry_in = ?backoff, "applying an event failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(false),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        unreachable!("the retry loop only ends by returning")
    }

    /// Copies the message to the dead-letter topic, retrying until the broker takes it.
    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        tracing::error!(reason, dlq = %self.dead_letter_topic, "unprocessable message; moving it to the dead-letter topic");
        self.metrics
            .dead_letters
            .with_label_values(&[message.topic()])
            .inc();
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "x-dlq-reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "x-dlq-consumer",
                value: Some(self.name),
            })
            .insert(Header {
                key: "x-original-topic",
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "x-original-partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "x-original-offset",
                value: Some(&offset),
            });
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(header);
            }
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut record =
                FutureRecord::<[u8], [u8]>::to(&self.dead_letter_topic).headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => return true,
                Err((error, _)) => {
                    tracing::error!(%error, "writing to the dead-letter topic failed; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
