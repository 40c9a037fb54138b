//! A route's `match:` block as one type, and the one implementation of matching.
//!
//! [`RouteMatch`] is made of [`Condition`]s. Everything that asks "does this route
//! match?" goes through [`Condition::test`]: the route table, gateways, the CONNECT
//! plan ([`RouteMatch::is_unconditional`]) and `explain` ([`RouteMatch::check`], which
//! says per condition why). A new match condition is a field here plus a
//! [`Condition`] variant; the compiler then points at the three `match`es to extend.

use std::fmt;

use http::Method;

use super::pattern::{HostPattern, PathGlob};

/// What one request looks like to policy.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    /// Lower-case host without port.
    pub host: &'a str,
    /// Normalised path in match form (see [`super::match_form`]).
    pub path: &'a str,
    pub method: &'a Method,
}

/// `match: {host, path, methods}`; an absent key matches everything.
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    pub host: Option<HostPattern>,
    pub path: Option<PathGlob>,
    pub methods: Option<Vec<Method>>,
}

/// One condition of a [`RouteMatch`].
#[derive(Debug, Clone, Copy)]
pub enum Condition<'a> {
    Host(&'a HostPattern),
    Path(&'a PathGlob),
    Methods(&'a [Method]),
}

/// Which kind of condition (the `explain` output's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionKind {
    Host,
    Path,
    Method,
}

impl ConditionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionKind::Host => "host",
            ConditionKind::Path => "path",
            ConditionKind::Method => "method",
        }
    }
}

impl fmt::Display for ConditionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One condition checked against one request: what the route wants, and whether the
/// request has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionCheck {
    pub kind: ConditionKind,
    /// The condition as written (`slack.com`, `/api/chat.*`, `POST,PUT`).
    pub want: String,
    pub matched: bool,
}

impl Condition<'_> {
    /// The matcher: whether `req` meets this condition.
    pub fn test(&self, req: &MatchInput<'_>) -> bool {
        match self {
            Condition::Host(h) => h.matches(req.host),
            Condition::Path(g) => g.matches(req.path),
            Condition::Methods(ms) => ms.contains(req.method),
        }
    }

    pub fn kind(&self) -> ConditionKind {
        match self {
            Condition::Host(_) => ConditionKind::Host,
            Condition::Path(_) => ConditionKind::Path,
            Condition::Methods(_) => ConditionKind::Method,
        }
    }

    /// The condition as written in the config.
    pub fn describe(&self) -> String {
        match self {
            Condition::Host(h) => h.to_string(),
            Condition::Path(g) => g.as_str().to_string(),
            Condition::Methods(ms) => ms.iter().map(Method::as_str).collect::<Vec<_>>().join(","),
        }
    }
}

impl RouteMatch {
    /// The conditions this block sets, host first.
    pub fn conditions(&self) -> impl Iterator<Item = Condition<'_>> {
        let RouteMatch {
            host,
            path,
            methods,
        } = self;
        [
            host.as_ref().map(Condition::Host),
            path.as_ref().map(Condition::Path),
            methods.as_deref().map(Condition::Methods),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether `req` meets every condition.
    pub fn matches(&self, req: &MatchInput<'_>) -> bool {
        self.conditions().all(|c| c.test(req))
    }

    /// Whether every request to a host this block accepts matches it: no condition
    /// but the host. A CONNECT is decided by such routes alone.
    pub fn is_unconditional(&self) -> bool {
        self.conditions().all(|c| matches!(c, Condition::Host(_)))
    }

    /// Each condition against `req`, for `explain`: why the route did or did not match.
    pub fn check(&self, req: &MatchInput<'_>) -> Vec<ConditionCheck> {
        self.conditions()
            .map(|c| ConditionCheck {
                kind: c.kind(),
                want: c.describe(),
                matched: c.test(req),
            })
            .collect()
    }

    /// Whether the block names exactly this host (a literal IP the operator wrote is
    /// egress intent).
    pub fn names_host(&self, host: &str) -> bool {
        matches!(&self.host, Some(HostPattern::Exact(h)) if h == host)
    }
}

/// `host/path [METHODS]` as `check` prints it.
impl fmt::Display for RouteMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(h) => write!(f, "{h}")?,
            None => f.write_str("*")?,
        }
        if let Some(p) = &self.path {
            f.write_str(p.as_str())?;
        }
        if let Some(ms) = &self.methods {
            let ms: Vec<&str> = ms.iter().map(Method::as_str).collect();
            write!(f, " [{}]", ms.join(","))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: Option<&str>, path: Option<&str>, methods: Option<&[Method]>) -> RouteMatch {
        RouteMatch {
            host: host.map(|h| HostPattern::parse(h).unwrap()),
            path: path.map(|p| PathGlob::parse(p).unwrap()),
            methods: methods.map(<[Method]>::to_vec),
        }
    }

    #[test]
    fn matching_checking_and_unconditional_share_the_conditions() {
        let r = m(
            Some("slack.com"),
            Some("/api/chat.*"),
            Some(&[Method::POST]),
        );
        let req = MatchInput {
            host: "slack.com",
            path: "/api/chat.postMessage",
            method: &Method::GET,
        };
        assert!(!r.matches(&req));
        let checks = r.check(&req);
        let failed: Vec<_> = checks.iter().filter(|c| !c.matched).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].kind, ConditionKind::Method);
        assert_eq!(failed[0].want, "POST");
        assert!(r.matches(&MatchInput {
            method: &Method::POST,
            ..req
        }));
        assert!(!r.is_unconditional());
        assert!(m(Some("slack.com"), None, None).is_unconditional());
        assert!(m(None, None, None).is_unconditional());
        assert!(!m(None, None, Some(&[Method::GET])).is_unconditional());
        assert_eq!(r.to_string(), "slack.com/api/chat.* [POST]");
    }
}
