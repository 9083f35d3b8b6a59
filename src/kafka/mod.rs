//! rdkafka plumbing only: client configuration, topic administration and the consumer loop.
//! What a message means is decided elsewhere (`consumers/`, `live/`).

pub mod consume;
pub mod dlq;

use crate::config::KafkaArgs;
use crate::domain::events::Stream;
use crate::metrics::Metrics;
use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use rdkafka::statistics::Statistics;
use rdkafka::ClientConfig;
use std::time::Duration;

fn base_config(args: &KafkaArgs) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("client.id", "oms")
        // A broker that is down is retried quietly; failures surface through delivery results.
        .set("reconnect.backoff.max.ms", "2000")
        .set(
            "log_level",
            if args.kafka_debug.is_empty() {
                "4"
            } else {
                "7"
            },
        );
    if !args.kafka_debug.is_empty() {
        config.set("debug", &args.kafka_debug);
    }
    config.set(
        "security.protocol",
        args.kafka_security_protocol.as_librdkafka(),
    );
    if let Some(mechanism) = &args.kafka_sasl_mechanism {
        config.set("sasl.mechanism", mechanism);
    }
    if let Some(username) = &args.kafka_sasl_username {
        config.set("sasl.username", username);
    }
    if let Some(password) = &args.kafka_sasl_password {
        config.set("sasl.password", &password.0);
    }
    if let Some(ca) = &args.kafka_ssl_ca_location {
        config.set("ssl.ca.location", ca);
    }
    for property in &args.kafka_properties {
        config.set(&property.key, &property.value.0);
    }
    config
}

/// Where librdkafka's own log lines and errors go. A broker that cannot be reached is reported
/// once per attempt by oms itself (`waiting for Kafka at ...`), by `/readyz` and by the relay,
/// so librdkafka's per-connection reports of it (one per client, every reconnect) go to debug;
/// everything else keeps its level.
#[derive(Clone, Copy, Default)]
pub struct KafkaLogs;

impl KafkaLogs {
    fn is_transport_noise(fac: &str, message: &str) -> bool {
        fac == "FAIL"
            && [
                "Connection refused",
                "Connect to",
                "timed out",
                "Disconnected",
            ]
            .iter()
            .any(|needle| message.contains(needle))
    }
}

impl ClientContext for KafkaLogs {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if Self::is_transport_noise(fac, message) {
            tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}");
        } else {
            DefaultClientContext.log(level, fac, message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure};
        match error.rdkafka_error_code() {
            Some(AllBrokersDown | BrokerTransportFailure) => {
                tracing::debug!(target: "rdkafka::client", "librdkafka: {error}: {reason}")
            }
            _ => DefaultClientContext.error(error, reason),
        }
    }
}

/// The W3C `traceparent` a message carries in its headers, if any.
pub fn traceparent_of<M: rdkafka::Message>(message: &M) -> Option<&str> {
    use rdkafka::message::Headers;
    message
        .headers()?
        .iter()
        .find(|header| header.key == crate::telemetry::TRACEPARENT)?
        .value
        .and_then(|value| std::str::from_utf8(value).ok())
}

/// Headers carrying `traceparent`, for a message that continues that trace.
pub fn trace_headers(traceparent: Option<&str>) -> Option<rdkafka::message::OwnedHeaders> {
    traceparent.map(|traceparent| {
        rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: crate::telemetry::TRACEPARENT,
            value: Some(traceparent.as_bytes()),
        })
    })
}

/// oms's producers.
pub type Producer = FutureProducer<KafkaLogs>;

/// An idempotent producer that waits for all in-sync replicas: no duplicates from its own
/// retries, and per-partition order kept.
pub fn producer(args: &KafkaArgs) -> anyhow::Result<Producer> {
    base_config(args)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("batch.num.messages", args.batch_max_messages.to_string())
        .set("message.timeout.ms", args.message_timeout_ms.to_string())
        .create_with_context(KafkaLogs)
        .context("creating the Kafka producer")
}

/// A producer for dead letters: acknowledged by all replicas, but not idempotent, so it never
/// becomes unusable after a broker outage (a duplicate dead letter is harmless).
pub fn dead_letter_producer(args: &KafkaArgs) -> anyhow::Result<Producer> {
    base_config(args)
        .set("acks", "all")
        .set("batch.num.messages", args.batch_max_messages.to_string())
        .set("message.timeout.ms", args.message_timeout_ms.to_string())
        .create_with_context(KafkaLogs)
        .context("creating the dead-letter producer")
}

/// Reports consumer lag per partition from librdkafka's periodic statistics, and counts the
/// group's rebalances.
pub struct LagReporting {
    pub metrics: Metrics,
    pub group: String,
    /// The partitions (topic, partition) this member holds now: librdkafka's statistics keep
    /// reporting a lag for partitions it held before, which another member reports now.
    pub assigned: std::sync::Mutex<std::collections::HashSet<(String, i32)>>,
}

impl ClientContext for LagReporting {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        KafkaLogs.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        KafkaLogs.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                if *partition < 0 {
                    continue;
                }
                let labels = [topic.as_str(), &partition.to_string()];
                let held = self
                    .assigned
                    .lock()
                    .expect("never poisoned")
                    .contains(&(topic.clone(), *partition));
                // Only partitions this member holds: a partition another member took is not
                // reported twice (-1: no lag known yet).
                if held && stats.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&labels)
                        .set(stats.consumer_lag);
                } else {
                    let _ = self.metrics.consumer_lag.remove_label_values(&labels);
                }
            }
        }
    }
}

impl ConsumerContext for LagReporting {
    fn post_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        if let rdkafka::consumer::Rebalance::Revoke(partitions) = rebalance {
            // Their lag is another member's to report now.
            let mut assigned = self.assigned.lock().expect("never poisoned");
            for partition in partitions.elements() {
                assigned.remove(&(partition.topic().to_owned(), partition.partition()));
                let _ = self
                    .metrics
                    .consumer_lag
                    .remove_label_values(&[partition.topic(), &partition.partition().to_string()]);
            }
        }
        if let rdkafka::consumer::Rebalance::Assign(partitions) = rebalance {
            self.assigned.lock().expect("never poisoned").extend(
                partitions
                    .elements()
                    .iter()
                    .map(|partition| (partition.topic().to_owned(), partition.partition())),
            );
            // A partition paused while this member last held it may come back still paused;
            // the consumer loop pauses again if its queue is full.
            if let Err(error) = consumer.resume(partitions) {
                tracing::warn!(group = %self.group, %error, "resuming assigned partitions failed");
            }
            tracing::info!(group = %self.group, partitions = partitions.count(), "partitions assigned");
            self.metrics
                .consumer_rebalances
                .with_label_values(&[&self.group])
                .inc();
        }
    }
}

impl ConsumerContext for KafkaLogs {}

/// A group member whose offsets move only when the application stores them, which it does after
/// the database commit. Stored offsets are committed in the background and on shutdown.
pub fn group_consumer(
    args: &KafkaArgs,
    group_id: &str,
    metrics: &Metrics,
) -> anyhow::Result<StreamConsumer<LagReporting>> {
    base_config(args)
        .set("statistics.interval.ms", "5000")
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            args.commit_interval_ms.to_string(),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", args.fetch_wait_max_ms.to_string())
        .set("session.timeout.ms", args.session_timeout_ms.to_string())
        // Also bounds how long a rebalance waits for a member that vanished without leaving
        // (a crash): the group's other members resume after this, not after the default 5 min.
        .set(
            "max.poll.interval.ms",
            args.max_poll_interval_ms
                .max(args.session_timeout_ms)
                .to_string(),
        )
        .set("heartbeat.interval.ms", "1000")
        .create_with_context(LagReporting {
            assigned: Default::default(),
            metrics: metrics.clone(),
            group: group_id.to_owned(),
        })
        .with_context(|| format!("creating the Kafka consumer of group {group_id}"))
}

/// How long leaving a group may take before the consumer is abandoned to finish on its own.
const LEAVE_GROUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Commits what was stored and leaves the group, without tripping librdkafka's close hang: a
/// rebalance that arrives while a consumer closes blocks `rd_kafka_assign` in the rebalance
/// callback forever (confluentinc/librdkafka#4884), and rdkafka closes the consumer when it is
/// dropped. So first unsubscribe and serve the revocation until nothing is assigned, then
/// commit and drop the consumer on a thread of its own, waiting for it a bounded time: a hang
/// there can no longer stall the runtime or the shutdown. Offsets not committed are delivered
/// again, which the consumers' inbox makes harmless.
pub async fn leave_group<C: ConsumerContext + 'static>(consumer: StreamConsumer<C>, name: &str) {
    let deadline = tokio::time::Instant::now() + LEAVE_GROUP_TIMEOUT;
    consumer.unsubscribe();
    while consumer
        .assignment()
        .is_ok_and(|assigned| assigned.count() > 0)
        && tokio::time::Instant::now() < deadline
    {
        // Receiving serves the revocation; a message that still arrives is not handled, so
        // its offset is not stored and it is delivered again.
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    let (closed, closing) = tokio::sync::oneshot::channel();
    let consumer_name = name.to_owned();
    let close = move || {
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit: nothing to lose.
            tracing::debug!(consumer = consumer_name, %error, "final offset commit");
        }
        drop(consumer);
        let _ = closed.send(());
    };
    if let Err(error) = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(close)
    {
        tracing::warn!(consumer = name, %error, "no thread to close the consumer on");
        return;
    }
    if tokio::time::timeout_at(deadline + LEAVE_GROUP_TIMEOUT, closing)
        .await
        .is_err()
    {
        tracing::warn!(
            consumer = name,
            "the consumer did not leave its group in time; leaving it to finish on its own"
        );
    }
}

/// A consumer outside any group that reads partitions it is assigned and commits nothing.
pub fn standalone_consumer(args: &KafkaArgs) -> anyhow::Result<StreamConsumer<KafkaLogs>> {
    base_config(args)
        // librdkafka wants a group id even when the group is never joined.
        .set("group.id", format!("oms-live-{}", uuid::Uuid::now_v7()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", args.fetch_wait_max_ms.to_string())
        .create_with_context(KafkaLogs)
        .context("creating the Kafka status reader")
}

/// Creates oms's topics and their dead-letter topics when they are missing.
pub async fn ensure_topics(args: &KafkaArgs) -> anyhow::Result<()> {
    let admin: AdminClient<KafkaLogs> = base_config(args)
        .create_with_context(KafkaLogs)
        .context("creating the Kafka admin client")?;
    let mut names: Vec<String> = Vec::new();
    for stream in Stream::ALL {
        names.push(args.topic(stream).to_owned());
        names.push(args.dead_letter_topic(stream));
    }
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                args.topic_partitions,
                TopicReplication::Fixed(args.topic_replication),
            )
        })
        .collect();
    // Without a request timeout librdkafka waits a minute for an unreachable broker.
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(5)));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .context("asking the broker to create topics")?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating topic {name} failed: {code}"),
        }
    }
    Ok(())
}
