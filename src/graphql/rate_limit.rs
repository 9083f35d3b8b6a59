//! Token buckets (per instance): mutations per user, and requests per user or, for anonymous
//! callers, per IP address.

use crate::auth::Viewer;
use crate::error::AppError;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest,
};
use async_graphql::{ErrorExtensions, Pos, Request, ServerResult};
use std::any::TypeId;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each mutation field takes a token of its user's bucket.
pub struct MutationRateLimiter(pub RateLimiter);

impl MutationRateLimiter {
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        self.0.check(user)
    }
}

/// Who a request is counted against.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    User(&'a str),
    Anonymous(IpAddr),
}

/// Every HTTP request and every WebSocket operation takes a token: a signed-in caller's from
/// their own bucket, an anonymous caller's from their IP address's.
pub struct RequestRateLimiter {
    per_user: RateLimiter,
    per_anonymous_ip: RateLimiter,
}

impl RequestRateLimiter {
    pub fn new(limits: &crate::config::ApiLimits) -> Self {
        RequestRateLimiter {
            per_user: RateLimiter::new(limits.requests_per_second, limits.request_burst),
            per_anonymous_ip: RateLimiter::new(
                limits.anonymous_requests_per_second,
                limits.anonymous_request_burst,
            ),
        }
    }

    /// Takes one token for `caller`, or says how long until one is available.
    pub fn check(&self, caller: Caller<'_>) -> Result<(), Duration> {
        match caller {
            Caller::User(user) => self.per_user.check(user),
            Caller::Anonymous(ip) => self.per_anonymous_ip.check(&ip.to_string()),
        }
    }
}

/// Marks a WebSocket connection's data with where the connection comes from; HTTP requests are
/// counted by the HTTP handler before they reach the schema.
pub struct WebSocketClient {
    pub ip: IpAddr,
}

/// Counts every operation sent over a WebSocket against the caller's request rate.
pub struct WebSocketOperationLimit;

impl ExtensionFactory for WebSocketOperationLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(WebSocketOperationLimit)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for WebSocketOperationLimit {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let client = ctx
            .session_data
            .get(&TypeId::of::<WebSocketClient>())
            .and_then(|data| data.downcast_ref::<WebSocketClient>());
        if let (Some(client), Some(limiter)) = (client, ctx.data_opt::<Arc<RequestRateLimiter>>()) {
            let viewer = ctx
                .session_data
                .get(&TypeId::of::<Viewer>())
                .and_then(|data| data.downcast_ref::<Viewer>());
            let caller = match viewer {
                Some(viewer) => Caller::User(&viewer.user_id),
                None => Caller::Anonymous(client.ip),
            };
            limiter.check(caller).map_err(|retry_after| {
                AppError::RateLimited {
                    what: "requests",
                    retry_after,
                }
                .extend()
                .into_server_error(Pos::default())
            })?;
        }
        next.run(ctx, request).await
    }
}

/// A token bucket per key.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Keys remembered before idle (full) buckets are forgotten.
const MAX_TRACKED_KEYS: usize = 100_000;

impl RateLimiter {
    pub fn new(per_second: f64, burst: f64) -> Self {
        RateLimiter {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .expect("the rate limiter lock is never poisoned");
        if buckets.len() > MAX_TRACKED_KEYS {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_the_burst_then_the_rate_and_others_are_unaffected() {
        let limiter = RateLimiter::new(2.0, 3.0);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("alice", start).is_ok());
        }
        let wait = limiter.check_at("alice", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(limiter.check_at("bob", start).is_ok());
        assert!(limiter
            .check_at("alice", start + Duration::from_millis(500))
            .is_ok());
    }
}
