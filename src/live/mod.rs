//! Live fan-out: every instance reads the whole `order-status` and `stock-levels` topics (outside
//! any consumer group) and republishes each event on a tokio broadcast channel that feeds the
//! GraphQL subscriptions of this instance. So a subscriber on any instance sees every change,
//! whichever instance applied it.

use crate::config::KafkaArgs;
use crate::domain::events::{decode, decode_stock_level, Event, StockLevelChanged, Stream};
use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

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
        // No subscriber is not an error: nobody is watching right now.
        let _ = self.sender.send(Arc::new(event));
    }

    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// Order status changes (and refused requests).
pub type StatusFeed = Feed<Event>;
/// Stock level changes.
pub type StockFeed = Feed<StockLevelChanged>;

/// The live feeds of one instance.
#[derive(Clone)]
pub struct LiveFeeds {
    pub status: StatusFeed,
    pub stock: StockFeed,
}

impl LiveFeeds {
    pub fn new(capacity: usize) -> Self {
        LiveFeeds {
            status: Feed::new(capacity),
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
    consumer: StreamConsumer,
    feeds: LiveFeeds,
    status_topic: String,
    stock_topic: String,
}

impl LiveReader {
    /// Assigns every partition at its current end, so everything published from now on is read.
    pub async fn start(kafka: &KafkaArgs, feeds: LiveFeeds) -> anyhow::Result<Self> {
        let consumer = crate::kafka::standalone_consumer(kafka)?;
        let status_topic = kafka.topic(Stream::OrderStatus).to_owned();
        let stock_topic = kafka.topic(Stream::StockLevels).to_owned();
        let topics = [status_topic.clone(), stock_topic.clone()];
        let consumer = tokio::task::spawn_blocking(move || -> anyhow::Result<StreamConsumer> {
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
    consumer: &StreamConsumer,
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
