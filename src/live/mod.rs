//! Live status fan-out: every instance reads the whole `order-status` topic (outside any
//! consumer group) and republishes each change on a tokio broadcast channel that feeds the
//! GraphQL subscriptions of this instance. So a subscriber on any instance sees every change,
//! whichever instance applied it.

use crate::config::KafkaArgs;
use crate::domain::events::{decode, Event, Stream};
use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The per-instance channel of status events.
#[derive(Clone)]
pub struct StatusFeed {
    sender: broadcast::Sender<Arc<Event>>,
}

impl StatusFeed {
    pub fn new(capacity: usize) -> Self {
        StatusFeed {
            sender: broadcast::channel(capacity).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    pub fn publish(&self, event: Event) {
        // No subscriber is not an error: nobody is watching right now.
        let _ = self.sender.send(Arc::new(event));
    }

    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// Reads `order-status` from the end as it stood at start-up.
pub struct StatusReader {
    consumer: StreamConsumer,
    feed: StatusFeed,
}

impl StatusReader {
    /// Assigns every partition at its current end, so everything published from now on is read.
    pub async fn start(kafka: &KafkaArgs, feed: StatusFeed) -> anyhow::Result<Self> {
        let consumer = crate::kafka::standalone_consumer(kafka)?;
        let topic = kafka.topic(Stream::OrderStatus).to_owned();
        let consumer = tokio::task::spawn_blocking(move || -> anyhow::Result<StreamConsumer> {
            let timeout = Duration::from_secs(10);
            let metadata = consumer
                .fetch_metadata(Some(&topic), timeout)
                .context("reading the status topic's metadata")?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map(|t| t.partitions().len())
                .filter(|n| *n > 0)
                .with_context(|| format!("topic {topic} has no partitions"))?;
            let mut assignment = TopicPartitionList::new();
            for partition in 0..partitions as i32 {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, partition, timeout)
                    .with_context(|| format!("reading the end of {topic}/{partition}"))?;
                assignment.add_partition_offset(&topic, partition, Offset::Offset(high))?;
            }
            consumer.assign(&assignment)?;
            Ok(consumer)
        })
        .await??;
        Ok(StatusReader { consumer, feed })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = self.consumer.recv() => received,
            };
            match received {
                Ok(message) => match decode(message.payload()) {
                    Ok(event) => self.feed.publish(event),
                    Err(error) => {
                        tracing::warn!(%error, offset = message.offset(), "skipping an undecodable status event")
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "reading the status topic failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
