//! The operator's view of the dead-letter topics (`oms dlq list`, `oms dlq replay`): what was
//! set aside and why, and, once the cause is fixed, the same messages sent back to the topic
//! they came from. The consumers apply each event at most once (their inbox), so replaying a
//! message that was applied meanwhile, or twice, changes nothing.

use super::{base_config, KafkaLogs, Producer};
use crate::config::{DlqAction, KafkaArgs};
use crate::domain::events::{decode, Stream};
use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::Duration;
use uuid::Uuid;

const TIMEOUT: Duration = Duration::from_secs(10);

/// One dead letter as an operator sees it.
#[derive(Debug, serde::Serialize)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub reason: Option<String>,
    pub consumer: Option<String>,
    pub original_topic: Option<String>,
    pub original_partition: Option<String>,
    pub original_offset: Option<String>,
    /// The event's id and type, when the payload decodes.
    pub event_id: Option<Uuid>,
    pub event_type: Option<String>,
    #[serde(skip)]
    message: OwnedMessage,
}

/// Which dead letters an operator means.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// Only this partition of the dead-letter topic.
    pub partition: Option<i32>,
    /// Only offsets from..=to (of the dead-letter topic).
    pub from_offset: Option<i64>,
    pub to_offset: Option<i64>,
    /// Only the message carrying this event.
    pub event_id: Option<Uuid>,
}

impl Selection {
    fn takes(&self, letter: &DeadLetter) -> bool {
        self.partition
            .is_none_or(|partition| partition == letter.partition)
            && self.from_offset.is_none_or(|from| letter.offset >= from)
            && self.to_offset.is_none_or(|to| letter.offset <= to)
            && self.event_id.is_none_or(|id| letter.event_id == Some(id))
    }
}

fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|header| header.key == name)?
        .value
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

impl DeadLetter {
    fn new(message: OwnedMessage) -> Self {
        let event = decode(message.payload()).ok();
        DeadLetter {
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
            reason: header(&message, "x-dlq-reason"),
            consumer: header(&message, "x-dlq-consumer"),
            original_topic: header(&message, "x-original-topic"),
            original_partition: header(&message, "x-original-partition"),
            original_offset: header(&message, "x-original-offset"),
            event_id: event.as_ref().map(|event| event.event_id),
            event_type: event.map(|event| event.body.type_name().to_owned()),
            message,
        }
    }
}

/// Every dead letter of `stream`'s topic that `selection` takes, oldest first per partition.
pub fn list(
    kafka: &KafkaArgs,
    stream: Stream,
    selection: &Selection,
) -> anyhow::Result<Vec<DeadLetter>> {
    let topic = kafka.dead_letter_topic(stream);
    let consumer: BaseConsumer<KafkaLogs> = base_config(kafka)
        .set("group.id", format!("{}-dlq-reader", kafka.group_prefix))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create_with_context(KafkaLogs)
        .context("creating the dead-letter reader")?;
    let metadata = consumer
        .fetch_metadata(Some(&topic), TIMEOUT)
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .filter(|partition| {
            selection
                .partition
                .is_none_or(|wanted| wanted == *partition)
        })
        .collect();
    anyhow::ensure!(
        !partitions.is_empty(),
        "the topic {topic} has no such partition"
    );
    // Where each partition ends now: reading stops there.
    let mut remaining = std::collections::HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, TIMEOUT)
            .with_context(|| format!("reading the offsets of {topic}/{partition}"))?;
        let start = selection.from_offset.unwrap_or(low).max(low);
        if start < high {
            remaining.insert(partition, high);
            assignment.add_partition_offset(&topic, partition, Offset::Offset(start))?;
        }
    }
    consumer.assign(&assignment)?;
    let mut letters = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the dead letters of {topic} could not all be read within a minute"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.context("reading a dead letter")?.detach();
        let (partition, offset) = (message.partition(), message.offset());
        if remaining
            .get(&partition)
            .is_some_and(|high| offset + 1 >= *high)
        {
            remaining.remove(&partition);
        }
        let letter = DeadLetter::new(message);
        if selection.takes(&letter) {
            letters.push(letter);
        }
    }
    letters.sort_by_key(|letter| (letter.partition, letter.offset));
    Ok(letters)
}

/// Sends `letters` back to the topic each came from (else `stream`'s), with their key, payload
/// and original headers, marked `x-replayed-from-dlq: <partition>:<offset>`. Returns how many.
pub async fn replay(
    kafka: &KafkaArgs,
    stream: Stream,
    letters: &[DeadLetter],
    producer: &Producer,
) -> anyhow::Result<usize> {
    for letter in letters {
        let topic = letter
            .original_topic
            .clone()
            .unwrap_or_else(|| kafka.topic(stream).to_owned());
        let from = format!("{}:{}", letter.partition, letter.offset);
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "x-replayed-from-dlq",
            value: Some(&from),
        });
        if let Some(original) = letter.message.headers() {
            let ours = |key: &str| key.starts_with("x-dlq-") || key.starts_with("x-original-");
            for header in original.iter().filter(|header| !ours(header.key)) {
                headers = headers.insert(header);
            }
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
        if let Some(key) = letter.message.key() {
            record = record.key(key);
        }
        if let Some(payload) = letter.message.payload() {
            record = record.payload(payload);
        }
        producer
            .send(record, TIMEOUT)
            .await
            .map_err(|(error, _)| error)
            .with_context(|| format!("sending the dead letter {from} back to {topic}"))?;
    }
    Ok(letters.len())
}

/// Runs `oms dlq list` or `oms dlq replay`, printing one line per dead letter.
pub async fn run(action: &DlqAction) -> anyhow::Result<()> {
    let (selection_args, replaying) = match action {
        DlqAction::List(args) => (args, false),
        DlqAction::Replay(args) => {
            anyhow::ensure!(
                args.all || args.event_id.is_some() || args.from_offset.is_some() || args.to_offset.is_some(),
                "say which dead letters to replay: --event-id, --from-offset/--to-offset (with --partition), or --all"
            );
            (&args.selection, true)
        }
    };
    let stream = Stream::parse(&selection_args.topic).context("--topic is inventory or orders")?;
    let selection = Selection {
        partition: selection_args.partition,
        from_offset: selection_args.from_offset,
        to_offset: selection_args.to_offset,
        event_id: selection_args.event_id,
    };
    let kafka = &selection_args.kafka;
    let letters = tokio::task::block_in_place(|| list(kafka, stream, &selection))?;
    for letter in &letters {
        if selection_args.json {
            println!("{}", serde_json::to_string(letter)?);
        } else {
            println!(
                "{}/{}:{} key={} event={} ({}) from {}/{}:{} by {}: {}",
                kafka.dead_letter_topic(stream),
                letter.partition,
                letter.offset,
                letter.key.as_deref().unwrap_or("-"),
                letter
                    .event_id
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "-".into()),
                letter.event_type.as_deref().unwrap_or("undecodable"),
                letter.original_topic.as_deref().unwrap_or("?"),
                letter.original_partition.as_deref().unwrap_or("?"),
                letter.original_offset.as_deref().unwrap_or("?"),
                letter.consumer.as_deref().unwrap_or("?"),
                letter.reason.as_deref().unwrap_or("no reason recorded"),
            );
        }
    }
    if replaying {
        let producer = super::dead_letter_producer(kafka)?;
        let sent = replay(kafka, stream, &letters, &producer).await?;
        eprintln!("replayed {sent} dead letters to {}", kafka.topic(stream));
    } else {
        eprintln!("{} dead letters", letters.len());
    }
    Ok(())
}
