//! Upstream back-off: a 429 or 503 with `Retry-After` on a credentialed route is
//! remembered for (route, credential, user) and answered by sidekey until it passes,
//! never longer than [`MAX_BACKOFF`] whatever the upstream said.
//!
//! Deadlines are on tokio's clock (tests pause it); moka only evicts entries whose
//! deadline has passed (on its own clock) and bounds how many are kept.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use moka::Expiry;
use moka::sync::Cache;
use tokio::time::Instant;

/// The longest sidekey holds calls back for an upstream's `Retry-After`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Most (route, credential, user) back-offs kept at once.
const MAX_HELD: u64 = 100_000;

/// Whose calls an upstream asked to slow down.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BackoffKey {
    pub route: Arc<str>,
    pub credential: Arc<str>,
    pub user: Option<Arc<str>>,
}

#[derive(Clone, Copy)]
struct Hold {
    until: Instant,
    ttl: Duration,
}

struct HoldExpiry;

impl Expiry<BackoffKey, Hold> for HoldExpiry {
    fn expire_after_create(
        &self,
        _k: &BackoffKey,
        v: &Hold,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }

    fn expire_after_update(
        &self,
        _k: &BackoffKey,
        v: &Hold,
        _now: std::time::Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

pub(crate) struct Backoff {
    held: Cache<BackoffKey, Hold>,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            held: Cache::builder()
                .max_capacity(MAX_HELD)
                .expire_after(HoldExpiry)
                .build(),
        }
    }

    /// Time left on the back-off for `key`, if one is running.
    pub(crate) fn remaining(&self, key: &BackoffKey) -> Option<Duration> {
        let hold = self.held.get(key)?;
        let left = hold.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.held.invalidate(key);
            return None;
        }
        Some(left)
    }

    /// Hold calls for `key` back for `wait` (at most [`MAX_BACKOFF`]).
    pub(crate) fn hold(&self, key: BackoffKey, wait: Duration) -> Duration {
        let wait = wait.min(MAX_BACKOFF);
        if !wait.is_zero() {
            self.held.insert(
                key,
                Hold {
                    until: Instant::now() + wait,
                    ttl: wait,
                },
            );
        }
        wait
    }
}

/// How long an upstream's answer asks callers to wait: a 429 or 503 with a
/// `Retry-After` of delta-seconds or an HTTP-date (RFC 9110 section 10.2.3) in the
/// future. Anything else (other statuses, no header, two headers, a date in the past,
/// garbage) asks for nothing.
pub(crate) fn requested_wait(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let mut values = headers.get_all(http::header::RETRY_AFTER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let text = value.to_str().ok()?.trim();
    let wait = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Huge numbers saturate: they are capped at MAX_BACKOFF anyway.
        Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        httpdate::parse_http_date(text)
            .ok()?
            .duration_since(now)
            .ok()?
    };
    (!wait.is_zero()).then_some(wait)
}

/// `Retry-After` in whole seconds, rounded up, never below 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::RETRY_AFTER, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_is_read_from_429_and_503_only() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let tmr = StatusCode::TOO_MANY_REQUESTS;
        let wait = |s, v: &[&str]| requested_wait(s, &headers(v), now);
        assert_eq!(wait(tmr, &["120"]), Some(Duration::from_secs(120)));
        assert_eq!(
            wait(StatusCode::SERVICE_UNAVAILABLE, &[" 7 "]),
            Some(Duration::from_secs(7))
        );
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 + 60.
        assert_eq!(
            wait(tmr, &["Sun, 06 Nov 1994 08:50:37 GMT"]),
            Some(Duration::from_secs(60))
        );
        assert_eq!(wait(tmr, &["Sun, 06 Nov 1994 08:49:00 GMT"]), None, "past");
        assert_eq!(wait(StatusCode::OK, &["120"]), None);
        assert_eq!(wait(StatusCode::BAD_GATEWAY, &["120"]), None);
        assert_eq!(wait(tmr, &[]), None);
        assert_eq!(wait(tmr, &["0"]), None);
        assert_eq!(wait(tmr, &["-5"]), None);
        assert_eq!(wait(tmr, &["soon"]), None);
        assert_eq!(wait(tmr, &["5", "6"]), None, "ambiguous");
        assert_eq!(
            wait(tmr, &["99999999999999999999999"]),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(20)), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_runs_out_and_is_capped_at_an_hour() {
        let b = Backoff::new();
        let key = |user: &str| BackoffKey {
            route: Arc::from("r"),
            credential: Arc::from("c"),
            user: Some(Arc::from(user)),
        };
        assert_eq!(b.remaining(&key("alice")), None);
        assert_eq!(
            b.hold(key("alice"), Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(b.remaining(&key("alice")), Some(Duration::from_secs(30)));
        assert_eq!(b.remaining(&key("bob")), None, "per user");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(b.remaining(&key("alice")), Some(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.remaining(&key("alice")), None);
        assert_eq!(b.hold(key("bob"), Duration::from_secs(86_400)), MAX_BACKOFF);
        tokio::time::advance(MAX_BACKOFF - Duration::from_secs(1)).await;
        assert!(b.remaining(&key("bob")).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.remaining(&key("bob")), None);
    }
}
