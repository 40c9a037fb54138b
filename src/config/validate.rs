//! Raw -> validated, in one pass that collects every problem with its YAML path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::raw::{RawConfig, RawGateway, RawInject, RawRoots, RawRoute, RawTls};
use super::{
    Action, Allow, Config, ConfigError, CredentialSpec, DefaultAction, Enforce, Gateway, Inject,
    InjectForm, Limits, Roots, RouteSpec, Timeouts, TlsConfig, Word, parse_duration,
    validate_credentials, validate_identity, validate_minted,
};
use crate::policy::{HostPattern, PathGlob, RouteMatch};

/// Collected problems; each push names the YAML path.
#[derive(Default)]
pub(super) struct Problems(pub Vec<ConfigError>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Parse an optional duration, recording a problem and returning `default` on error.
    pub fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        match value.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.push(path, e);
                default
            }
        }
    }

    /// The keyword's value, or `None` after recording why it is not one.
    pub fn word<T: Copy>(&mut self, path: &str, w: &Word<T>) -> Option<T> {
        match &w.parsed {
            Ok(v) => Some(*v),
            Err(e) => {
                self.push(path, e.to_string());
                None
            }
        }
    }
}

/// Resolve a config-relative path.
pub(super) fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(super) fn validate(
    raw: RawConfig,
    file: &Path,
    base: &Path,
) -> Result<Config, Vec<ConfigError>> {
    let mut p = Problems::default();
    if raw.version != 1 {
        p.push(
            "version",
            format!("unsupported version {} (expected 1)", raw.version),
        );
    }
    if raw.agent.trim().is_empty() {
        p.push("agent", "must not be empty");
    }
    let listen = socket(&mut p, "listen", raw.listen.as_deref(), "127.0.0.1:15080");
    let admin_listen = socket(
        &mut p,
        "admin_listen",
        raw.admin_listen.as_deref(),
        "127.0.0.1:15090",
    );
    if listen == admin_listen && listen.port() != 0 {
        p.push("admin_listen", "must differ from `listen`");
    }
    let default_action = raw
        .default
        .as_ref()
        .and_then(|w| p.word("default", w))
        .unwrap_or(DefaultAction::Deny);
    let identity = validate_identity::identity(&mut p, raw.identity, base);
    let (tls, upstream_roots) = tls(&mut p, raw.tls, base);
    let upstreams = upstreams(&mut p, &raw.upstreams);
    let vault = validate_credentials::vault(&mut p, raw.vault, base);
    let (credentials, connectable) =
        validate_credentials::credentials(&mut p, raw.credentials, base, vault.is_some());
    let connect = super::connect::connect(&mut p, raw.connect, base, vault.is_some(), connectable);
    if let Some(l) = connect.as_ref().and_then(|c| c.listen)
        && l.port() != 0
        && (l == listen || l == admin_listen)
    {
        p.push(
            "connect.listen",
            "must differ from `listen` and `admin_listen`",
        );
    }
    let routes = routes(&mut p, raw.routes, &credentials, base);
    let telemetry = super::telemetry::telemetry(&mut p, raw.telemetry, base, vault.is_some());
    validate_identity::allow_lists(&mut p, &routes);
    validate_minted::cross_check(&mut p, &identity.mode, &credentials, &routes);

    let t = raw.timeouts;
    let t = t.as_ref();
    let timeouts = Timeouts {
        connect: p.duration(
            "timeouts.connect",
            t.and_then(|t| t.connect.as_deref()),
            Duration::from_secs(5),
        ),
        request_headers: p.duration(
            "timeouts.request_headers",
            t.and_then(|t| t.request_headers.as_deref()),
            Duration::from_secs(10),
        ),
        upstream_response: p.duration(
            "timeouts.upstream_response",
            t.and_then(|t| t.upstream_response.as_deref()),
            Duration::from_secs(60),
        ),
        idle: p.duration(
            "timeouts.idle",
            t.and_then(|t| t.idle.as_deref()),
            Duration::from_secs(90),
        ),
    };
    let l = raw.limits.as_ref();
    let limits = Limits {
        max_header_bytes: l.and_then(|l| l.max_header_bytes).unwrap_or(64 * 1024),
        max_headers: l.and_then(|l| l.max_headers).unwrap_or(100),
        max_connections: l.and_then(|l| l.max_connections).unwrap_or(1024),
        replay_body_bytes: l.and_then(|l| l.replay_body_bytes).unwrap_or(64 * 1024),
    };
    if limits.max_header_bytes < 1024 {
        p.push("limits.max_header_bytes", "must be at least 1024");
    }
    if limits.max_connections == 0 {
        p.push("limits.max_connections", "must be at least 1");
    }
    let shutdown_grace = p.duration(
        "shutdown_grace",
        raw.shutdown_grace.as_deref(),
        Duration::from_secs(20),
    );
    let audit_file = raw
        .audit
        .and_then(|a| a.file)
        .map(|f| resolve_path(base, &f));
    let mut egress_allow = Vec::new();
    for (i, c) in raw
        .egress
        .map(|e| e.allow_cidrs)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match c
            .parse::<ipnet::IpNet>()
            .or_else(|_| c.parse::<IpAddr>().map(ipnet::IpNet::from))
        {
            Ok(net) => egress_allow.push(net.trunc()),
            Err(_) => p.push(
                format!("egress.allow_cidrs[{i}]"),
                format!("`{c}` is not a CIDR like 10.0.0.0/8"),
            ),
        }
    }

    if !p.0.is_empty() {
        return Err(p.0);
    }
    Ok(Config {
        file: file.to_path_buf(),
        agent: Arc::from(raw.agent.as_str()),
        listen,
        admin_listen,
        default_action,
        identity,
        tls,
        upstream_roots,
        upstreams,
        vault,
        credentials,
        routes,
        timeouts,
        limits,
        shutdown_grace,
        audit_file,
        egress_allow,
        connect,
        telemetry,
        source_text: String::new(),
    })
}

fn socket(p: &mut Problems, path: &str, value: Option<&str>, default: &str) -> SocketAddr {
    let v = value.unwrap_or(default);
    v.parse().unwrap_or_else(|_| {
        p.push(
            path,
            format!("`{v}` is not an address like 127.0.0.1:15080"),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

fn tls(p: &mut Problems, raw: Option<RawTls>, base: &Path) -> (Option<TlsConfig>, Roots) {
    let Some(raw) = raw else {
        return (
            None,
            Roots {
                system: true,
                bundles: vec![],
            },
        );
    };
    let roots = match raw.upstream_roots {
        None => Roots {
            system: true,
            bundles: vec![],
        },
        Some(RawRoots::One(s)) => {
            roots_from(p, base, std::slice::from_ref(&s), "tls.upstream_roots")
        }
        Some(RawRoots::Many(v)) => roots_from(p, base, &v, "tls.upstream_roots"),
    };
    let generate = raw.generate.unwrap_or(false);
    let ca = match (raw.ca_cert, raw.ca_key) {
        (Some(c), Some(k)) => Some(TlsConfig {
            ca_cert: resolve_path(base, &c),
            ca_key: resolve_path(base, &k),
            generate,
        }),
        (None, None) if generate => {
            p.push(
                "tls.generate",
                "needs `ca_cert` and `ca_key`: where to create the CA",
            );
            None
        }
        (None, None) => None,
        (Some(_), None) => {
            p.push("tls.ca_key", "missing: `ca_cert` needs its `ca_key`");
            None
        }
        (None, Some(_)) => {
            p.push("tls.ca_cert", "missing: `ca_key` needs its `ca_cert`");
            None
        }
    };
    // A `generate: true` pair that does not exist yet is created by the serving
    // commands; a half pair is refused now.
    let pending = |ca: &TlsConfig| ca.generate && !ca.ca_cert.exists() && !ca.ca_key.exists();
    if let Some(ca) = ca.as_ref().filter(|ca| !pending(ca))
        && let Err(e) = crate::tls::CertificateAuthority::load(&ca.ca_cert, &ca.ca_key)
    {
        p.push(e.field(), e.to_string());
    }
    (ca, roots)
}

fn roots_from(p: &mut Problems, base: &Path, items: &[String], path: &str) -> Roots {
    let mut roots = Roots::default();
    for (i, item) in items.iter().enumerate() {
        if item == "system" {
            roots.system = true;
            continue;
        }
        let file = resolve_path(base, item);
        if !file.is_file() {
            p.push(
                if items.len() == 1 {
                    path.to_string()
                } else {
                    format!("{path}[{i}]")
                },
                format!("cannot read PEM bundle {}", file.display()),
            );
        }
        roots.bundles.push(file);
    }
    roots
}

fn upstreams(p: &mut Problems, raw: &BTreeMap<String, String>) -> HashMap<String, SocketAddr> {
    let mut out = HashMap::new();
    for (host, addr) in raw {
        let path = format!("upstreams.{host}");
        if host.contains([':', '/', '*']) || host.is_empty() {
            p.push(
                &path,
                "key must be a bare host name (no port, scheme or wildcard)",
            );
        }
        match addr.parse::<SocketAddr>() {
            Ok(a) => {
                out.insert(host.to_ascii_lowercase(), a);
            }
            Err(_) => p.push(&path, format!("`{addr}` is not IP:PORT")),
        }
    }
    out
}

fn routes(
    p: &mut Problems,
    raw: Vec<RawRoute>,
    creds: &BTreeMap<String, Arc<CredentialSpec>>,
    base: &Path,
) -> Vec<RouteSpec> {
    let mut out = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("routes[{i}]");
        let name = r.name.clone().unwrap_or_else(|| format!("route-{i}"));
        if !names.insert(name.clone()) {
            p.push(
                format!("{at}.name"),
                format!("duplicate route name `{name}`"),
            );
        }
        // An unknown `auth:` is one problem: the checks that depend on it are skipped.
        let action = p.word(&format!("{at}.auth"), &r.auth);
        let mut matcher = RouteMatch::default();
        if let Some(m) = &r.matcher {
            matcher.host = m.host.as_deref().and_then(|h| {
                HostPattern::parse(h)
                    .map_err(|e| p.push(format!("{at}.match.host"), e))
                    .ok()
            });
            matcher.path = m.path.as_deref().and_then(|g| {
                PathGlob::parse(g)
                    .map_err(|e| p.push(format!("{at}.match.path"), e))
                    .ok()
            });
            matcher.methods = m.methods.as_ref().map(|ms| {
                ms.iter()
                    .enumerate()
                    .filter_map(|(j, s)| {
                        Method::from_bytes(s.to_ascii_uppercase().as_bytes())
                            .map_err(|_| {
                                p.push(
                                    format!("{at}.match.methods[{j}]"),
                                    format!("`{s}` is not an HTTP method"),
                                )
                            })
                            .ok()
                    })
                    .collect()
            });
        }
        let gateway = r.gateway.as_ref().and_then(|g| gateway(p, &at, g));
        match (&r.matcher, &r.gateway) {
            (None, None) => p.push(&at, "needs `match` or `gateway`"),
            (Some(m), Some(_)) if m.host.is_some() => p.push(
                format!("{at}.match.host"),
                "a gateway route takes its host from `gateway.upstream`",
            ),
            _ => {}
        }
        let credential = credential_ref(p, &at, &r, action, creds);
        let inject = r
            .inject
            .as_ref()
            .and_then(|i| parse_inject(p, &format!("{at}.inject"), i));
        let set_headers = r
            .set_headers
            .iter()
            .flatten()
            .filter_map(|(k, v)| {
                let name = HeaderName::try_from(k.to_ascii_lowercase())
                    .map_err(|_| p.push(format!("{at}.set_headers.{k}"), "not a valid header name"))
                    .ok()?;
                let value = HeaderValue::try_from(v.as_str())
                    .map_err(|_| {
                        p.push(format!("{at}.set_headers.{k}"), "not a valid header value")
                    })
                    .ok()?;
                Some((name, value))
            })
            .collect();
        let keep_client_headers = r
            .keep_client_headers
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(j, k)| {
                HeaderName::try_from(k.to_ascii_lowercase())
                    .map_err(|_| {
                        p.push(
                            format!("{at}.keep_client_headers[{j}]"),
                            "not a valid header name",
                        )
                    })
                    .ok()
            })
            .collect();
        let allow = r.allow.map(|a| Allow {
            users: a.users.unwrap_or_default(),
            groups: a.groups.unwrap_or_default(),
        });
        if action.is_some_and(|a| !a.injects()) {
            for (key, set) in [
                ("inject", r.inject.is_some()),
                ("connect_url", r.connect_url.is_some()),
                ("mcp", r.mcp.is_some() && action == Some(Action::Deny)),
            ] {
                if set {
                    p.push(
                        format!("{at}.{key}"),
                        format!("has no effect on an `auth: {}` route", r.auth),
                    );
                }
            }
        }
        let mcp = r
            .mcp
            .and_then(|m| super::validate_mcp::mcp(p, &format!("{at}.mcp"), m, base));
        let rate = super::rate::rate(p, &at, r.rate.as_ref(), action, r.credential.is_some());
        let enforce = r
            .enforce
            .as_ref()
            .and_then(|w| p.word(&format!("{at}.enforce"), w))
            .unwrap_or(Enforce::On);
        out.push(RouteSpec {
            name: Arc::from(name.as_str()),
            matcher,
            gateway,
            action: action.unwrap_or(Action::Deny),
            credential,
            inject,
            set_headers,
            allow,
            connect_url: r.connect_url,
            keep_client_headers,
            mcp,
            rate,
            enforce,
        });
    }
    out
}

fn credential_ref(
    p: &mut Problems,
    at: &str,
    r: &RawRoute,
    action: Option<Action>,
    creds: &BTreeMap<String, Arc<CredentialSpec>>,
) -> Option<Arc<CredentialSpec>> {
    let action = action?;
    let needs = action.injects();
    let Some(name) = &r.credential else {
        if needs {
            p.push(
                format!("{at}.credential"),
                format!("missing: an `auth: {}` route needs a credential", r.auth),
            );
        }
        return None;
    };
    if !needs {
        p.push(
            format!("{at}.credential"),
            format!("an `auth: {}` route takes no credential", r.auth),
        );
        return None;
    }
    let Some(spec) = creds.get(name) else {
        let known: Vec<&str> = creds.keys().map(String::as_str).collect();
        p.push(
            format!("{at}.credential"),
            format!(
                "unknown credential \"{name}\" (known: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        );
        return None;
    };
    match (action, spec.per_user()) {
        (Action::Assistant, false) => p.push(format!("{at}.credential"), format!("credential \"{name}\" is not per-user (no {{user}} in its path or subject); an assistant route needs one")),
        (Action::Claw, true) => p.push(format!("{at}.credential"), format!("credential \"{name}\" is per-user ({{user}} in its path or subject, or a token exchange); a claw route needs a fixed one")),
        _ => {}
    }
    Some(spec.clone())
}

fn gateway(p: &mut Problems, at: &str, g: &RawGateway) -> Option<Gateway> {
    let prefix = g.prefix.trim_end_matches('/');
    if !g.prefix.starts_with('/') || prefix.is_empty() || prefix.contains(['*', '?', '%']) {
        p.push(
            format!("{at}.gateway.prefix"),
            format!("`{}` must be a literal path like /slack", g.prefix),
        );
        return None;
    }
    let uri: http::Uri = match g.upstream.parse() {
        Ok(u) => u,
        Err(_) => {
            p.push(
                format!("{at}.gateway.upstream"),
                format!("`{}` is not a URL", g.upstream),
            );
            return None;
        }
    };
    let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
        p.push(
            format!("{at}.gateway.upstream"),
            "must be an absolute http:// or https:// URL",
        );
        return None;
    };
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        p.push(
            format!("{at}.gateway.upstream"),
            "scheme must be http or https",
        );
        return None;
    }
    if uri.query().is_some() || authority.as_str().contains('@') {
        p.push(
            format!("{at}.gateway.upstream"),
            "must not carry a query or user info",
        );
        return None;
    }
    Some(Gateway {
        prefix: prefix.to_string(),
        host: authority
            .host()
            .trim_matches(['[', ']'])
            .to_ascii_lowercase(),
        scheme,
        authority,
        base_path: uri.path().trim_end_matches('/').to_string(),
    })
}

/// `inject:` as on routes and credentials.
pub(super) fn parse_inject(p: &mut Problems, at: &str, raw: &RawInject) -> Option<Inject> {
    let forms = [
        raw.header.is_some(),
        raw.basic.is_some(),
        raw.query.is_some(),
        raw.aws_sigv4.is_some(),
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        let names: Vec<String> = InjectForm::ALL.iter().map(|f| format!("`{f}`")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        p.push(
            at,
            format!("needs exactly one of {}", super::names::one_of(&names)),
        );
        return None;
    }
    if let Some(s) = &raw.aws_sigv4 {
        return validate_minted::sigv4(p, at, s);
    }
    if raw.format.is_some() && raw.header.is_none() {
        p.push(format!("{at}.format"), "only used with `header`");
    }
    if let Some(h) = &raw.header {
        let Ok(name) = HeaderName::try_from(h.to_ascii_lowercase()) else {
            p.push(
                format!("{at}.header"),
                format!("`{h}` is not a valid header name"),
            );
            return None;
        };
        let default = if name == http::header::AUTHORIZATION {
            "Bearer {token}"
        } else {
            "{token}"
        };
        let format = raw.format.as_deref().unwrap_or(default);
        let Some((prefix, suffix)) = format.split_once("{token}") else {
            p.push(format!("{at}.format"), "must contain `{token}`");
            return None;
        };
        if suffix.contains("{token}") || HeaderValue::try_from(format).is_err() {
            p.push(
                format!("{at}.format"),
                "must contain `{token}` once and be a valid header value",
            );
            return None;
        }
        return Some(Inject::Header {
            name,
            prefix: prefix.into(),
            suffix: suffix.into(),
        });
    }
    if let Some(b) = &raw.basic {
        if b.username.as_deref().is_some_and(|u| u.contains(':')) {
            p.push(format!("{at}.basic.username"), "must not contain `:`");
        }
        return Some(Inject::Basic {
            username: b.username.clone(),
        });
    }
    let param = raw.query.clone().unwrap_or_default();
    if param.is_empty() || param.contains(['&', '=', '#', ' ']) {
        p.push(
            format!("{at}.query"),
            "must be a plain query parameter name",
        );
        return None;
    }
    Some(Inject::Query { param })
}
