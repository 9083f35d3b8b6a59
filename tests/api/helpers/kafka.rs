//! The broker: a private tansu per test that needs one, and reading topics and consumer
//! groups back.

use super::*;

/// A broker of the test's own (tansu, in memory), for faults that must not disturb other tests.
pub struct DedicatedBroker {
    pub address: String,
    process: std::process::Child,
}

impl DedicatedBroker {
    pub async fn start() -> DedicatedBroker {
        Self::start_on(free_port()).await
    }

    /// A broker on `port` (which nothing else may listen on).
    pub async fn start_on(port: u16) -> DedicatedBroker {
        Self::start_with(port, port).await
    }

    /// A broker on `port` that tells clients to reach it at `advertised_port` (a proxy in
    /// front of it).
    pub async fn start_with(port: u16, advertised_port: u16) -> DedicatedBroker {
        Self::launch(port, advertised_port, "memory://tansu/", &[], None).await
    }

    /// A broker keeping its data in SQLite under `dir`, so that what it stores (SCRAM
    /// credentials among it) outlives a restart; with `authentication`, every client must sign
    /// in with SASL.
    pub async fn start_stored(
        dir: &std::path::Path,
        port: u16,
        authentication: bool,
    ) -> DedicatedBroker {
        let flags: &[&str] = if authentication {
            &["--authentication"]
        } else {
            &[]
        };
        Self::launch(port, port, "sqlite://tansu.db", flags, Some(dir)).await
    }

    async fn launch(
        port: u16,
        advertised_port: u16,
        storage: &str,
        flags: &[&str],
        dir: Option<&std::path::Path>,
    ) -> DedicatedBroker {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised_port}");
        let mut command = std::process::Command::new("tansu");
        command
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", storage])
            .args(flags)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let process = command
            .spawn()
            .expect("tansu is on PATH (scripts/test installs it)");
        // Owned before the wait, so that dropping it kills tansu if it never listens.
        let broker = DedicatedBroker {
            address: format!("127.0.0.1:{port}"),
            process,
        };
        wait_until_listening(port, Duration::from_secs(10), "tansu").await;
        broker
    }

    /// Freezes the broker: connections stay open but nothing answers.
    pub fn pause(&self) {
        signal(self.process.id(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.process.id(), "CONT");
    }
}

impl Drop for DedicatedBroker {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Waits until consumer group `group` has committed past everything in `topic`.
pub async fn wait_until_caught_up(group: &str, topic: &str) {
    eventually(Duration::from_secs(60), || async {
        let (group_name, topic_name) = (group.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || group_caught_up(&group_name, &topic_name))
            .await
            .unwrap()
            .map_err(|position| format!("{group} did not catch up on {topic}: {position}"))
    })
    .await
}

/// Whether `group` has committed offsets up to the end of every partition of `topic`; if not,
/// where it stands.
pub fn group_caught_up(group: &str, topic: &str) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(5);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, timeout)
        .map_err(|e| e.to_string())?;
    let positions: Vec<(i64, Offset)> = (0..partitions)
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .unwrap();
            let at = committed
                .find_partition(topic, partition)
                .map(|p| p.offset())
                .unwrap_or(Offset::Invalid);
            (high, at)
        })
        .collect();
    if positions
        .iter()
        // At or past the end: tansu's reported end can lag behind what was already consumed.
        .all(|(high, at)| *high == 0 || matches!(at, Offset::Offset(o) if o >= high))
    {
        Ok(())
    } else {
        Err(format!("(end, committed) per partition: {positions:?}"))
    }
}

/// A message read back from a topic.
pub struct ReadMessage {
    pub key: String,
    pub headers: HashMap<String, String>,
    pub payload: Vec<u8>,
}

/// Reads up to `count` messages of `topic` from the start (30 s at the most).
pub async fn read_messages(topic: &str, count: usize) -> Vec<ReadMessage> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .create()
            .unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut messages = Vec::new();
        while messages.len() < count && Instant::now() < deadline {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| {
                            let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                            (h.key.to_owned(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            messages.push(ReadMessage {
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                headers,
                payload: message.payload().unwrap_or_default().to_vec(),
            });
        }
        messages
    })
    .await
    .unwrap()
}

/// Every message on `topic` so far (up to the end each partition reports).
pub async fn read_topic(topic: &str) -> Vec<ReadMessage> {
    let count = messages_per_partition(topic).await.iter().sum::<i64>();
    read_messages(topic, count as usize).await
}

/// How many messages each partition of `topic` holds, by partition number.
pub async fn messages_per_partition(topic: &str) -> Vec<i64> {
    let name = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()
            .unwrap();
        let timeout = Duration::from_secs(5);
        let metadata = consumer.fetch_metadata(Some(&name), timeout).unwrap();
        let partitions = metadata.topics()[0].partitions().len() as i32;
        (0..partitions)
            .map(|partition| {
                let (low, high) = consumer
                    .fetch_watermarks(&name, partition, timeout)
                    .unwrap();
                high - low
            })
            .collect()
    })
    .await
    .unwrap()
}
