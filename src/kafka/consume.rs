//! The consumer loop shared by every Kafka consumer of oms.
//!
//! For each message: decode it, hand it to the handler, and only when the handler has committed
//! its effect store the offset. Up to `concurrency` messages are handled at once, but never two
//! with the same key (one order's events apply in order), and a partition's offset only moves
//! past messages that are all done, so a crash redelivers (harmlessly) instead of skipping. A
//! transient failure (the database is down, a lock timed out) is retried with backoff, never
//! skipped. A message that can never apply (not an event, an unknown order, an event from a
//! newer schema) goes to the topic's dead-letter queue with headers saying why and where it came
//! from, and the consumer carries on.

use crate::domain::events::{decode, Event};
use crate::kafka::LagReporting;
use crate::metrics::Metrics;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
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

    /// The most events [`Handler::handle_batch`] takes at once; 1 (the default): no batches.
    fn max_batch(&self) -> usize {
        1
    }

    /// After a message was moved to the dead-letter topic: settle what waited on it (the order
    /// it placed, the client that asked), from its key and, when it decoded, its event.
    fn set_aside(
        &self,
        _key: Option<&[u8]>,
        _event: Option<&Event>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }

    /// Applies events of distinct keys together, all or nothing, in one transaction. On an error
    /// the consumer applies the batch again in halves, down to single events, so one bad event
    /// never holds back its neighbours.
    fn handle_batch(
        &self,
        events: &[Event],
    ) -> impl Future<Output = Result<(), HandleError>> + Send {
        async move {
            for event in events {
                self.handle(event.clone()).await?;
            }
            Ok(())
        }
    }
}

pub struct ConsumerLoop<H> {
    pub name: &'static str,
    pub consumer: StreamConsumer<LagReporting>,
    pub handler: H,
    pub producer: super::Producer,
    pub dead_letter_topic: String,
    pub metrics: Metrics,
    /// Messages handled at once (different keys only).
    pub concurrency: usize,
    /// Received messages held before fetching pauses (at least four batches per slot).
    pub queue: usize,
}

/// A handled message: where it was, its key, and whether it was applied (false: shutdown
/// interrupted it, so its offset must not be stored).
struct Handled {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    applied: bool,
}

/// The offsets of one topic's partitions still being handled, in order; `true` once done.
#[derive(Default)]
struct OffsetsInFlight {
    partitions: HashMap<i32, BTreeMap<i64, bool>>,
}

impl OffsetsInFlight {
    fn start(&mut self, partition: i32, offset: i64) {
        self.partitions
            .entry(partition)
            .or_default()
            .insert(offset, false);
    }

    /// Marks `offset` done; returns the highest offset of the partition below which everything
    /// is done, if that moved.
    fn finish(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let offsets = self.partitions.get_mut(&partition)?;
        offsets.insert(offset, true);
        let mut done = None;
        while let Some(entry) = offsets.first_entry() {
            if !*entry.get() {
                break;
            }
            done = Some(*entry.key());
            entry.remove();
        }
        done
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest pause in receiving after a receive error (the broker unreachable): far below
/// any `max.poll.interval.ms`, so the member keeps its place in the group while it waits.
const MAX_RECEIVE_BACKOFF: Duration = Duration::from_secs(1);
/// The next unit to handle from `waiting`, in arrival order: up to `max_batch` messages of
/// distinct keys, none of a key in flight or of a key an earlier waiting message holds (one
/// key's messages are handled one after the other). Empty when none can start now.
fn take_unit(
    waiting: &mut VecDeque<OwnedMessage>,
    keys_in_flight: &HashSet<Vec<u8>>,
    max_batch: usize,
) -> Vec<OwnedMessage> {
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let mut taken = Vec::new();
    for (index, message) in waiting.iter().enumerate() {
        if taken.len() == max_batch {
            break;
        }
        let blocked = message
            .key()
            .is_some_and(|key| keys_in_flight.contains(key) || !seen.insert(key));
        if !blocked {
            taken.push(index);
        }
    }
    // Removing from the back keeps the earlier indices valid.
    let mut unit: Vec<OwnedMessage> = taken
        .into_iter()
        .rev()
        .filter_map(|index| waiting.remove(index))
        .collect();
    unit.reverse();
    unit
}

impl<H: Handler> ConsumerLoop<H> {
    /// Queues a received message, timing its transit from publication. Its offset counts as in
    /// flight from now on, so no offset after it is stored (and committed) before it is applied,
    /// even while it waits.
    fn enqueue(
        &self,
        waiting: &mut VecDeque<OwnedMessage>,
        offsets: &mut OffsetsInFlight,
        message: &BorrowedMessage<'_>,
    ) {
        self.metrics
            .observe_since_published(&self.metrics.event_transit_seconds, message);
        offsets.start(message.partition(), message.offset());
        waiting.push_back(message.detach());
    }

    /// Consumes until `shutdown`; then commits the offsets of everything handled.
    ///
    /// Received messages wait in a queue until a slot is free. The consumer is polled all the
    /// while, even when every slot waits on a database that is down: a member that stops
    /// polling for `max.poll.interval.ms` is put out of its group, and its partitions move. When
    /// the queue is full, fetching is paused instead, and resumed once it has drained.
    pub async fn run(self, shutdown: CancellationToken) {
        let concurrency = self.concurrency.max(1);
        let max_batch = self.handler.max_batch().max(1);
        // Generous by default: pausing and resuming costs fetches, and a queued message is
        // small. The bound only matters while the handlers cannot keep up (a database outage).
        let queue_limit = (max_batch * concurrency * 4).max(self.queue);
        let mut receive_backoff = Duration::from_millis(100);
        // After a receive error, receiving waits until then; finished work is handled meanwhile.
        let mut receive_after: Option<tokio::time::Instant> = None;
        let mut in_flight = FuturesUnordered::new();
        let mut keys_in_flight: HashSet<Vec<u8>> = HashSet::new();
        let mut offsets = OffsetsInFlight::default();
        let mut waiting: VecDeque<OwnedMessage> = VecDeque::new();
        let mut paused = false;
        let mut topic = String::new();
        let mut interrupted = false;
        while !interrupted {
            // What has already arrived joins the queue, so batches can form from it.
            while waiting.len() < queue_limit {
                let Some(Ok(message)) = self.consumer.recv().now_or_never() else {
                    break;
                };
                self.enqueue(&mut waiting, &mut offsets, &message);
            }
            while in_flight.len() < concurrency {
                let unit = take_unit(&mut waiting, &keys_in_flight, max_batch);
                let Some(first) = unit.first() else { break };
                first.topic().clone_into(&mut topic);
                for message in &unit {
                    if let Some(key) = message.key() {
                        keys_in_flight.insert(key.to_vec());
                    }
                }
                let (this, shutdown) = (&self, &shutdown);
                in_flight.push(async move {
                    let applied = this.process_unit(&unit, shutdown).await;
                    unit.iter()
                        .zip(applied)
                        .map(|(message, applied)| Handled {
                            partition: message.partition(),
                            offset: message.offset(),
                            key: message.key().map(<[u8]>::to_vec),
                            applied,
                        })
                        .collect::<Vec<_>>()
                });
            }
            if !paused && waiting.len() >= queue_limit {
                paused = self.pause_fetching(true);
            } else if paused && waiting.len() < queue_limit / 2 {
                paused = !self.pause_fetching(false);
            }
            self.metrics
                .consumer_fetching_paused
                .with_label_values(&[self.name])
                .set(i64::from(paused));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(handled) = in_flight.next(), if !in_flight.is_empty() => {
                    interrupted = !self.finish_all(handled, &topic, &mut offsets, &mut keys_in_flight);
                }
                _ = tokio::time::sleep_until(receive_after.unwrap_or_else(tokio::time::Instant::now)),
                    if receive_after.is_some() => {
                    receive_after = None;
                }
                received = self.consumer.recv(), if receive_after.is_none() => match received {
                    Ok(message) => {
                        receive_backoff = Duration::from_millis(100);
                        self.enqueue(&mut waiting, &mut offsets, &message);
                    }
                    Err(error) => {
                        tracing::warn!(consumer = self.name, %error, "receiving from Kafka failed; retrying");
                        receive_after = Some(tokio::time::Instant::now() + receive_backoff);
                        receive_backoff = (receive_backoff * 2).min(MAX_RECEIVE_BACKOFF);
                    }
                },
            }
        }
        // Handlers see the shutdown and stop retrying; what they applied is stored. Messages
        // still queued were not applied: their offsets are not stored, so they come again.
        while let Some(handled) = in_flight.next().await {
            self.finish_all(handled, &topic, &mut offsets, &mut keys_in_flight);
        }
        drop(in_flight);
        crate::kafka::leave_group(self.consumer, self.name).await;
        tracing::info!(consumer = self.name, "consumer stopped");
    }

    /// Pauses (or resumes) fetching for the partitions this member holds; true when done.
    fn pause_fetching(&self, pause: bool) -> bool {
        let assignment = match self.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(error) => {
                tracing::warn!(consumer = self.name, %error, "reading the assignment failed");
                return false;
            }
        };
        let done = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        match done {
            Ok(()) => {
                tracing::debug!(consumer = self.name, pause, "fetching paused or resumed");
                true
            }
            Err(error) => {
                tracing::warn!(consumer = self.name, %error, pause, "pausing or resuming fetching failed");
                false
            }
        }
    }

    /// Handles one message, or a batch; one flag per message: applied (false: interrupted by
    /// shutdown, so its offset must not be stored).
    async fn process_unit(
        &self,
        messages: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) -> Vec<bool> {
        for message in messages {
            self.metrics
                .observe_since_published(&self.metrics.event_handling_delay_seconds, message);
        }
        if let Some(first) = messages.first() {
            self.metrics
                .consumer_batch_events
                .with_label_values(&[first.topic()])
                .observe(messages.len() as f64);
        }
        if let [message] = messages {
            return vec![self.process(message, shutdown).await];
        }
        let span = tracing::info_span!(
            "consume batch",
            consumer = self.name,
            messages = messages.len(),
            otel.kind = "consumer",
        );
        // A span has one parent: the batch continues the trace of its first message.
        crate::telemetry::continue_trace(&span, messages.first().and_then(super::traceparent_of));
        self.process_batch(messages, shutdown)
            .instrument(span)
            .await
    }

    /// Applies the decodable messages of `messages` as batches, halving a batch that fails down
    /// to single messages (which are retried and dead-lettered as [`Self::process`] does).
    async fn process_batch(
        &self,
        messages: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) -> Vec<bool> {
        let started = std::time::Instant::now();
        let mut applied = vec![false; messages.len()];
        let mut batch = Vec::with_capacity(messages.len());
        let mut singles = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            match decode(message.payload()) {
                Ok(event) => batch.push((index, event)),
                Err(_) => singles.push(index),
            }
        }
        // First halves first, so the batch's messages are applied in arrival order.
        let mut pending = vec![batch];
        while let Some(mut group) = pending.pop() {
            if shutdown.is_cancelled() {
                break;
            }
            if let [(index, _)] = group.as_slice() {
                applied[*index] = self.process(&messages[*index], shutdown).await;
                continue;
            }
            if group.is_empty() {
                continue;
            }
            let events: Vec<Event> = group.iter().map(|(_, event)| event.clone()).collect();
            match self.handler.handle_batch(&events).await {
                Ok(()) => {
                    for (index, _) in &group {
                        applied[*index] = true;
                        self.record(&messages[*index], started);
                    }
                }
                Err(error) => {
                    tracing::warn!(consumer = self.name, events = group.len(), error = %format!("{error:#}"), "a batch failed; applying it in halves");
                    let second = group.split_off(group.len() / 2);
                    pending.push(second);
                    pending.push(group);
                }
            }
        }
        for index in singles {
            applied[index] = self.process(&messages[index], shutdown).await;
        }
        applied
    }

    /// [`Self::finish`] for every message of a unit; false when any was interrupted.
    fn finish_all(
        &self,
        handled: Vec<Handled>,
        topic: &str,
        offsets: &mut OffsetsInFlight,
        keys_in_flight: &mut HashSet<Vec<u8>>,
    ) -> bool {
        let mut all_applied = true;
        for handled in handled {
            all_applied &= self.finish(handled, topic, offsets, keys_in_flight);
        }
        all_applied
    }

    /// Records a handled message and stores the partition's offset as far as everything is
    /// done. False when the message was interrupted by shutdown.
    fn finish(
        &self,
        handled: Handled,
        topic: &str,
        offsets: &mut OffsetsInFlight,
        keys_in_flight: &mut HashSet<Vec<u8>>,
    ) -> bool {
        if let Some(key) = &handled.key {
            keys_in_flight.remove(key);
        }
        if !handled.applied {
            return false;
        }
        if let Some(done) = offsets.finish(handled.partition, handled.offset) {
            if let Err(error) = self.consumer.store_offset(topic, handled.partition, done) {
                tracing::warn!(%error, "storing the offset failed; messages may be redelivered");
            }
        }
        true
    }

    /// Handles one message until it is applied or dead-lettered. Returns false when shutdown
    /// interrupted it (its offset is then not stored, so it is delivered again).
    async fn process(&self, message: &OwnedMessage, shutdown: &CancellationToken) -> bool {
        let span = tracing::info_span!(
            "consume",
            consumer = self.name,
            partition = message.partition(),
            offset = message.offset(),
            order_id = tracing::field::Empty,
            event_id = tracing::field::Empty,
            otel.kind = "consumer",
        );
        crate::telemetry::continue_trace(&span, crate::kafka::traceparent_of(message));
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
            self.record(message, started);
            true
        }
        .instrument(span)
        .await
    }

    fn record(&self, message: &OwnedMessage, started: std::time::Instant) {
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

    /// Runs the handler's [`Handler::set_aside`] for a dead-lettered message until it succeeds
    /// (false: shutdown came first, so the message is delivered again and set aside again).
    async fn settle_set_aside(&self, message: &OwnedMessage, shutdown: &CancellationToken) -> bool {
        let event = decode(message.payload()).ok();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.handler.set_aside(message.key(), event.as_ref()).await {
                Ok(()) => return true,
                Err(error) => tracing::error!(
                    error = %format!("{error:#}"),
                    retry_in = ?backoff,
                    "settling a dead-lettered message's order failed; retrying"
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Copies the message to the dead-letter topic, retrying until the broker takes it.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
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
                Ok(_) => return self.settle_set_aside(message, shutdown).await,
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

#[cfg(test)]
mod tests {
    use super::OffsetsInFlight;

    #[test]
    fn a_partitions_offset_only_moves_past_messages_that_are_all_done() {
        let mut offsets = OffsetsInFlight::default();
        for offset in 10..14 {
            offsets.start(0, offset);
        }
        offsets.start(1, 7);
        assert_eq!(offsets.finish(0, 12), None, "10 and 11 are still running");
        assert_eq!(offsets.finish(0, 10), Some(10));
        assert_eq!(
            offsets.finish(1, 7),
            Some(7),
            "partitions move on their own"
        );
        assert_eq!(
            offsets.finish(0, 11),
            Some(12),
            "11 done, and 12 was already"
        );
        assert_eq!(offsets.finish(0, 13), Some(13));
    }
}
