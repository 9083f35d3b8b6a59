//! Who is on the other end of a connection: the caller's IP address, and the WebSocket
//! connections each user and each address holds on this instance.

use axum::http::HeaderMap;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// The caller's IP address: the connection's peer, or, behind a proxy that is trusted to set
/// it, the last `X-Forwarded-For` entry (the one that proxy appended).
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for {
        // Only the last entry: the ones before it are whatever the client sent.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .and_then(|entry| entry.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.ip()
}

/// Counts connections per key (a user id, an IP address) against a maximum.
pub struct ConnectionCounts<K> {
    max: usize,
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone> ConnectionCounts<K> {
    pub fn new(max: usize) -> Self {
        ConnectionCounts {
            max,
            counts: Default::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for one more connection of `key`, held until the slot is dropped; `None` when
    /// `key` already holds the most it may.
    pub fn acquire(&self, key: K) -> Option<ConnectionSlot<K>> {
        let mut counts = self.counts.lock().expect("never poisoned");
        let count = counts.entry(key.clone()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            key,
            counts: self.counts.clone(),
        })
    }
}

/// One connection's place; released when dropped.
pub struct ConnectionSlot<K: Eq + Hash> {
    key: K,
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash> Drop for ConnectionSlot<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("never poisoned");
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_address_counts_only_when_trusted() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.2.3.4, 5.6.7.8".parse().unwrap());
        assert_eq!(client_ip(peer, &headers, false), peer.ip());
        assert_eq!(
            client_ip(peer, &headers, true),
            "5.6.7.8".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, &HeaderMap::new(), true), peer.ip());
    }

    #[test]
    fn a_key_holds_at_most_the_maximum_and_a_dropped_slot_frees_its_place() {
        let counts = ConnectionCounts::new(2);
        let first = counts.acquire("alice").unwrap();
        let _second = counts.acquire("alice").unwrap();
        assert!(counts.acquire("alice").is_none());
        assert!(counts.acquire("bob").is_some());
        drop(first);
        assert!(counts.acquire("alice").is_some());
    }
}
