//! Live fan-out: every instance reads the whole `order-status` and `stock-levels` topics (outside
//! any consumer group) and republishes each event on tokio broadcast channels that feed the
//! GraphQL subscriptions of this instance. So a subscriber on any instance sees every change,
//! whichever instance applied it. Status changes also go to per-order and per-customer channels,
//! so that a customer's subscription wakes only for that customer's orders.
//!
//! [`follow`] turns these channels (and the order history, where they skipped something) into
//! what one subscription follows.

pub mod follow;

use crate::config::KafkaArgs;
use crate::domain::events::{decode, decode_stock_level, Event, StockLevelChanged, Stream};
use crate::kafka::KafkaLogs;
use crate::metrics::Metrics;
use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A per-instance channel of live events of one kind.
pub struct Feed<T> {
    sender: broadcast::Sender<Arc<T>>,
}

impl<T> Clone for Feed<T> {
    fn clone(&self) -> Self {
        Feed {
            sender: self.sender.clone(),
        }
    }
}

impl<T> Feed<T> {
    /// A feed keeping up to `capacity` events for receivers that are behind.
    pub fn new(capacity: usize) -> Self {
        Feed {
            sender: broadcast::channel(capacity).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<T>> {
        self.sender.subscribe()
    }

    pub fn publish(&self, event: T) {
        self.publish_shared(Arc::new(event));
    }

    fn publish_shared(&self, event: Arc<T>) {
        // No subscriber is not an error: nobody is watching right now.
        let _ = self.sender.send(event);
    }

    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// Stock level changes.
pub type StockFeed = Feed<StockLevelChanged>;

/// Events kept for a one-order subscriber that is behind. A broadcast channel allocates all its
/// slots up front (about 32 bytes each), and one order has only a handful of changes; one that
/// falls further behind catches up from the order's history.
const ORDER_CAPACITY: usize = 16;

/// Events kept for a customer's subscriber that is behind (about 8 KiB per customer listened
/// to); one that falls further behind catches up from the database.
const CUSTOMER_CAPACITY: usize = 256;

/// Per-key channels (an order, a customer), made when first subscribed to and dropped once
/// nobody listens.
struct KeyedChannels<K> {
    channels: Mutex<Channels<K>>,
    capacity: usize,
}

struct Channels<K> {
    by_key: HashMap<K, broadcast::Sender<Arc<Event>>>,
    /// The map's size at which channels nobody listens to are swept out.
    sweep_at: usize,
}

/// The smallest map that is swept.
const MIN_SWEEP: usize = 64;

impl<K: Hash + Eq> KeyedChannels<K> {
    fn new(capacity: usize) -> Self {
        KeyedChannels {
            channels: Mutex::new(Channels {
                by_key: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
            capacity,
        }
    }

    fn subscribe(&self, key: K) -> broadcast::Receiver<Arc<Event>> {
        let mut channels = self.channels.lock().expect("live channels lock");
        if let Some(sender) = channels.by_key.get(&key) {
            return sender.subscribe();
        }
        // Amortised: sweep when the map has doubled since the last sweep left it.
        if channels.by_key.len() >= channels.sweep_at {
            channels
                .by_key
                .retain(|_, sender| sender.receiver_count() > 0);
            channels.sweep_at = MIN_SWEEP.max(2 * channels.by_key.len());
        }
        let (sender, receiver) = broadcast::channel(self.capacity);
        channels.by_key.insert(key, sender);
        receiver
    }

    fn publish<Q: Hash + Eq + ?Sized>(&self, key: &Q, event: &Arc<Event>)
    where
        K: Borrow<Q>,
    {
        let mut channels = self.channels.lock().expect("live channels lock");
        if let Some(sender) = channels.by_key.get(key) {
            if sender.send(event.clone()).is_err() {
                channels.by_key.remove(key);
            }
        }
    }

    fn subscriber_count(&self) -> usize {
        let channels = self.channels.lock().expect("live channels lock");
        channels
            .by_key
            .values()
            .map(broadcast::Sender::receiver_count)
            .sum()
    }
}

/// Order status changes (and refused requests), routed so that a subscriber only wakes for the
/// events it may want: every event to the all-orders channel (staff), and to the channels of its
/// order and of the order's customer, if anyone listens there.
#[derive(Clone)]
pub struct StatusFeed {
    every_order: Feed<Event>,
    by_order: Arc<KeyedChannels<Uuid>>,
    by_customer: Arc<KeyedChannels<String>>,
}

impl StatusFeed {
    /// `capacity` events kept for subscribers to every order that are behind; at most
    /// [`ORDER_CAPACITY`] for those of one order and [`CUSTOMER_CAPACITY`] for a customer's.
    pub fn new(capacity: usize) -> Self {
        StatusFeed {
            every_order: Feed::new(capacity),
            by_order: Arc::new(KeyedChannels::new(capacity.min(ORDER_CAPACITY))),
            by_customer: Arc::new(KeyedChannels::new(capacity.min(CUSTOMER_CAPACITY))),
        }
    }

    /// Every order's events.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.every_order.subscribe()
    }

    /// The events of one order.
    pub fn subscribe_to_order(&self, order_id: Uuid) -> broadcast::Receiver<Arc<Event>> {
        self.by_order.subscribe(order_id)
    }

    /// The events of the orders of one customer.
    pub fn subscribe_to_customer(&self, user_id: &str) -> broadcast::Receiver<Arc<Event>> {
        self.by_customer.subscribe(user_id.to_owned())
    }

    pub fn publish(&self, event: Event) {
        let event = Arc::new(event);
        self.by_order.publish(&event.order_id, &event);
        if let Some(owner) = event.body.order_owner() {
            self.by_customer.publish(owner, &event);
        }
        self.every_order.publish_shared(event);
    }

    pub fn subscriber_count(&self) -> usize {
        self.every_order.subscriber_count()
            + self.by_order.subscriber_count()
            + self.by_customer.subscriber_count()
    }
}

/// The live feeds of one instance.
#[derive(Clone)]
pub struct LiveFeeds {
    pub status: StatusFeed,
    pub stock: StockFeed,
}

impl LiveFeeds {
    pub fn new(capacity: usize) -> Self {
        LiveFeeds {
            status: StatusFeed::new(capacity),
            stock: Feed::new(capacity),
        }
    }

    /// Live subscriptions on this instance: every receiver is one.
    pub fn subscriber_count(&self) -> usize {
        self.status.subscriber_count() + self.stock.subscriber_count()
    }
}

/// Reads the live topics from their end as it stood at start-up.
pub struct LiveReader {
    consumer: StreamConsumer<KafkaLogs>,
    feeds: LiveFeeds,
    status_topic: String,
    stock_topic: String,
    metrics: Metrics,
}

impl LiveReader {
    /// Assigns every partition at its current end, so everything published from now on is read.
    /// A reader of the live topics, not reading yet (creating it needs no broker).
    pub fn new(kafka: &KafkaArgs, feeds: LiveFeeds, metrics: Metrics) -> anyhow::Result<Self> {
        Ok(LiveReader {
            consumer: crate::kafka::standalone_consumer(kafka)?,
            feeds,
            status_topic: kafka.topic(Stream::OrderStatus).to_owned(),
            stock_topic: kafka.topic(Stream::StockLevels).to_owned(),
            metrics,
        })
    }

    /// Assigns the live topics from their end as it stands now (the broker must answer).
    pub async fn start_at_end(self) -> anyhow::Result<Self> {
        let LiveReader {
            consumer,
            feeds,
            status_topic,
            stock_topic,
            metrics,
        } = self;
        let topics = [status_topic.clone(), stock_topic.clone()];
        let consumer =
            tokio::task::spawn_blocking(move || -> anyhow::Result<StreamConsumer<KafkaLogs>> {
                let mut assignment = TopicPartitionList::new();
                for topic in &topics {
                    assign_at_end(&consumer, topic, &mut assignment)?;
                }
                consumer.assign(&assignment)?;
                Ok(consumer)
            })
            .await??;
        Ok(LiveReader {
            consumer,
            feeds,
            status_topic,
            stock_topic,
            metrics,
        })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self.consumer.recv() => received,
            };
            match received {
                Ok(message) => self.publish(&message),
                Err(error) => {
                    tracing::warn!(%error, "reading the live topics failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn publish(&self, message: &BorrowedMessage<'_>) {
        self.metrics
            .observe_since_published(&self.metrics.event_transit_seconds, message);
        let span = tracing::info_span!(
            "push to subscribers",
            otel.kind = "consumer",
            topic = message.topic(),
            offset = message.offset(),
        );
        crate::telemetry::continue_trace(&span, crate::kafka::traceparent_of(message));
        span.in_scope(|| self.push(message));
    }

    fn push(&self, message: &BorrowedMessage<'_>) {
        let topic = message.topic();
        tracing::trace!(topic, offset = message.offset(), "live event read");
        let undecodable = if topic == self.status_topic {
            decode(message.payload())
                .map(|event| self.feeds.status.publish(event))
                .err()
        } else if topic == self.stock_topic {
            decode_stock_level(message.payload())
                .map(|event| self.feeds.stock.publish(event))
                .err()
        } else {
            None
        };
        if let Some(error) = undecodable {
            tracing::warn!(%error, topic, offset = message.offset(), "skipping an undecodable live event");
        }
    }
}

/// Adds every partition of `topic` to `assignment` at its current end.
fn assign_at_end(
    consumer: &StreamConsumer<KafkaLogs>,
    topic: &str,
    assignment: &mut TopicPartitionList,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0)
        .with_context(|| format!("topic {topic} has no partitions"))?;
    for partition in 0..partitions as i32 {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .with_context(|| format!("reading the end of {topic}/{partition}"))?;
        assignment.add_partition_offset(topic, partition, Offset::Offset(high))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{EventBody, OrderStatusChanged};
    use crate::domain::status::OrderStatus;
    use tokio::sync::broadcast::error::TryRecvError;

    fn confirmed(order_id: Uuid, customer: &str) -> Event {
        Event::new(
            order_id,
            2,
            EventBody::OrderStatusChanged(OrderStatusChanged {
                user_id: customer.into(),
                from: Some(OrderStatus::Pending),
                to: OrderStatus::Confirmed,
                reason: None,
                changed_by: None,
            }),
        )
    }

    fn orders_received(receiver: &mut broadcast::Receiver<Arc<Event>>) -> Vec<Uuid> {
        let mut received = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            received.push(event.order_id);
        }
        received
    }

    #[test]
    fn each_subscriber_receives_only_the_events_of_its_order_or_customer_and_staff_every_one() {
        let feed = StatusFeed::new(16);
        let (alices, bobs) = (Uuid::now_v7(), Uuid::now_v7());
        let mut every_order = feed.subscribe();
        let mut alice = feed.subscribe_to_customer("alice");
        let mut bobs_order = feed.subscribe_to_order(bobs);

        feed.publish(confirmed(alices, "alice"));
        feed.publish(confirmed(bobs, "bob"));

        assert_eq!(orders_received(&mut every_order), vec![alices, bobs]);
        assert_eq!(orders_received(&mut alice), vec![alices]);
        assert_eq!(orders_received(&mut bobs_order), vec![bobs]);
        assert_eq!(feed.subscriber_count(), 3);
    }

    #[test]
    fn a_channel_nobody_listens_to_any_more_is_dropped_at_its_next_event() {
        let feed = StatusFeed::new(16);
        let order = Uuid::now_v7();
        let gone = feed.subscribe_to_order(order);
        drop(gone);
        feed.publish(confirmed(order, "alice"));
        assert!(feed.by_order.channels.lock().unwrap().by_key.is_empty());

        let mut again = feed.subscribe_to_order(order);
        assert_eq!(again.try_recv().unwrap_err(), TryRecvError::Empty);
        feed.publish(confirmed(order, "alice"));
        assert_eq!(orders_received(&mut again), vec![order]);
    }

    #[test]
    fn one_orders_channel_keeps_at_most_its_capacity_for_a_subscriber_behind() {
        let feed = StatusFeed::new(4096);
        let order = Uuid::now_v7();
        let mut behind = feed.subscribe_to_order(order);
        for _ in 0..ORDER_CAPACITY + 1 {
            feed.publish(confirmed(order, "alice"));
        }
        assert_eq!(behind.try_recv().unwrap_err(), TryRecvError::Lagged(1));
    }

    #[test]
    fn channels_nobody_listens_to_are_swept_out_once_the_map_has_doubled() {
        let feed = StatusFeed::new(16);
        let kept = feed.subscribe_to_customer("kept");
        for n in 1..MIN_SWEEP {
            drop(feed.subscribe_to_customer(&format!("gone-{n}")));
        }
        // The map holds MIN_SWEEP keys; the next new key sweeps out the departed ones first.
        let _next = feed.subscribe_to_customer("next");
        let channels = feed.by_customer.channels.lock().unwrap();
        assert_eq!(channels.by_key.len(), 2);
        assert_eq!(channels.sweep_at, MIN_SWEEP);
        drop(kept);
    }
}
