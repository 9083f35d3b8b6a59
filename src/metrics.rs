//! Prometheus metrics, served at `/metrics`. One registry per running service.
//!
//! Counters are recorded where outcomes are known (resolvers, consumer handlers, the relay);
//! gauges that describe state (outbox backlog, live subscriptions) are read when scraped.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of one running service. Cheap to clone (one shared set): each request's
/// middleware and handler hold one.
#[derive(Clone, Default)]
pub struct Metrics(Arc<MetricSet>);

impl std::ops::Deref for Metrics {
    type Target = MetricSet;

    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics(Arc::new(MetricSet::new()))
    }
}

pub struct MetricSet {
    registry: Registry,
    pub orders_placed: IntCounter,
    /// Applied status changes by the status reached (confirmed, rejected, cancelled, ...).
    pub status_changes: IntCounterVec,
    pub consumer_processing_seconds: HistogramVec,
    pub consumer_batch_events: HistogramVec,
    /// Orders placed by one statement (see `service::placer`).
    pub place_batch_orders: Histogram,
    /// Orders waiting for a statement to place them.
    pub placements_waiting: IntGauge,
    /// Status change requests queued by one statement (see `service::status_requests`).
    pub status_request_batch_requests: Histogram,
    /// Status change requests waiting for a statement to queue them.
    pub status_requests_waiting: IntGauge,
    /// Threads running the service's tasks (`OMS_WORKER_THREADS`, else one per core).
    pub runtime_worker_threads: IntGauge,
    pub orders_pending_oldest_seconds: prometheus::Gauge,
    pub inbox_pruned: prometheus::IntCounter,
    pub events_redelivered: IntCounterVec,
    pub consumer_rebalances: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    /// 1 while a consumer's queue is full and it has paused fetching.
    pub consumer_fetching_paused: IntGaugeVec,
    pub dead_letters: IntCounterVec,
    pub outbox_published: IntCounter,
    pub outbox_publish_seconds: Histogram,
    /// From the start of the transaction that wrote an event until the relay read it, for each
    /// published event.
    pub outbox_wait_seconds: Histogram,
    /// From an event's publication (its Kafka timestamp) until a reader of this instance
    /// received it, by topic.
    pub event_transit_seconds: HistogramVec,
    /// From an event's publication until a consumer of this instance began applying it: the
    /// transit and the wait for a free slot, by topic.
    pub event_handling_delay_seconds: HistogramVec,
    pub outbox_backlog: IntGauge,
    pub outbox_oldest_age_seconds: prometheus::Gauge,
    pub live_subscriptions: IntGauge,
    /// GraphQL requests over HTTP, by operation name (see [`Metrics::record_graphql_request`]),
    /// kind and outcome.
    pub graphql_request_seconds: HistogramVec,
    /// Operation names already given a series of their own.
    operation_names: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Buckets of the stages between placing an order and its subscribers hearing of it: the
/// finer steps below 25 ms are where a broker's fetch wait and a relay round show.
const PIPELINE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Operation names that get a series of their own; later names are counted as `other`, so a
/// client cannot grow the metrics without bound.
const MAX_OPERATION_NAMES: usize = 100;

impl MetricSet {
    fn new() -> Self {
        let registry = Registry::new_custom(Some("oms".into()), None).expect("valid prefix");
        let metrics = MetricSet {
            orders_placed: IntCounter::new("orders_placed_total", "Orders placed").unwrap(),
            status_changes: IntCounterVec::new(
                Opts::new(
                    "order_status_changes_total",
                    "Applied order status changes, by the status reached",
                ),
                &["status"],
            )
            .unwrap(),
            consumer_processing_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "consumer_processing_seconds",
                    "Time to apply one Kafka message, by topic",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ]),
                &["topic"],
            )
            .unwrap(),
            consumer_lag: IntGaugeVec::new(
                Opts::new(
                    "consumer_lag_messages",
                    "Messages behind the end of the partition, by topic and partition",
                ),
                &["topic", "partition"],
            )
            .unwrap(),
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "dead_letters_total",
                    "Messages moved to a dead-letter topic, by source topic",
                ),
                &["topic"],
            )
            .unwrap(),
            outbox_published: IntCounter::new(
                "outbox_published_total",
                "Outbox events published to Kafka",
            )
            .unwrap(),
            outbox_publish_seconds: Histogram::with_opts(
                HistogramOpts::new("outbox_publish_seconds", "Time to publish one outbox batch")
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                    ]),
            )
            .unwrap(),
            outbox_wait_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "outbox_wait_seconds",
                    "From the start of the transaction that wrote an event until the relay read it",
                )
                .buckets(PIPELINE_BUCKETS.to_vec()),
            )
            .unwrap(),
            event_transit_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "event_transit_seconds",
                    "From an event's publication (its Kafka timestamp) until this instance received it, by topic",
                )
                .buckets(PIPELINE_BUCKETS.to_vec()),
                &["topic"],
            )
            .unwrap(),
            event_handling_delay_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "event_handling_delay_seconds",
                    "From an event's publication until a consumer began applying it (transit and the wait for a free slot), by topic",
                )
                .buckets(PIPELINE_BUCKETS.to_vec()),
                &["topic"],
            )
            .unwrap(),
            outbox_backlog: IntGauge::new("outbox_backlog", "Events waiting in the outbox")
                .unwrap(),
            outbox_oldest_age_seconds: prometheus::Gauge::new(
                "outbox_oldest_age_seconds",
                "Age of the oldest event waiting in the outbox",
            )
            .unwrap(),
            live_subscriptions: IntGauge::new(
                "live_subscriptions",
                "Active orderStatusChanged subscriptions on this instance",
            )
            .unwrap(),
            consumer_fetching_paused: IntGaugeVec::new(
                Opts::new(
                    "consumer_fetching_paused",
                    "1 while a consumer holds as many received messages as it may and has paused fetching",
                ),
                &["consumer"],
            )
            .unwrap(),
            consumer_rebalances: IntCounterVec::new(
                Opts::new(
                    "consumer_rebalances_total",
                    "Partition assignments this instance's consumers received, by group",
                ),
                &["group"],
            )
            .unwrap(),
            events_redelivered: IntCounterVec::new(
                Opts::new(
                    "events_redelivered_total",
                    "Events delivered again after they were applied (recognised by the inbox; nothing changed), by consumer",
                ),
                &["consumer"],
            )
            .unwrap(),
            inbox_pruned: prometheus::IntCounter::new(
                "inbox_pruned_total",
                "Consumer inbox entries deleted once past the retention",
            )
            .unwrap(),
            orders_pending_oldest_seconds: prometheus::Gauge::new(
                "orders_pending_oldest_seconds",
                "Seconds the oldest PENDING order has waited for its inventory check (0: none)",
            )
            .unwrap(),
            consumer_batch_events: HistogramVec::new(
                HistogramOpts::new(
                    "consumer_batch_events",
                    "Events a consumer took together, by topic (1: applied alone)",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
                &["topic"],
            )
            .unwrap(),
            place_batch_orders: Histogram::with_opts(
                HistogramOpts::new(
                    "place_batch_orders",
                    "Orders placed together by one statement (1: placed alone)",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            )
            .unwrap(),
            runtime_worker_threads: IntGauge::new(
                "runtime_worker_threads",
                "Threads running the service's tasks (OMS_WORKER_THREADS, else one per core)",
            )
            .unwrap(),
            placements_waiting: IntGauge::new(
                "placements_waiting",
                "Orders waiting for a free statement to place them",
            )
            .unwrap(),
            status_request_batch_requests: Histogram::with_opts(
                HistogramOpts::new(
                    "status_request_batch_requests",
                    "Status change requests queued together by one statement (1: queued alone)",
                )
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            )
            .unwrap(),
            status_requests_waiting: IntGauge::new(
                "status_requests_waiting",
                "Status change requests waiting for a free statement to queue them",
            )
            .unwrap(),
            graphql_request_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "graphql_request_seconds",
                    "GraphQL requests over HTTP: time to answer, by operation name, kind and outcome",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ]),
                &["operation", "kind", "outcome"],
            )
            .unwrap(),
            operation_names: Default::default(),
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 25] = [
            Box::new(metrics.runtime_worker_threads.clone()),
            Box::new(metrics.outbox_wait_seconds.clone()),
            Box::new(metrics.event_transit_seconds.clone()),
            Box::new(metrics.event_handling_delay_seconds.clone()),
            Box::new(metrics.consumer_fetching_paused.clone()),
            Box::new(metrics.consumer_rebalances.clone()),
            Box::new(metrics.events_redelivered.clone()),
            Box::new(metrics.inbox_pruned.clone()),
            Box::new(metrics.orders_pending_oldest_seconds.clone()),
            Box::new(metrics.consumer_batch_events.clone()),
            Box::new(metrics.place_batch_orders.clone()),
            Box::new(metrics.placements_waiting.clone()),
            Box::new(metrics.status_request_batch_requests.clone()),
            Box::new(metrics.status_requests_waiting.clone()),
            Box::new(metrics.orders_placed.clone()),
            Box::new(metrics.status_changes.clone()),
            Box::new(metrics.consumer_processing_seconds.clone()),
            Box::new(metrics.consumer_lag.clone()),
            Box::new(metrics.dead_letters.clone()),
            Box::new(metrics.outbox_published.clone()),
            Box::new(metrics.outbox_publish_seconds.clone()),
            Box::new(metrics.outbox_backlog.clone()),
            Box::new(metrics.outbox_oldest_age_seconds.clone()),
            Box::new(metrics.live_subscriptions.clone()),
            Box::new(metrics.graphql_request_seconds.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        metrics
    }

    /// Records one GraphQL request. Unnamed operations count as `anonymous`; names that are not
    /// GraphQL names, and names past the first [`MAX_OPERATION_NAMES`], as `other`.
    pub fn record_graphql_request(
        &self,
        operation: Option<&str>,
        kind: &str,
        outcome: &str,
        elapsed: std::time::Duration,
    ) {
        let operation = match operation {
            None => "anonymous",
            Some(name) if self.gives_a_series_to(name) => name,
            Some(_) => "other",
        };
        self.graphql_request_seconds
            .with_label_values(&[operation, kind, outcome])
            .observe(elapsed.as_secs_f64());
    }

    /// Records how long ago `message` was published (its Kafka timestamp, set by the producer),
    /// in `histogram`, by topic. Clocks of different hosts differ: a negative age counts as 0.
    pub fn observe_since_published<M: rdkafka::Message>(
        &self,
        histogram: &HistogramVec,
        message: &M,
    ) {
        let Some(published_ms) = message.timestamp().to_millis() else {
            return;
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        histogram
            .with_label_values(&[message.topic()])
            .observe((now_ms - published_ms).max(0) as f64 / 1000.0);
    }

    fn gives_a_series_to(&self, name: &str) -> bool {
        let is_name = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
        if !is_name {
            return false;
        }
        let mut names = self.operation_names.lock().expect("never poisoned");
        if names.contains(name) {
            return true;
        }
        if names.len() >= MAX_OPERATION_NAMES {
            return false;
        }
        names.insert(name.to_owned());
        true
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding metrics into memory cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for MetricSet {
    fn default() -> Self {
        Self::new()
    }
}
