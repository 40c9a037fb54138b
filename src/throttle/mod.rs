//! Throttling: the calls sidekey answers with 429 `rate_limited` instead of sending
//! them upstream.
//!
//! Two reasons, each a label of `sidekey_rate_limited_total{route,reason}`:
//! * `limit` — the route's `rate:` budget is spent (`limiter.rs`);
//! * `upstream` — the upstream answered this (route, credential, user) with a 429 or
//!   503 and `Retry-After`, which has not run out yet (`backoff.rs`).
//!
//! State is per process and kept across config reloads (it lives in `proxy::Shared`);
//! a reload that changes a route's rate starts fresh budgets for it.

mod backoff;
mod clock;
mod limiter;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

pub use backoff::retry_after_secs;

use crate::config::{RateKey, RouteSpec};
use crate::error::ProxyError;
use crate::metrics::Metrics;
use backoff::{Backoff, BackoffKey};
use limiter::{Limiter, Scope};

/// Why a call was held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Over the route's `rate`.
    Limit,
    /// The upstream's `Retry-After` is still running.
    Upstream,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Limit => "limit",
            Reason::Upstream => "upstream",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub struct Throttle {
    limiter: Limiter,
    backoff: Backoff,
    metrics: Arc<Metrics>,
}

impl Throttle {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Throttle {
            limiter: Limiter::new(limiter::MAX_BUDGETS),
            backoff: Backoff::new(),
            metrics,
        }
    }

    /// Before a call that policy allowed goes upstream on `route` for `user`: refuse it
    /// while an upstream back-off runs for it, else take it from the route's budget.
    /// A call the back-off refuses takes nothing from the budget.
    pub fn admit(&self, route: &RouteSpec, user: Option<&str>) -> Result<(), ProxyError> {
        if let Some(key) = backoff_key(route, user)
            && let Some(left) = self.backoff.remaining(&key)
        {
            return Err(self.refuse(route, Reason::Upstream, left));
        }
        let Some(rate) = &route.rate else {
            return Ok(());
        };
        self.limiter
            .take(scope(route, user, rate.key), rate)
            .map_err(|wait| self.refuse(route, Reason::Limit, wait))
    }

    /// After the upstream answered a call that carried `route`'s credential: remember a
    /// 429/503 `Retry-After` for (route, credential, user).
    pub fn observe(
        &self,
        route: &RouteSpec,
        user: Option<&str>,
        status: StatusCode,
        headers: &HeaderMap,
    ) {
        let Some(key) = backoff_key(route, user) else {
            return;
        };
        let Some(wait) = backoff::requested_wait(status, headers, SystemTime::now()) else {
            return;
        };
        let held = self.backoff.hold(key, wait);
        tracing::info!(
            route = %route.name,
            status = status.as_u16(),
            retry_after_s = retry_after_secs(held),
            "upstream asked to slow down; answering this route, credential and user locally until Retry-After passes"
        );
    }

    fn refuse(&self, route: &RouteSpec, reason: Reason, wait: Duration) -> ProxyError {
        self.metrics.rate_limited(&route.name, reason.as_str());
        ProxyError::RateLimited {
            route: route.name.to_string(),
            reason,
            retry_after: retry_after_secs(wait),
        }
    }
}

/// The back-off key of a credentialed route (`None` without a credential).
fn backoff_key(route: &RouteSpec, user: Option<&str>) -> Option<BackoffKey> {
    let credential = route.credential.as_ref()?;
    Some(BackoffKey {
        route: route.name.clone(),
        credential: credential.name.clone(),
        user: user.map(Arc::from),
    })
}

/// Who shares the budget of this call.
fn scope(route: &RouteSpec, user: Option<&str>, key: RateKey) -> Scope {
    let whole_route = || Scope::Route(route.name.clone());
    match key {
        RateKey::Route => whole_route(),
        RateKey::User => user.map_or_else(whole_route, |u| Scope::User {
            route: route.name.clone(),
            user: Arc::from(u),
        }),
        RateKey::Credential => match &route.credential {
            Some(c) => Scope::Credential {
                credential: c.name.clone(),
                user: user.filter(|_| c.per_user()).map(Arc::from),
            },
            None => whole_route(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn routes(yaml: &str) -> Vec<RouteSpec> {
        let text = format!(
            "version: 1\nagent: a\ncredentials:\n  bot: {{source: env, env: BOT}}\n  per-user: {{source: file, file: 'u/{{user}}'}}\nroutes:\n{yaml}"
        );
        crate::config::from_str(&text, Path::new("/x/s.yaml"), Path::new("/x"))
            .expect("valid")
            .routes
    }

    fn throttle() -> (Throttle, Arc<Metrics>) {
        let m = Arc::new(Metrics::new().unwrap());
        (Throttle::new(m.clone()), m)
    }

    fn code(r: Result<(), ProxyError>) -> Option<(Reason, u64)> {
        match r {
            Ok(()) => None,
            Err(ProxyError::RateLimited {
                reason,
                retry_after,
                ..
            }) => Some((reason, retry_after)),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn per_user_budgets_and_the_anonymous_share() {
        let r = &routes(
            "  - {name: a, match: {host: a.test}, auth: claw, credential: bot, rate: {limit: 2, per: 1m}}\n",
        )[0];
        let (t, m) = throttle();
        for _ in 0..2 {
            assert_eq!(code(t.admit(r, Some("alice"))), None);
        }
        assert_eq!(code(t.admit(r, Some("alice"))), Some((Reason::Limit, 30)));
        assert_eq!(code(t.admit(r, Some("bob"))), None);
        assert_eq!(code(t.admit(r, None)), None);
        assert_eq!(code(t.admit(r, None)), None);
        assert_eq!(code(t.admit(r, None)), Some((Reason::Limit, 30)));
        assert_eq!(m.rate_limited.with_label_values(&["a", "limit"]).get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn credential_budgets_span_routes_and_users_of_a_shared_secret() {
        let rs = routes(
            "  - {name: a, match: {host: a.test}, auth: claw, credential: bot, rate: {limit: 1, per: 10s, key: credential}}
  - {name: b, match: {host: b.test}, auth: claw, credential: bot, rate: {limit: 1, per: 10s, key: credential}}
  - {name: c, match: {host: c.test}, auth: assistant, credential: per-user, rate: {limit: 1, per: 10s, key: credential}}\n",
        );
        let (t, _) = throttle();
        assert_eq!(code(t.admit(&rs[0], Some("alice"))), None);
        assert_eq!(
            code(t.admit(&rs[1], Some("bob"))),
            Some((Reason::Limit, 10)),
            "the claw's one secret is one budget"
        );
        assert_eq!(code(t.admit(&rs[2], Some("alice"))), None);
        assert_eq!(code(t.admit(&rs[2], Some("bob"))), None, "per-user secrets");
        assert!(code(t.admit(&rs[2], Some("bob"))).is_some());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(code(t.admit(&rs[1], Some("bob"))), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_retry_after_holds_that_route_credential_and_user() {
        let rs = routes(
            "  - {name: a, match: {host: a.test}, auth: claw, credential: bot}
  - {name: p, match: {host: p.test}, auth: passthrough}\n",
        );
        let (t, m) = throttle();
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "90".parse().unwrap());
        t.observe(&rs[0], Some("alice"), StatusCode::TOO_MANY_REQUESTS, &h);
        t.observe(&rs[1], Some("alice"), StatusCode::TOO_MANY_REQUESTS, &h);
        assert_eq!(
            code(t.admit(&rs[0], Some("alice"))),
            Some((Reason::Upstream, 90))
        );
        assert_eq!(code(t.admit(&rs[0], Some("bob"))), None);
        assert_eq!(code(t.admit(&rs[0], None)), None);
        assert_eq!(code(t.admit(&rs[1], Some("alice"))), None, "no credential");
        tokio::time::advance(Duration::from_millis(89_500)).await;
        assert_eq!(
            code(t.admit(&rs[0], Some("alice"))),
            Some((Reason::Upstream, 1))
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(code(t.admit(&rs[0], Some("alice"))), None);
        // A 200 (or a 429 without Retry-After) holds nothing back.
        t.observe(&rs[0], Some("alice"), StatusCode::OK, &h);
        t.observe(
            &rs[0],
            Some("alice"),
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
        );
        assert_eq!(code(t.admit(&rs[0], Some("alice"))), None);
        assert_eq!(
            m.rate_limited.with_label_values(&["a", "upstream"]).get(),
            2
        );
    }
}
