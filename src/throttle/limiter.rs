//! Route `rate:` budgets: one governor (GCRA) limiter per budget, held in a bounded
//! moka cache.
//!
//! A budget of `limit` calls refills continuously, one call every `per / limit`: a
//! burst of `limit`, then a steady `limit` per `per`. A budget left alone for `per` is
//! full again, so it is dropped after `per` without use (moka's time-to-idle) and
//! nothing is lost; the cache also holds at most [`MAX_BUDGETS`], so no stream of new
//! users or credentials can grow memory without bound.

use std::sync::Arc;
use std::time::Duration;

use governor::Quota;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use moka::Expiry;
use moka::sync::Cache;

use super::clock::TokioClock;
use crate::config::RateSpec;

/// Most budgets kept at once (each a few hundred bytes with the cache's bookkeeping).
pub(crate) const MAX_BUDGETS: u64 = 100_000;

type Gcra = governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// Who shares one budget (always with the [`RateSpec`] it counts against).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// The whole route, or a route's calls without identity under `key: user`.
    Route(Arc<str>),
    /// One end user on one route.
    User { route: Arc<str>, user: Arc<str> },
    /// One credential (and, for a per-user credential, one user), across routes.
    Credential {
        credential: Arc<str>,
        user: Option<Arc<str>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BudgetKey {
    scope: Scope,
    rate: RateSpec,
}

struct Budget {
    gcra: Gcra,
    /// After this long unused the budget is full again and may be forgotten.
    idle: Duration,
}

struct IdleExpiry;

impl Expiry<BudgetKey, Arc<Budget>> for IdleExpiry {
    fn expire_after_create(
        &self,
        _k: &BudgetKey,
        v: &Arc<Budget>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.idle)
    }

    fn expire_after_read(
        &self,
        _k: &BudgetKey,
        v: &Arc<Budget>,
        _now: std::time::Instant,
        _left: Option<Duration>,
        _last_modified: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.idle)
    }
}

pub(crate) struct Limiter {
    budgets: Cache<BudgetKey, Arc<Budget>>,
    clock: TokioClock,
}

impl Limiter {
    pub(crate) fn new(capacity: u64) -> Self {
        Limiter {
            budgets: Cache::builder()
                .max_capacity(capacity)
                .expire_after(IdleExpiry)
                .build(),
            clock: TokioClock::new(),
        }
    }

    /// Take one call from the budget of `scope` under `rate`; when it is spent, how long
    /// until the next call would be allowed.
    pub(crate) fn take(&self, scope: Scope, rate: &RateSpec) -> Result<(), Duration> {
        let Some(quota) = Quota::with_period(rate.replenish_interval()) else {
            // Validation refuses rates finer than a nanosecond: nothing to limit.
            return Ok(());
        };
        let quota = quota.allow_burst(rate.limit);
        let key = BudgetKey { scope, rate: *rate };
        let clock = self.clock;
        let budget = self.budgets.get_with(key, || {
            Arc::new(Budget {
                gcra: governor::RateLimiter::direct_with_clock(quota, clock),
                idle: rate.per,
            })
        });
        budget
            .gcra
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Budgets held now (after pending evictions ran).
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.budgets.run_pending_tasks();
        self.budgets.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::config::RateKey;

    fn rate(limit: u32, per_secs: u64) -> RateSpec {
        RateSpec {
            limit: NonZeroU32::new(limit).unwrap(),
            per: Duration::from_secs(per_secs),
            key: RateKey::User,
        }
    }

    fn user(name: &str) -> Scope {
        Scope::User {
            route: Arc::from("r"),
            user: Arc::from(name),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_allows_limit_then_refills_at_the_rate() {
        let l = Limiter::new(MAX_BUDGETS);
        let r = rate(3, 60);
        for _ in 0..3 {
            assert_eq!(l.take(user("alice"), &r), Ok(()));
        }
        let wait = l.take(user("alice"), &r).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20), "one call back every 60s/3");
        // Another user has a budget of their own.
        assert_eq!(l.take(user("bob"), &r), Ok(()));
        tokio::time::advance(Duration::from_secs(19)).await;
        assert_eq!(l.take(user("alice"), &r), Err(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(l.take(user("alice"), &r), Ok(()));
        assert!(l.take(user("alice"), &r).is_err());
        // Left alone for `per`, the whole budget is back.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            assert_eq!(l.take(user("alice"), &r), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn scopes_and_rates_are_separate_budgets() {
        let l = Limiter::new(MAX_BUDGETS);
        let one = rate(1, 10);
        let cred = |u: Option<&str>| Scope::Credential {
            credential: Arc::from("bot"),
            user: u.map(Arc::from),
        };
        assert!(l.take(cred(None), &one).is_ok());
        assert!(l.take(cred(None), &one).is_err());
        assert!(l.take(cred(Some("alice")), &one).is_ok());
        assert!(l.take(Scope::Route(Arc::from("bot")), &one).is_ok());
        // A reload that changes the rate starts a new budget.
        assert!(l.take(cred(None), &rate(2, 10)).is_ok());
    }

    #[test]
    fn memory_is_bounded_by_the_capacity() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = Limiter::new(100);
            let r = rate(1, 3600);
            for i in 0..2_000 {
                let _ = l.take(user(&format!("u{i}")), &r);
            }
            assert!(l.len() <= 100, "{} budgets held", l.len());
        });
    }

    #[test]
    fn an_idle_budget_is_dropped_after_its_period() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = Limiter::new(MAX_BUDGETS);
            let r = RateSpec {
                per: Duration::from_millis(20),
                ..rate(5, 1)
            };
            let _ = l.take(user("alice"), &r);
            assert_eq!(l.len(), 1);
            // moka expires on its own (real) clock: poll, with a generous bound.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while l.len() > 0 {
                assert!(std::time::Instant::now() < deadline, "never expired");
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }
}
