//! `sidekey explain`: what one request would get, and why, without sending anything.
//!
//! The request goes through the proxy's own code: [`crate::proxy::target::resolve`]
//! (forward proxy, gateway, or the inner request of an intercepted CONNECT after
//! [`crate::policy::RouteTable::connect_plan`]), then [`crate::policy::decide`] and
//! the literal-IP egress intent check. The routes tried come from
//! [`crate::policy::RouteTable::trace`], the same matcher as the decision's. No secret
//! is resolved: the credential is named with its source, never read.

pub mod command;
mod render;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request};

pub use render::{json, text};

use crate::config::{Action, Config, Enforce};
use crate::identity::Identity;
use crate::policy::{ConnectPlan, DecisionInput, MatchInput, Refusal, RouteTable};
use crate::proxy::Intercepted;
use crate::proxy::target::{self, Target};

/// The request to explain, as the command line gave it.
pub struct Query {
    pub method: Method,
    pub url: String,
    pub user: Option<String>,
    pub groups: Option<Vec<String>>,
    /// `--tool NAME` and the parsed `--args JSON` (MCP routes).
    pub tool: Option<(String, serde_json::Value)>,
}

/// One route tried, with why it did or did not match.
pub struct RouteReason {
    pub index: usize,
    pub route: Arc<str>,
    pub matched: bool,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// What the identity meant for the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityVerdict {
    /// The route needs no identity (and none or one was given).
    NotRequired,
    /// The route needs one and none was given.
    Missing,
    /// The route's `allow:` admits it (or an assistant route has it).
    Accepted,
    /// Outside the route's `allow:`.
    NotAllowed,
}

impl IdentityVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityVerdict::NotRequired => "not_required",
            IdentityVerdict::Missing => "missing",
            IdentityVerdict::Accepted => "accepted",
            IdentityVerdict::NotAllowed => "not_allowed",
        }
    }
}

pub struct IdentityOutcome {
    pub user: Option<String>,
    pub groups: Option<Vec<String>>,
    pub verdict: IdentityVerdict,
}

impl IdentityOutcome {
    fn describe(&self) -> String {
        let who = match (&self.user, &self.groups) {
            (Some(u), Some(g)) => format!("{u} (groups {})", g.join(",")),
            (Some(u), None) => u.clone(),
            (None, _) => "none".into(),
        };
        format!("{who}: {}", self.verdict.as_str().replace('_', " "))
    }
}

pub struct Outcome {
    pub decision: Verdict,
    /// Report mode forwards this call uncredentialed; `error` is what enforcement says.
    pub report: bool,
    pub error: Option<&'static str>,
    pub status: Option<u16>,
    pub route: Option<Arc<str>>,
    pub auth_context: &'static str,
    pub credential: Option<Arc<str>>,
    pub source: Option<&'static str>,
    pub inject: Option<String>,
    pub enforce: Enforce,
    pub identity: IdentityOutcome,
    pub tool: Option<String>,
    pub note: String,
}

impl Outcome {
    fn decision_label(&self) -> &'static str {
        if self.report {
            "report (allowed, uncredentialed)"
        } else {
            self.decision.as_str()
        }
    }
}

pub struct Explanation {
    pub method: Method,
    pub url: String,
    pub tried: Vec<RouteReason>,
    pub outcome: Outcome,
}

impl Explanation {
    /// The command's exit code: 0 the call would go out, 1 it would be refused.
    pub fn exit_code(&self) -> u8 {
        match self.outcome.decision {
            Verdict::Allow => 0,
            Verdict::Deny => 1,
        }
    }
}

/// Why `explain` cannot evaluate the request (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("`{0}` is not an absolute http:// or https:// URL (or a /path on the proxy)")]
    Url(String),
    #[error("{0}")]
    Request(String),
}

/// Evaluate `q` against `cfg` without sending anything.
pub fn explain(cfg: &Config, q: &Query) -> Result<Explanation, ExplainError> {
    let table = RouteTable::new(&cfg.routes);
    let identity = q.user.as_ref().map(|u| Identity {
        user: Arc::from(u.as_str()),
        groups: q
            .groups
            .as_ref()
            .map(|g| g.iter().map(|s| Arc::from(s.as_str())).collect()),
    });
    let uri: http::Uri = q
        .url
        .parse()
        .map_err(|_| ExplainError::Url(q.url.clone()))?;
    let absolute =
        uri.authority().is_some() && matches!(uri.scheme_str(), Some("http") | Some("https"));
    let origin_form = uri.scheme().is_none() && uri.authority().is_none() && q.url.starts_with('/');
    if !(absolute || origin_form) {
        return Err(ExplainError::Url(q.url.clone()));
    }
    let own = cfg.listen;
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let mut note = String::new();
    // HTTPS through the proxy: a CONNECT first, decided for the host alone.
    let intercepted = match (https, uri.authority()) {
        (true, Some(a)) => {
            let host = crate::policy::canonical_host(a.host());
            let port = a.port_u16().unwrap_or(443);
            match table.connect_plan(&host, cfg.default_action) {
                (ConnectPlan::Intercept, _) => {
                    note = format!(
                        "CONNECT {host}:{port} is intercepted; the inner request is decided below"
                    );
                    Some(Intercepted {
                        host,
                        port,
                        identity: identity.clone(),
                        sni_mismatch: false,
                    })
                }
                (ConnectPlan::Tunnel, _) => {
                    note = format!(
                        "CONNECT {host}:{port} becomes a blind tunnel (every route for the host passes)"
                    );
                    None
                }
                (ConnectPlan::Deny, _) => {
                    note = format!("CONNECT {host}:{port} is refused before any inner request");
                    None
                }
            }
        }
        _ => None,
    };
    let mut builder = Request::builder().method(q.method.clone());
    builder = match (&intercepted, uri.authority()) {
        (Some(_), _) => builder.uri(uri.path_and_query().map_or("/", |p| p.as_str())),
        (None, Some(a)) => builder
            .uri(uri.clone())
            .header(http::header::HOST, a.as_str()),
        (None, None) if q.url.starts_with('/') => builder.uri(uri.clone()),
        (None, None) => return Err(ExplainError::Url(q.url.clone())),
    };
    let (parts, ()) = builder
        .body(())
        .map_err(|e| ExplainError::Request(e.to_string()))?
        .into_parts();
    let own_addr: SocketAddr = own;
    let found = target::resolve(&parts, intercepted.as_ref(), own_addr, &table);
    let target = match found {
        Ok(t) => t,
        Err(e) => {
            return Ok(refused_early(
                q,
                &table,
                &parts.method,
                e.code(),
                e.status().as_u16(),
                note,
            ));
        }
    };
    Ok(decide(
        cfg,
        &table,
        q,
        &target,
        &parts.method,
        identity.as_ref(),
        note,
    ))
}

/// A request refused before any route decision (bad URL, no gateway route).
fn refused_early(
    q: &Query,
    _t: &RouteTable,
    method: &Method,
    code: &'static str,
    status: u16,
    note: String,
) -> Explanation {
    Explanation {
        method: method.clone(),
        url: q.url.clone(),
        tried: vec![],
        outcome: Outcome {
            decision: Verdict::Deny,
            report: false,
            error: Some(code),
            status: Some(status),
            route: None,
            auth_context: "none",
            credential: None,
            source: None,
            inject: None,
            enforce: Enforce::On,
            identity: IdentityOutcome {
                user: q.user.clone(),
                groups: q.groups.clone(),
                verdict: IdentityVerdict::NotRequired,
            },
            tool: None,
            note,
        },
    }
}

fn decide(
    cfg: &Config,
    table: &RouteTable,
    q: &Query,
    target: &Target,
    method: &Method,
    identity: Option<&Identity>,
    mut note: String,
) -> Explanation {
    let request = MatchInput {
        host: &target.host,
        path: &target.policy_path,
        method,
    };
    let d = crate::policy::decide(
        table,
        cfg.default_action,
        &DecisionInput {
            request,
            gateway: target.gateway.as_ref(),
            identity,
        },
    );
    let tried = match &target.gateway {
        Some(g) => vec![RouteReason {
            index: index_of(cfg, &g.name),
            route: g.name.clone(),
            matched: true,
            why: format!(
                "gateway prefix {} covers the path; below it: {}",
                g.gateway.as_ref().map_or("", |x| x.prefix.as_str()),
                conditions(&g.matcher.check(&request))
            ),
        }],
        None => {
            let mut out = Vec::new();
            for c in table.trace(request) {
                out.push(RouteReason {
                    index: index_of(cfg, &c.route.name),
                    route: c.route.name.clone(),
                    matched: c.matched,
                    why: conditions(&c.conditions),
                });
                if c.matched {
                    break;
                }
            }
            out
        }
    };
    let egress = crate::proxy::egress::check_intent(cfg, target, d.route.as_deref()).err();
    let refusal = d.refusal.map(code_and_status);
    let refusal = refusal.or(egress.as_ref().map(|e| (e.code(), e.status().as_u16())));
    let reported = d.reported.map(code_and_status);
    let route = d.route.as_deref();
    let injects = d.injects() && refusal.is_none();
    let credential = route
        .and_then(|r| r.credential.as_ref())
        .filter(|_| injects);
    let verdict = identity_verdict(route, identity);
    if route.is_none() {
        let s = format!("no route matched: default {}", cfg.default_action);
        note = if note.is_empty() {
            s
        } else {
            format!("{note}; {s}")
        };
    }
    if let (Some(r), true) = (
        route.and_then(|r| r.rate.as_ref()),
        injects || d.action == Action::Passthrough,
    ) {
        let s = format!("rate {r} applies (budgets are runtime state, not evaluated here)");
        note = if note.is_empty() {
            s
        } else {
            format!("{note}; {s}")
        };
    }
    let tool = q.tool.as_ref().map(|(name, _)| {
        format!(
            "{name}: MCP tool rules are not part of this build; the route's own decision stands"
        )
    });
    Explanation {
        method: method.clone(),
        url: q.url.clone(),
        tried,
        outcome: Outcome {
            decision: if refusal.is_some() {
                Verdict::Deny
            } else {
                Verdict::Allow
            },
            report: reported.is_some() && refusal.is_none(),
            error: refusal.or(reported).map(|r| r.0),
            status: refusal.or(reported).map(|r| r.1),
            route: route.map(|r| r.name.clone()),
            auth_context: if route.is_some() || d.allowed() {
                d.action.auth_context()
            } else {
                "none"
            },
            credential: credential.map(|c| c.name.clone()),
            source: credential.map(|c| c.source_name()),
            inject: route
                .filter(|_| injects)
                .map(|r| r.effective_inject().to_string()),
            enforce: route.map_or(
                if cfg.default_action == crate::config::DefaultAction::Report {
                    Enforce::Report
                } else {
                    Enforce::On
                },
                |r| r.enforce,
            ),
            identity: IdentityOutcome {
                user: q.user.clone(),
                groups: q.groups.clone(),
                verdict,
            },
            tool,
            note,
        },
    }
}

/// The code and HTTP status the proxy answers a refusal with (`crate::error` is the
/// one home of statuses).
fn code_and_status(r: Refusal) -> (&'static str, u16) {
    use crate::error::ProxyError;
    let e = match r {
        Refusal::NoRoute | Refusal::RouteDenies => ProxyError::RouteDenied(String::new()),
        Refusal::IdentityRequired => ProxyError::IdentityRequired {
            header: String::new(),
        },
        Refusal::UserNotAllowed => ProxyError::UserNotAllowed {
            route: String::new(),
        },
    };
    (e.code(), e.status().as_u16())
}

fn index_of(cfg: &Config, name: &str) -> usize {
    cfg.routes
        .iter()
        .position(|r| &*r.name == name)
        .unwrap_or(usize::MAX)
}

/// `host slack.com: yes, path /api/*: no, method POST: yes` (or why a route without
/// conditions matches).
fn conditions(checks: &[crate::policy::ConditionCheck]) -> String {
    if checks.is_empty() {
        return "no conditions (matches every request)".into();
    }
    checks
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c.kind,
                c.want,
                if c.matched {
                    "matches"
                } else {
                    "does not match"
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn identity_verdict(
    route: Option<&crate::config::RouteSpec>,
    id: Option<&Identity>,
) -> IdentityVerdict {
    let Some(r) = route else {
        return IdentityVerdict::NotRequired;
    };
    let needs = r.action == Action::Assistant || r.allow.is_some();
    match (id, &r.allow) {
        (None, _) if needs => IdentityVerdict::Missing,
        (None, _) => IdentityVerdict::NotRequired,
        (Some(i), Some(a)) if !crate::policy::admits(a, i) => IdentityVerdict::NotAllowed,
        (Some(_), _) if needs => IdentityVerdict::Accepted,
        (Some(_), _) => IdentityVerdict::NotRequired,
    }
}
