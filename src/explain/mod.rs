//! `sidekey explain`: what one request would get, and why, without sending anything.
//!
//! The request goes through the proxy's own code: [`crate::proxy::target::resolve`]
//! (forward proxy, gateway, or the inner request of an intercepted CONNECT after
//! [`crate::policy::RouteTable::connect_plan`]), then [`crate::policy::decide`] and
//! the literal-IP egress intent check. The routes tried come from
//! [`crate::policy::RouteTable::trace`], the same matcher as the decision's. No secret
//! is resolved: the credential is named with its source, never read.

pub mod command;
mod outcome;
mod render;
mod tool;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request};

pub use outcome::{Explanation, IdentityOutcome, IdentityVerdict, Outcome, RouteReason, Verdict};
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
        token: None,
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
    // HTTPS through the proxy: a CONNECT first, decided for the host alone.
    let (intercepted, note) = match (https, uri.authority()) {
        (true, Some(a)) => connect_stage(cfg, &table, a, identity.as_ref()),
        _ => (None, String::new()),
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
        path: target.policy_path(),
        method,
    };
    let d = crate::policy::decide(
        table,
        cfg.default_action,
        &DecisionInput {
            request,
            gateway: target.via.as_gateway(),
            identity,
        },
    );
    let tried = tried(cfg, table, target, request);
    let egress = crate::proxy::egress::check_intent(cfg, target, d.route.as_deref()).err();
    let refusal = d.refusal.map(code_and_status);
    let mut refusal = refusal.or(egress.as_ref().map(|e| (e.code(), e.status().as_u16())));
    let mut reported = d.reported.map(code_and_status);
    let route = d.route.as_deref();
    let tool = tool::stage(q.tool.as_ref(), route, identity, refusal.is_none());
    // MCP refusals are JSON-RPC errors on HTTP 200.
    match tool.as_ref().and_then(|t| t.refusal) {
        Some(code) if tool::reported(route) => reported = reported.or(Some((code, 200))),
        Some(code) => refusal = refusal.or(Some((code, 200))),
        None => {}
    }
    let injects = d.injects() && refusal.is_none() && reported.is_none();
    let credential = route
        .and_then(|r| r.credential.as_ref())
        .filter(|_| injects);
    let verdict = identity_verdict(route, identity);
    if route.is_none() {
        add_note(
            &mut note,
            format!("no route matched: default {}", cfg.default_action),
        );
    }
    if let Some(r) = route
        .and_then(|r| r.rate.as_ref())
        .filter(|_| d.allowed() && d.reported.is_none())
    {
        add_note(
            &mut note,
            format!("rate {r} applies (budgets are runtime state, not evaluated here)"),
        );
    }
    let tool = tool.map(|t| t.line);
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
            enforce: route.map_or(default_enforce(cfg), |r| r.enforce),
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

/// The CONNECT an HTTPS call starts with: intercepted (the inner request is decided
/// next), a blind tunnel, or refused; and a note saying which.
fn connect_stage(
    cfg: &Config,
    table: &RouteTable,
    authority: &http::uri::Authority,
    identity: Option<&Identity>,
) -> (Option<Intercepted>, String) {
    let host = crate::policy::canonical_host(authority.host());
    let port = authority.port_u16().unwrap_or(443);
    match table.connect_plan(&host, cfg.default_action).0 {
        ConnectPlan::Intercept => {
            let note =
                format!("CONNECT {host}:{port} is intercepted; the inner request is decided below");
            let tunnel = Intercepted {
                host,
                port,
                identity: identity.cloned(),
                sni_mismatch: false,
            };
            (Some(tunnel), note)
        }
        ConnectPlan::Tunnel => (
            None,
            format!(
                "CONNECT {host}:{port} becomes a blind tunnel (every route for the host passes)"
            ),
        ),
        ConnectPlan::Deny => (
            None,
            format!("CONNECT {host}:{port} is refused before any inner request"),
        ),
    }
}

/// The routes tried, in file order, up to the one that matched: for a gateway
/// request the route its prefix chose, else [`RouteTable::trace`].
fn tried(
    cfg: &Config,
    table: &RouteTable,
    target: &Target,
    req: MatchInput<'_>,
) -> Vec<RouteReason> {
    if matches!(target.via, crate::proxy::target::Via::GatewayMiss) {
        // No gateway prefix covers the path: no route is tried.
        return Vec::new();
    }
    if let crate::proxy::target::Via::Gateway(g) = &target.via {
        return vec![RouteReason {
            index: index_of(cfg, &g.name),
            route: g.name.clone(),
            matched: true,
            why: format!(
                "gateway prefix {} covers the path; below it: {}",
                g.gateway.as_ref().map_or("", |x| x.prefix.as_str()),
                conditions(&g.matcher.check(&req))
            ),
        }];
    }
    let mut out = Vec::new();
    for c in table.trace(req) {
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

fn add_note(note: &mut String, more: String) {
    if !note.is_empty() {
        note.push_str("; ");
    }
    note.push_str(&more);
}

/// What `default:` amounts to for a call no route matches.
fn default_enforce(cfg: &Config) -> Enforce {
    match cfg.default_action {
        crate::config::DefaultAction::Report => Enforce::Report,
        _ => Enforce::On,
    }
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
