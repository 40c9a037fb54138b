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
    exact: HashMap<String, Vec<usize>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Vec<usize>>,
    any_host: Vec<usize>,
    gateways: Vec<usize>,
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
                    t.exact.entry(h.clone()).or_default().push(i)
                }
                (None, Some(HostPattern::Wildcard(s))) => {
                    t.wildcard.entry(s.clone()).or_default().push(i)
                }
                (None, None) => t.any_host.push(i),
            }
        }
        t
    }

    /// The first proxy (non-gateway) route matching the request.
    pub fn first_match(&self, req: &MatchInput<'_>) -> Option<&Arc<RouteSpec>> {
        let mut lists = self.candidates(req.host);
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
            .candidates(host)
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

    fn candidates(&self, host: &str) -> Vec<&[usize]> {
        let mut lists: Vec<&[usize]> = Vec::with_capacity(4);
        if let Some(l) = self.exact.get(host) {
            lists.push(l);
        }
        if !self.wildcard.is_empty() {
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(l) = self.wildcard.get(rest) {
                    lists.push(l);
                }
            }
        }
        if !self.any_host.is_empty() {
            lists.push(&self.any_host);
        }
        lists
    }
}
