//! Fan-out benchmark (prints figures; not a test): holds N concurrent `orderStatusChanged`
//! subscriptions on one oms instance and measures
//! - resident memory per idle subscription (the server's RSS before and after connecting),
//! - the delay from a status change's commit to its arrival at the p50 / p99 / last subscriber,
//!   for changes 50 ms apart, and for a burst of changes at once with the deliveries per second.
//!
//! It starts its own `oms serve` (release build) against the local PostgreSQL and broker:
//!
//! ```text
//! source scripts/infra.sh && cargo build --release --bin oms --example fanout
//! target/release/examples/fanout --subscribers 10000 --changes 20 --burst 20
//! ```

#[path = "support/mod.rs"]
mod support;

use futures_util::{SinkExt, StreamExt};
use oms::auth::Role;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{graphql, percentile, BenchServer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

struct Args {
    subscribers: usize,
    /// Orders placed one after another, 50 ms apart.
    changes: usize,
    /// Orders then placed all at once.
    burst: usize,
    /// The pause between the steady orders, in milliseconds.
    spacing_ms: u64,
}

fn args() -> Args {
    let mut args = Args {
        subscribers: 1_000,
        changes: 20,
        burst: 20,
        spacing_ms: 50,
    };
    let raw: Vec<String> = std::env::args().collect();
    for pair in raw[1..].chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok());
        match (pair[0].as_str(), value) {
            ("--subscribers", Some(v)) => args.subscribers = v,
            ("--changes", Some(v)) => args.changes = v,
            ("--burst", Some(v)) => args.burst = v,
            ("--spacing-ms", Some(v)) => args.spacing_ms = v as u64,
            _ => panic!(
                "usage: fanout [--subscribers N] [--changes M] [--burst B] [--spacing-ms MS]"
            ),
        }
    }
    args
}

/// The order id of a `{"orderId":"...","version":1}` change (the order was placed).
fn placed_order_id(message: &str) -> Option<&str> {
    if !message.contains("\"version\":1}") {
        return None;
    }
    let start = message.find("\"orderId\":\"")? + "\"orderId\":\"".len();
    let length = message[start..].find('"')?;
    Some(&message[start..start + length])
}

/// Places one order; its id and when the answer (so the commit) arrived.
async fn place_order(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    document: &str,
) -> (String, Instant) {
    let answer = graphql(client, url, token, document, json!({}))
        .await
        .unwrap();
    let committed = Instant::now();
    let id = answer["data"]["placeOrder"]["order"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("placeOrder failed: {answer}"))
        .to_owned();
    (id, committed)
}

/// Waits until `count` arrivals were seen (or two minutes passed).
async fn wait_for(arrived: &AtomicUsize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrived.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() {
    let args = args();
    let server = BenchServer::start(
        "fanout",
        &[
            "--max-connections-per-user=1000000".into(),
            "--live-buffer=65536".into(),
        ],
    )
    .await;
    let staff = server.token("bench-staff", Role::Staff);
    let customer = server.token("bench-customer", Role::Customer);
    let upsert = "mutation { upsertInventoryItem(input: {sku: \"BENCH\", name: \"Bench\", quantity: 1000000}) { item { sku } } }";
    let client = reqwest::Client::new();
    let url = server.graphql_url();
    graphql(&client, &url, &staff, upsert, json!({}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = server.rss_kib();

    // N subscribers, each on its own connection, all watching every order. Each keeps its own
    // arrivals (no shared lock on the measuring side) and hands them back when it has them all.
    let per_subscriber = args.changes + args.burst;
    let arrived = Arc::new(AtomicUsize::new(0));
    let connect_started = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..args.subscribers {
        let mut request = server.websocket_url().into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        socket.send(Message::Text(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {staff}")}}).to_string().into())).await.unwrap();
        socket.next().await.unwrap().unwrap();
        socket.send(Message::Text(json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { orderStatusChanged { orderId version } }"}}).to_string().into())).await.unwrap();
        let arrived = arrived.clone();
        readers.push(tokio::spawn(async move {
            let mut arrivals: Vec<(String, Instant)> = Vec::with_capacity(per_subscriber);
            let deadline = tokio::time::sleep(Duration::from_secs(180));
            tokio::pin!(deadline);
            while arrivals.len() < per_subscriber {
                let frame = tokio::select! {
                    frame = socket.next() => frame,
                    _ = &mut deadline => break,
                };
                let Some(Ok(Message::Text(text))) = frame else {
                    if frame.is_none() {
                        break;
                    }
                    continue;
                };
                let now = Instant::now();
                // The measuring side shares the machine's two cores with the server: it only
                // picks the order id out of PENDING changes, without parsing the JSON.
                if let Some(order) = placed_order_id(&text) {
                    arrivals.push((order.to_owned(), now));
                    arrived.fetch_add(1, Ordering::Relaxed);
                }
            }
            arrivals
        }));
    }
    let connect_time = connect_started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server.rss_kib();

    // Phase 1: M orders placed one after another, `spacing_ms` apart (latency at a steady pace). A
    // change's commit time is when placeOrder answers (it commits before answering), on this
    // side's clock.
    let place =
        "mutation { placeOrder(input: {items: [{sku: \"BENCH\", quantity: 1}]}) { order { id } } }";
    let mut commits = HashMap::new();
    for _ in 0..args.changes {
        let (id, committed) = place_order(&client, &url, &customer, place).await;
        commits.insert(id, committed);
        tokio::time::sleep(Duration::from_millis(args.spacing_ms)).await;
    }
    wait_for(&arrived, args.subscribers * args.changes).await;

    // Phase 2: a burst of B orders placed at once (throughput of the fan-out).
    let burst_started = Instant::now();
    let burst: Vec<_> = (0..args.burst)
        .map(|_| {
            let (client, url, customer) = (client.clone(), url.clone(), customer.clone());
            tokio::spawn(async move { place_order(&client, &url, &customer, place).await })
        })
        .collect();
    let mut burst_ids = std::collections::HashSet::new();
    for placed in burst {
        let (id, committed) = placed.await.unwrap();
        burst_ids.insert(id.clone());
        commits.insert(id, committed);
    }
    let expected = args.subscribers * per_subscriber;
    wait_for(&arrived, expected).await;

    let mut steady = Vec::new();
    let mut burst_delays = Vec::new();
    let mut last_per_change: HashMap<String, f64> = HashMap::new();
    let mut last_burst_arrival = burst_started;
    for reader in readers {
        for (id, at) in reader.await.unwrap() {
            let Some(committed) = commits.get(&id) else {
                continue;
            };
            let delay = at.saturating_duration_since(*committed).as_secs_f64() * 1000.0;
            if burst_ids.contains(&id) {
                burst_delays.push(delay);
                last_burst_arrival = last_burst_arrival.max(at);
            } else {
                steady.push(delay);
                let last = last_per_change.entry(id).or_default();
                *last = last.max(delay);
            }
        }
    }
    steady.sort_by(f64::total_cmp);
    burst_delays.sort_by(f64::total_cmp);
    let mut last_per_change: Vec<f64> = last_per_change.into_values().collect();
    last_per_change.sort_by(f64::total_cmp);
    let delivered = steady.len() + burst_delays.len();
    println!("subscribers                 {}", args.subscribers);
    println!(
        "connect time                {:.1} s",
        connect_time.as_secs_f64()
    );
    println!(
        "server RSS idle / held      {} MiB / {} MiB",
        rss_before / 1024,
        rss_after / 1024
    );
    println!(
        "memory per subscription     {:.1} KiB",
        (rss_after.saturating_sub(rss_before)) as f64 / args.subscribers as f64
    );
    println!("deliveries                  {delivered} of {expected}");
    if !steady.is_empty() {
        println!(
            "steady ({} changes, {} ms apart): commit->arrival p50 {:.1} ms, p99 {:.1} ms; \
             last subscriber p50 {:.1} ms, max {:.1} ms",
            args.changes,
            args.spacing_ms,
            percentile(&steady, 0.50),
            percentile(&steady, 0.99),
            percentile(&last_per_change, 0.50),
            last_per_change.last().unwrap()
        );
    }
    if !burst_delays.is_empty() {
        let seconds = last_burst_arrival
            .duration_since(burst_started)
            .as_secs_f64();
        println!(
            "burst ({} changes at once): commit->arrival p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             {:.0} deliveries/s ({} in {:.2} s)",
            args.burst,
            percentile(&burst_delays, 0.50),
            percentile(&burst_delays, 0.99),
            burst_delays.last().unwrap(),
            burst_delays.len() as f64 / seconds,
            burst_delays.len(),
            seconds
        );
    }
    server.stop().await;
}
