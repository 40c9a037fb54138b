//! Policy: which route a request falls under, and so what sidekey does with it.
//!
//! [`RouteTable`] indexes the validated routes by host so that matching cost depends
//! on the routes for one host, not on the size of the table. First match in file
//! order wins, across exact, wildcard and host-less routes alike. Matching itself is
//! [`RouteMatch`]'s (`route_match.rs`); what follows from the match (default, `auth:
//! deny`, `allow:` lists) is [`decide`]'s (`decide.rs`), the one decision the proxy,
//! the gateway, CONNECT and `explain` share.

mod decide;
mod path;
mod pattern;
mod route_match;

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

pub use decide::{Decision, DecisionInput, Gateway, Refusal, admits, decide};
pub use path::{match_form, normalize};
pub(crate) use pattern::star_match;
pub use pattern::{HostPattern, PathGlob, canonical_host};
pub use route_match::{ConditionCheck, MatchInput, RouteMatch};

use crate::config::{Action, DefaultAction, Enforce, RouteSpec};

/// One route tried against one request, for `explain`.
#[derive(Debug, Clone)]
pub struct RouteCheck<'t> {
    pub route: &'t Arc<RouteSpec>,
    /// Each condition of the route's `match:`, with whether the request meets it.
    pub conditions: Vec<ConditionCheck>,
    pub matched: bool,
}

/// What to do with a CONNECT to a host, before any inner request is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectPlan {
    /// Terminate TLS and apply policy per inner request.
    Intercept,
    /// Blind tunnel: every possible outcome for this host is passthrough.
    Tunnel,
    /// Every possible outcome for this host is deny.
    Deny,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<RouteSpec>>,
    exact: HashMap<String, Bucket>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Bucket>,
    any_host: Bucket,
    gateways: Vec<usize>,
}

/// The routes of one host key (indices in file order), indexed again by the first
/// segment of their path glob when it is literal (`/v1/*` under `v1`), so that many
/// routes on one host cost a lookup, not a walk. A route without a path, or whose
/// first segment has a `*`, is in `other` and tried for every path.
#[derive(Debug, Default)]
struct Bucket {
    by_segment: HashMap<String, Vec<usize>>,
    other: Vec<usize>,
}

impl Bucket {
    fn push(&mut self, i: usize, route: &RouteSpec) {
        match route
            .matcher
            .path
            .as_ref()
            .and_then(PathGlob::first_segment)
        {
            Some(seg) => self.by_segment.entry(seg.to_string()).or_default().push(i),
            None => self.other.push(i),
        }
    }

    /// The lists that can hold a match for `path`; every list when `path` is `None`
    /// (a CONNECT, decided before any path is seen).
    fn lists<'b>(&'b self, path: Option<&str>, out: &mut Vec<&'b [usize]>) {
        match path {
            Some(p) => {
                if let Some(l) = first_segment(p).and_then(|s| self.by_segment.get(s)) {
                    out.push(l);
                }
            }
            None => out.extend(self.by_segment.values().map(Vec::as_slice)),
        }
        if !self.other.is_empty() {
            out.push(&self.other);
        }
    }
}

/// The first segment of a request path (`v1` of `/v1/items`), if it starts with `/`.
fn first_segment(path: &str) -> Option<&str> {
    let rest = path.strip_prefix('/')?;
    Some(rest.split('/').next().unwrap_or(rest))
}

impl RouteTable {
    pub fn new(routes: &[RouteSpec]) -> Self {
        let mut t = RouteTable {
            routes: routes.iter().cloned().map(Arc::new).collect(),
            ..Default::default()
        };
        for (i, r) in routes.iter().enumerate() {
            match (&r.gateway, &r.matcher.host) {
                (Some(_), _) => t.gateways.push(i),
                (None, Some(HostPattern::Exact(h))) => {
                    t.exact.entry(h.clone()).or_default().push(i, r)
                }
                (None, Some(HostPattern::Wildcard(s))) => {
                    t.wildcard.entry(s.clone()).or_default().push(i, r)
                }
                (None, None) => t.any_host.push(i, r),
            }
        }
        t
    }

    /// The first proxy (non-gateway) route matching the request.
    pub fn first_match(&self, req: &MatchInput<'_>) -> Option<&Arc<RouteSpec>> {
        let mut lists = self.candidates(req.host, Some(req.path));
        loop {
            // Smallest head among the candidate lists: file order across all of them.
            let (li, &idx) = lists
                .iter()
                .enumerate()
                .filter_map(|(li, l)| l.first().map(|i| (li, i)))
                .min_by_key(|(_, i)| **i)?;
            lists[li] = &lists[li][1..];
            let r = &self.routes[idx];
            if r.matcher.matches(req) {
                return Some(r);
            }
        }
    }

    /// Every proxy (non-gateway) route in file order, checked against `req`: the first
    /// with `matched` is [`RouteTable::first_match`]'s answer (same matcher).
    pub fn trace<'t>(&'t self, req: MatchInput<'t>) -> impl Iterator<Item = RouteCheck<'t>> {
        self.routes
            .iter()
            .filter(|r| r.gateway.is_none())
            .map(move |route| {
                let conditions = route.matcher.check(&req);
                let matched = conditions.iter().all(|c| c.matched);
                RouteCheck {
                    route,
                    conditions,
                    matched,
                }
            })
    }

    /// The first gateway route whose prefix covers `path`, with the remainder below
    /// the prefix (always starting with `/`).
    pub fn gateway_match<'p>(
        &self,
        path: &'p str,
        method: &Method,
    ) -> Option<(&Arc<RouteSpec>, &'p str)> {
        for &i in &self.gateways {
            let r = &self.routes[i];
            let Some(g) = &r.gateway else { continue };
            let Some(rest) = path.strip_prefix(g.prefix.as_str()) else {
                continue;
            };
            let rest = match rest {
                "" => "/",
                r if r.starts_with('/') => r,
                _ => continue,
            };
            let req = MatchInput {
                host: &g.host,
                path: &match_form(rest),
                method,
            };
            if r.matcher.matches(&req) {
                return Some((r, rest));
            }
        }
        None
    }

    /// How to handle `CONNECT host`: the set of outcomes any inner request could get,
    /// with the first route for the host (the one a tunnel or refusal is audited under;
    /// `None` when only the default applies).
    pub fn connect_plan(
        &self,
        host: &str,
        default: DefaultAction,
    ) -> (ConnectPlan, Option<&Arc<RouteSpec>>) {
        let (mut deny, mut pass, mut other) = (false, false, false);
        let mut first = None;
        let mut covered = false;
        let mut all: Vec<usize> = self
            .candidates(host, None)
            .iter()
            .flat_map(|l| l.iter().copied())
            .collect();
        all.sort_unstable();
        for idx in all {
            let r = &self.routes[idx];
            first.get_or_insert(r);
            match r.action {
                // Report mode forwards what the route would deny, uncredentialed.
                Action::Deny if r.enforce == Enforce::Report => pass = true,
                Action::Deny => deny = true,
                Action::Passthrough => pass = true,
                Action::Claw | Action::Assistant => other = true,
            }
            // A route with no condition but the host decides every inner request
            // that reaches it; later routes cannot be reached.
            if r.matcher.is_unconditional() {
                covered = true;
                break;
            }
        }
        if !covered {
            match default {
                DefaultAction::Deny => deny = true,
                DefaultAction::Passthrough | DefaultAction::Report => pass = true,
            }
        }
        let plan = match (deny, pass, other) {
            (false, true, false) => ConnectPlan::Tunnel,
            (true, false, false) => ConnectPlan::Deny,
            _ => ConnectPlan::Intercept,
        };
        (plan, first)
    }

    /// The route lists that can match `host` (and `path`, when known), each in file
    /// order.
    fn candidates(&self, host: &str, path: Option<&str>) -> Vec<&[usize]> {
        let mut lists: Vec<&[usize]> = Vec::with_capacity(4);
        if let Some(b) = self.exact.get(host) {
            b.lists(path, &mut lists);
        }
        if !self.wildcard.is_empty() {
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(b) = self.wildcard.get(rest) {
                    b.lists(path, &mut lists);
                }
            }
        }
        self.any_host.lists(path, &mut lists);
        lists
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The index must answer exactly what a walk over every route in file order
    /// answers, whatever mix of literal, starred and missing paths the routes have.
    #[test]
    fn indexed_first_match_is_the_first_route_in_file_order() {
        let paths = [
            None,
            Some("/v1/*"),
            Some("/v1"),
            Some("/v*"),
            Some("/v2/items/*"),
            Some("*"),
            Some("/"),
            Some("/v1/x*y"),
        ];
        let hosts = ["api.test", "*.test", ""];
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..50 {
            let mut yaml = String::from("version: 1\nagent: t\nroutes:\n");
            for i in 0..12 {
                let host = hosts[rng.usize(..hosts.len())];
                let path = paths[rng.usize(..paths.len())];
                let mut m = Vec::new();
                if !host.is_empty() {
                    m.push(format!("host: \"{host}\""));
                }
                if let Some(p) = path {
                    m.push(format!("path: \"{p}\""));
                }
                if m.is_empty() {
                    m.push("methods: [GET, POST]".into());
                }
                yaml.push_str(&format!(
                    "  - {{name: r{i}, match: {{{}}}, auth: passthrough}}\n",
                    m.join(", ")
                ));
            }
            let cfg = crate::config::from_str(&yaml, Path::new("t.yaml"), Path::new("/tmp"))
                .unwrap_or_else(|e| panic!("fixture invalid: {e:?}\n{yaml}"));
            let t = RouteTable::new(&cfg.routes);
            for path in [
                "/v1/a",
                "/v1",
                "/v1/xzy",
                "/v2/items/3",
                "/v3",
                "/",
                "*",
                "/w",
            ] {
                for host in ["api.test", "x.test", "other.example"] {
                    let req = MatchInput {
                        host,
                        path,
                        method: &Method::GET,
                    };
                    let walked = cfg.routes.iter().find(|r| r.matcher.matches(&req));
                    assert_eq!(
                        t.first_match(&req).map(|r| r.name.to_string()),
                        walked.map(|r| r.name.to_string()),
                        "round {round}, {host}{path}\n{yaml}"
                    );
                }
            }
        }
    }

    #[test]
    fn first_segment_of_globs_and_paths() {
        let seg = |g: &str| {
            PathGlob::parse(g)
                .unwrap()
                .first_segment()
                .map(str::to_string)
        };
        assert_eq!(seg("/v1/*").as_deref(), Some("v1"));
        assert_eq!(seg("/v1").as_deref(), Some("v1"));
        assert_eq!(seg("/").as_deref(), Some(""));
        assert_eq!(seg("/v*"), None);
        assert_eq!(seg("*"), None);
        assert_eq!(first_segment("/v1/items"), Some("v1"));
        assert_eq!(first_segment("/"), Some(""));
        assert_eq!(first_segment("*"), None);
    }
}
