//! The route decision: for one request, which route, what it says, and whether (and
//! why) the call is refused, or (report mode) would be refused and goes out
//! uncredentialed instead. A pure function of the route table and the request, used
//! by the proxy and the gateway (inner tunnel requests included) and by `explain`;
//! CONNECT asks [`super::RouteTable::connect_plan`], which is derived from the same
//! matcher.

use std::fmt;
use std::sync::Arc;

use super::{MatchInput, RouteTable};
use crate::config::{Action, Allow, DefaultAction, Enforce, RouteSpec};
use crate::identity::Identity;

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    pub request: MatchInput<'a>,
    /// Which way in: a proxy request, or a gateway request and whether a prefix chose
    /// a route.
    pub gateway: Gateway<'a>,
    /// The verified end user, if any.
    pub identity: Option<&'a Identity>,
}

/// How a request reached the decision: a forward-proxy (or tunnel) request matched
/// against the route table, or a gateway request (origin-form on the listener).
#[derive(Debug, Clone, Copy)]
pub enum Gateway<'a> {
    /// Not a gateway request: the first matching proxy route decides.
    Proxy,
    /// The route a gateway prefix chose (its path and methods were matched below the
    /// prefix by [`super::RouteTable::gateway_match`]).
    Hit(&'a Arc<RouteSpec>),
    /// A gateway request that no gateway route covers: refused whatever the default,
    /// as `passthrough` has nowhere to pass it to.
    Miss,
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
    /// Report mode (`enforce: report`, `default: report`): the refusal enforcement
    /// would answer with. The call goes out as `passthrough` would, with no credential.
    pub reported: Option<Refusal>,
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
        Gateway::Hit(r) => Some(r.clone()),
        Gateway::Proxy => table.first_match(&input.request).cloned(),
        Gateway::Miss => {
            return Decision {
                route: None,
                action: Action::Deny,
                refusal: Some(Refusal::NoRoute),
                reported: None,
            };
        }
    };
    let Some(route) = route else {
        let (action, refusal, reported) = match default {
            DefaultAction::Deny => (Action::Deny, Some(Refusal::NoRoute), None),
            DefaultAction::Passthrough => (Action::Passthrough, None, None),
            DefaultAction::Report => (Action::Passthrough, None, Some(Refusal::NoRoute)),
        };
        return Decision {
            route: None,
            action,
            refusal,
            reported,
        };
    };
    match refusal(&route, input.identity) {
        // Report mode never injects what enforcement would withhold: passthrough.
        Some(r) if route.enforce == Enforce::Report => Decision {
            route: Some(route),
            action: Action::Passthrough,
            refusal: None,
            reported: Some(r),
        },
        refusal => Decision {
            action: route.action,
            refusal,
            reported: None,
            route: Some(route),
        },
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
            token: None,
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
                gateway: Gateway::Proxy,
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
    fn a_gateway_miss_is_refused_whatever_the_default() {
        let t = table();
        let m = Method::GET;
        for default in [DefaultAction::Deny, DefaultAction::Passthrough] {
            let input = DecisionInput {
                request: MatchInput {
                    host: "127.0.0.1",
                    path: "/nowhere",
                    method: &m,
                },
                gateway: Gateway::Miss,
                identity: None,
            };
            let d = decide(&t, default, &input);
            assert!(d.route.is_none());
            assert_eq!(d.refusal, Some(Refusal::NoRoute), "default {default:?}");
            assert!(!d.injects());
        }
    }

    #[test]
    fn report_mode_forwards_what_it_would_refuse_uncredentialed() {
        let yaml = YAML
            .replace("default: deny", "default: report")
            .replace("auth: deny}", "auth: deny, enforce: report}")
            .replace(
                "allow: {users: [ann]}}",
                "allow: {users: [ann]}, enforce: report}",
            );
        let cfg = crate::config::from_str(&yaml, Path::new("t.yaml"), Path::new("/tmp"))
            .unwrap_or_else(|e| panic!("fixture invalid: {e:?}"));
        let t = RouteTable::new(&cfg.routes);
        let (ann, bob) = (who("ann"), who("bob"));
        let go = |m: Method, host: &str, path: &str, id: Option<&Identity>| {
            decide(
                &t,
                cfg.default_action,
                &DecisionInput {
                    request: MatchInput {
                        host,
                        path,
                        method: &m,
                    },
                    gateway: Gateway::Proxy,
                    identity: id,
                },
            )
        };
        for (d, want) in [
            (
                go(Method::GET, "api.test", "/admin/x", Some(&ann)),
                Refusal::RouteDenies,
            ),
            (
                go(Method::POST, "api.test", "/x", Some(&bob)),
                Refusal::UserNotAllowed,
            ),
            (
                go(Method::POST, "api.test", "/x", None),
                Refusal::IdentityRequired,
            ),
            (go(Method::GET, "other.test", "/", None), Refusal::NoRoute),
        ] {
            assert!(d.allowed(), "{d:?}");
            assert_eq!(d.reported, Some(want));
            assert_eq!(d.action, Action::Passthrough);
            assert!(!d.injects(), "report mode never injects");
        }
        // What the policy allows is untouched; an enforced route still refuses.
        let d = go(Method::POST, "api.test", "/x", Some(&ann));
        assert!(d.injects() && d.reported.is_none());
        let d = go(Method::GET, "api.test", "/x", None);
        assert_eq!(d.refusal, Some(Refusal::IdentityRequired));
        assert!(d.reported.is_none());
        // CONNECT: a host whose only outcome is a reported refusal is tunnelled.
        assert_eq!(
            t.connect_plan("other.test", cfg.default_action).0,
            super::super::ConnectPlan::Tunnel
        );
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
