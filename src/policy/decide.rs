//! The route decision: for one request, which route, what it says, and whether (and
//! why) the call is refused. A pure function of the route table and the request, used
//! by the proxy and the gateway (inner tunnel requests included) and by `explain`;
//! CONNECT asks [`super::RouteTable::connect_plan`], which is derived from the same
//! matcher.

use std::fmt;
use std::sync::Arc;

use super::{MatchInput, RouteTable};
use crate::config::{Action, Allow, DefaultAction, RouteSpec};
use crate::identity::Identity;

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    pub request: MatchInput<'a>,
    /// A gateway request: the route its prefix chose (its path and methods were
    /// matched below the prefix by [`super::RouteTable::gateway_match`]).
    pub gateway: Option<&'a Arc<RouteSpec>>,
    /// The verified end user, if any.
    pub identity: Option<&'a Identity>,
}

/// Why a call is refused; each is one contract error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No route matched under `default: deny`.
    NoRoute,
    /// The matching route is `auth: deny`.
    RouteDenies,
    /// An assistant route, or a route with `allow:`, and no identity.
    IdentityRequired,
    /// An identity outside the route's `allow:`.
    UserNotAllowed,
}

impl Refusal {
    /// The contract's error code (equal to [`crate::error::ProxyError::code`] of the
    /// error the proxy answers with).
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NoRoute | Refusal::RouteDenies => "route_denied",
            Refusal::IdentityRequired => "identity_required",
            Refusal::UserNotAllowed => "user_not_allowed",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone)]
pub struct Decision {
    /// The deciding route; `None` when the default applied.
    pub route: Option<Arc<RouteSpec>>,
    /// What the route (or the default) says to do.
    pub action: Action,
    /// Set when the call is refused.
    pub refusal: Option<Refusal>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.refusal.is_none()
    }

    /// Whether a credential is looked up and injected.
    pub fn injects(&self) -> bool {
        self.allowed() && self.action.injects() && self.route.is_some()
    }
}

/// Decide one request: first matching route (or the gateway's), else the default;
/// then `auth: deny`, then identity and the route's `allow:` list.
pub fn decide(table: &RouteTable, default: DefaultAction, input: &DecisionInput<'_>) -> Decision {
    let route = match input.gateway {
        Some(r) => Some(r.clone()),
        None => table.first_match(&input.request).cloned(),
    };
    let Some(route) = route else {
        return match default {
            DefaultAction::Deny => Decision {
                route: None,
                action: Action::Deny,
                refusal: Some(Refusal::NoRoute),
            },
            DefaultAction::Passthrough => Decision {
                route: None,
                action: Action::Passthrough,
                refusal: None,
            },
        };
    };
    Decision {
        action: route.action,
        refusal: refusal(&route, input.identity),
        route: Some(route),
    }
}

fn refusal(route: &RouteSpec, identity: Option<&Identity>) -> Option<Refusal> {
    if route.action == Action::Deny {
        return Some(Refusal::RouteDenies);
    }
    let allow = route.allow.as_ref();
    match identity {
        None if route.action == Action::Assistant || allow.is_some() => {
            Some(Refusal::IdentityRequired)
        }
        None => None,
        Some(id) => allow
            .filter(|a| !admits(a, id))
            .map(|_| Refusal::UserNotAllowed),
    }
}

/// Whether `allow:` admits the identity: its user is listed, or one of its groups.
pub fn admits(allow: &Allow, id: &Identity) -> bool {
    allow.users.iter().any(|u| **u == *id.user)
        || id
            .groups
            .iter()
            .flatten()
            .any(|g| allow.groups.iter().any(|a| **a == **g))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http::Method;

    use super::*;

    const YAML: &str = r#"
version: 1
agent: t
default: deny
credentials:
  bot: {source: env, env: T_BOT}
  user: {source: file, file: "/tmp/{user}"}
routes:
  - {name: no-admin, match: {host: api.test, path: "/admin*"}, auth: deny}
  - {name: bot, match: {host: api.test, methods: [POST]}, auth: claw, credential: bot, allow: {users: [ann]}}
  - {name: mine, match: {host: api.test}, auth: assistant, credential: user}
  - {name: open, match: {host: open.test}, auth: passthrough}
"#;

    fn table() -> RouteTable {
        let cfg = crate::config::from_str(YAML, Path::new("t.yaml"), Path::new("/tmp"))
            .unwrap_or_else(|e| panic!("fixture invalid: {e:?}"));
        RouteTable::new(&cfg.routes)
    }

    fn who(user: &str) -> Identity {
        Identity {
            user: Arc::from(user),
            groups: None,
        }
    }

    fn run(t: &RouteTable, m: Method, host: &str, path: &str, id: Option<&Identity>) -> Decision {
        decide(
            t,
            DefaultAction::Deny,
            &DecisionInput {
                request: MatchInput {
                    host,
                    path,
                    method: &m,
                },
                gateway: None,
                identity: id,
            },
        )
    }

    #[test]
    fn each_refusal_and_the_default() {
        let t = table();
        let ann = who("ann");
        let bob = who("bob");
        let r = |d: &Decision| (d.route.as_ref().map(|r| r.name.to_string()), d.refusal);
        let name = |s: &str| Some(s.to_string());
        let d = run(&t, Method::GET, "api.test", "/admin/x", Some(&ann));
        assert_eq!(r(&d), (name("no-admin"), Some(Refusal::RouteDenies)));
        let d = run(&t, Method::POST, "api.test", "/x", None);
        assert_eq!(r(&d), (name("bot"), Some(Refusal::IdentityRequired)));
        let d = run(&t, Method::POST, "api.test", "/x", Some(&bob));
        assert_eq!(r(&d), (name("bot"), Some(Refusal::UserNotAllowed)));
        let d = run(&t, Method::POST, "api.test", "/x", Some(&ann));
        assert_eq!(r(&d), (name("bot"), None));
        assert!(d.injects());
        let d = run(&t, Method::GET, "api.test", "/x", None);
        assert_eq!(r(&d), (name("mine"), Some(Refusal::IdentityRequired)));
        let d = run(&t, Method::GET, "open.test", "/x", None);
        assert_eq!(r(&d), (name("open"), None));
        assert!(!d.injects());
        let d = run(&t, Method::GET, "other.test", "/x", Some(&ann));
        assert_eq!(r(&d), (None, Some(Refusal::NoRoute)));
        assert_eq!(Refusal::NoRoute.code(), "route_denied");
    }

    #[test]
    fn trace_agrees_with_first_match() {
        let t = table();
        for (m, path) in [
            (Method::GET, "/admin"),
            (Method::POST, "/x"),
            (Method::GET, "/x"),
        ] {
            let req = MatchInput {
                host: "api.test",
                path,
                method: &m,
            };
            let traced = t
                .trace(req)
                .find(|c| c.matched)
                .map(|c| c.route.name.clone());
            assert_eq!(traced, t.first_match(&req).map(|r| r.name.clone()));
        }
        let req = MatchInput {
            host: "api.test",
            path: "/x",
            method: &Method::GET,
        };
        let first = t.trace(req).next().expect("a route");
        assert!(!first.matched);
        assert!(
            first
                .conditions
                .iter()
                .any(|c| !c.matched && c.want == "/admin*")
        );
    }
}
