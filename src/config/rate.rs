//! A route's `rate: {limit, per, key}`: the typed form and its validation.
//!
//! `limit` calls per `per` (a duration), counted per `key`: `user` (the default; calls
//! without identity share the route's budget), `credential` (every call carrying the
//! same credential, for a per-user credential the same user's) or `route`. The limiter
//! itself lives in `crate::throttle`; this file only says what the operator asked for.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::validate::Problems;
use super::{Action, parse_duration};

/// `rate:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub limit: u64,
    pub per: String,
    pub key: Option<String>,
}

/// What one rate budget is shared by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RateKey {
    /// One budget per end user of the route; calls without identity share the route's.
    #[default]
    User,
    /// One budget per credential (per credential and user for a per-user credential).
    Credential,
    /// One budget for the whole route.
    Route,
}

impl RateKey {
    const ALL: [RateKey; 3] = [RateKey::User, RateKey::Credential, RateKey::Route];

    pub fn as_str(self) -> &'static str {
        match self {
            RateKey::User => "user",
            RateKey::Credential => "credential",
            RateKey::Route => "route",
        }
    }
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RateKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown key `{s}` (expected user, credential or route)"))
    }
}

/// A validated `rate:`: at most `limit` calls in any window of `per`, per `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateSpec {
    pub limit: NonZeroU32,
    pub per: Duration,
    pub key: RateKey,
}

impl RateSpec {
    /// Time for one call's worth of budget to come back (`per / limit`).
    pub fn replenish_interval(&self) -> Duration {
        self.per / self.limit.get()
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {:?} per {}", self.limit, self.per, self.key)
    }
}

/// The longest `per` accepted: budgets are kept in memory, per process.
const MAX_PER: Duration = Duration::from_secs(24 * 3600);

/// Validate `routes[i].rate` (`at` is `routes[i]`) for a route of `action` (`None`
/// when its `auth:` is itself invalid) that has (or has not) a credential.
pub(super) fn rate(
    p: &mut Problems,
    at: &str,
    raw: Option<&RawRate>,
    action: Option<Action>,
    has_credential: bool,
) -> Option<RateSpec> {
    let raw = raw?;
    let at = format!("{at}.rate");
    let before = p.0.len();
    if action == Some(Action::Deny) {
        p.push(&at, "has no effect on an `auth: deny` route");
    }
    let limit = match u32::try_from(raw.limit).ok().and_then(NonZeroU32::new) {
        Some(l) => Some(l),
        None => {
            p.push(
                format!("{at}.limit"),
                format!("must be between 1 and {} (got {})", u32::MAX, raw.limit),
            );
            None
        }
    };
    let per = match parse_duration(&raw.per) {
        Ok(d) if d.is_zero() => {
            p.push(format!("{at}.per"), "must be longer than 0");
            None
        }
        Ok(d) if d > MAX_PER => {
            p.push(format!("{at}.per"), "must be at most 24h");
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            p.push(format!("{at}.per"), e);
            None
        }
    };
    let key = match raw.key.as_deref().map(RateKey::from_str) {
        None => RateKey::default(),
        Some(Ok(k)) => k,
        Some(Err(e)) => {
            p.push(format!("{at}.key"), e);
            RateKey::default()
        }
    };
    if key == RateKey::Credential && !has_credential && action.is_some_and(|a| a != Action::Deny) {
        p.push(
            format!("{at}.key"),
            "`credential` needs a route with a credential (claw or assistant)",
        );
    }
    let (limit, per) = (limit?, per?);
    if (per / limit.get()).is_zero() {
        p.push(
            &at,
            format!("{limit} calls per {per:?} is finer than a nanosecond"),
        );
    }
    (p.0.len() == before).then_some(RateSpec { limit, per, key })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn problems(routes: &str) -> Vec<String> {
        let text = format!(
            "version: 1\nagent: a\ncredentials:\n  bot: {{source: env, env: BOT}}\nroutes:\n{routes}"
        );
        let raw = match crate::config::parse(&text) {
            Ok(raw) => raw,
            Err(e) => return vec![format!("{}: {}", e.path, e.message)],
        };
        match super::super::validate::validate(raw, Path::new("/x/s.yaml"), Path::new("/x")) {
            Ok(_) => vec![],
            Err(errs) => errs
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect(),
        }
    }

    fn route(rate: &str) -> String {
        format!(
            "  - {{name: r, match: {{host: a.test}}, auth: claw, credential: bot, rate: {rate}}}\n"
        )
    }

    #[test]
    fn good_rates_pass_with_defaults() {
        for ok in [
            "{limit: 60, per: 1m}",
            "{limit: 1, per: 24h, key: route}",
            "{limit: 5, per: 250ms, key: credential}",
            "{limit: 5, per: 1s, key: user}",
        ] {
            assert_eq!(problems(&route(ok)), Vec::<String>::new(), "{ok}");
        }
    }

    #[test]
    fn bad_rates_name_their_yaml_path() {
        let cases = [
            (
                "{limit: 0, per: 1m}",
                "routes[0].rate.limit: must be between 1",
            ),
            (
                "{limit: 5000000000, per: 1m}",
                "routes[0].rate.limit: must be between 1",
            ),
            (
                "{limit: 5, per: 0s}",
                "routes[0].rate.per: must be longer than 0",
            ),
            (
                "{limit: 5, per: soon}",
                "routes[0].rate.per: `soon` is not a duration",
            ),
            (
                "{limit: 5, per: 5d}",
                "routes[0].rate.per: `5d` has an unknown unit",
            ),
            (
                "{limit: 5, per: 48h}",
                "routes[0].rate.per: must be at most 24h",
            ),
            (
                "{limit: 5, per: 1m, key: tenant}",
                "routes[0].rate.key: unknown key `tenant`",
            ),
            (
                "{limit: 4000000000, per: 1ms}",
                "routes[0].rate: 4000000000 calls per 1ms",
            ),
            (
                "{limit: 5, per: 1m, burst: 3}",
                "routes[0].rate.burst: unknown field `burst`",
            ),
            ("{per: 1m}", "routes[0].rate: missing field `limit`"),
            (
                "{limit: -1, per: 1m}",
                "routes[0].rate.limit: invalid type: integer `-1`",
            ),
        ];
        for (rate, want) in cases {
            let got = problems(&route(rate));
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{rate}: want {want}, got {got:?}"
            );
        }
    }

    #[test]
    fn rate_keys_fit_the_route() {
        let deny = "  - {name: d, match: {host: a.test}, auth: deny, rate: {limit: 1, per: 1s}}\n";
        assert!(
            problems(deny)
                .iter()
                .any(|g| g == "routes[0].rate: has no effect on an `auth: deny` route")
        );
        let pass = "  - {name: p, match: {host: a.test}, auth: passthrough, rate: {limit: 1, per: 1s, key: credential}}\n";
        assert!(problems(pass).iter().any(|g| {
            g.starts_with("routes[0].rate.key: `credential` needs a route with a credential")
        }));
        let pass_user =
            "  - {name: p, match: {host: a.test}, auth: passthrough, rate: {limit: 1, per: 1s}}\n";
        assert_eq!(problems(pass_user), Vec::<String>::new());
    }

    #[test]
    fn keys_round_trip() {
        for k in super::RateKey::ALL {
            assert_eq!(k.to_string().parse::<super::RateKey>(), Ok(k));
        }
    }
}
