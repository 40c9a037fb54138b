//! Where a request goes: the target phase, before any policy.
//!
//! Three shapes reach the listener: absolute-form (`GET http://host/path`, forward
//! proxy), origin-form (`GET /slack/api/x`, gateway), and requests inside an
//! intercepted CONNECT tunnel (origin-form or h2 `:authority`, bound to the CONNECT
//! host). Each becomes one [`Target`]; the path is normalised once here so that policy
//! and the upstream see the same path.

use std::net::SocketAddr;
use std::sync::Arc;

use http::request::Parts;
use http::uri::{Authority, Scheme};

use super::Intercepted;
use crate::config::RouteSpec;
use crate::error::ProxyError;
use crate::policy::{Gateway, RouteTable, canonical_host, match_form, normalize};

#[derive(Debug)]
pub struct Target {
    pub scheme: Scheme,
    /// Lower-case host without port or brackets.
    pub host: String,
    /// Authority sent upstream (URI authority, and so `Host` / `:authority`).
    pub authority: Authority,
    /// Normalised path sent upstream.
    pub path: String,
    /// The path policy matches (match form; for gateways, the part below the prefix)
    /// when it differs from `path`: read it with [`Target::policy_path`].
    policy_path: Option<String>,
    pub query: Option<String>,
    /// Which way in: forward proxy, or gateway (hit or miss).
    pub via: Via,
}

impl Target {
    /// The path policy matches: the match form of `path` (for gateways, of the part
    /// below the prefix).
    pub fn policy_path(&self) -> &str {
        self.policy_path.as_deref().unwrap_or(&self.path)
    }
}

/// The match form of a normalised path when it is not the path itself (most paths
/// have no `;` or `%` and are their own match form, without a copy).
fn policy_form(path: &str) -> Option<String> {
    match match_form(path) {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(form) => Some(form),
    }
}

/// How a request came in, as far as routing goes.
#[derive(Debug, Clone)]
pub enum Via {
    /// Absolute-form or inside a tunnel: the route table decides.
    Proxy,
    /// A gateway request: the route chosen by prefix.
    Gateway(Arc<RouteSpec>),
    /// A gateway request no prefix covers; [`crate::policy::decide`] refuses it.
    GatewayMiss,
}

impl Via {
    /// The form [`crate::policy::DecisionInput`] takes.
    pub fn as_gateway(&self) -> Gateway<'_> {
        match self {
            Via::Proxy => Gateway::Proxy,
            Via::Gateway(r) => Gateway::Hit(r),
            Via::GatewayMiss => Gateway::Miss,
        }
    }

    /// Whether this is a gateway request that found its route.
    pub fn is_gateway_hit(&self) -> bool {
        matches!(self, Via::Gateway(_))
    }
}

fn bad(msg: impl Into<String>) -> ProxyError {
    ProxyError::BadRequest(msg.into())
}

/// Work out the target of a request.
pub fn resolve(
    parts: &Parts,
    intercepted: Option<&Intercepted>,
    own: SocketAddr,
    table: &RouteTable,
) -> Result<Target, ProxyError> {
    let uri = &parts.uri;
    let raw_path = uri.path();
    let path = normalize(raw_path).map_err(bad)?;
    let query = uri.query().map(str::to_string);

    if let Some(tunnel) = intercepted {
        // Policy is bound to the CONNECT target: an inner request (or TLS SNI) naming
        // another host must not borrow this host's credential.
        if tunnel.sni_mismatch {
            return Err(bad("TLS server name differs from the CONNECT host"));
        }
        if let Some(a) = uri.authority() {
            check_same_host(a.as_str(), &tunnel.host, tunnel.port, 443)?;
        }
        if let Some(h) = parts.headers.get(http::header::HOST) {
            check_same_host(
                h.to_str().map_err(|_| bad("bad Host header"))?,
                &tunnel.host,
                tunnel.port,
                443,
            )?;
        }
        let authority = authority_for(&tunnel.host, tunnel.port, 443)?;
        return Ok(Target {
            scheme: Scheme::HTTPS,
            host: tunnel.host.clone(),
            authority,
            policy_path: policy_form(&path),
            path,
            query,
            via: Via::Proxy,
        });
    }

    if let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) {
        let host = canonical_host(authority.host());
        let default_port = if *scheme == Scheme::HTTPS {
            443
        } else if *scheme == Scheme::HTTP {
            80
        } else {
            return Err(bad(format!("unsupported scheme `{scheme}`")));
        };
        let port = authority.port_u16().unwrap_or(default_port);
        if !is_self(&host, port, own) {
            if authority.as_str().contains('@') {
                return Err(bad("user info in the request URI"));
            }
            if let Some(h) = parts.headers.get(http::header::HOST) {
                check_same_host(
                    h.to_str().map_err(|_| bad("bad Host header"))?,
                    &host,
                    port,
                    default_port,
                )
                .map_err(|_| bad("Host header does not match the request URI"))?;
            }
            if host.is_empty() {
                return Err(bad("empty host in the request URI"));
            }
            // Reuse the request's authority when it already is the canonical one.
            let authority = if authority.as_str() == host {
                authority.clone()
            } else {
                authority_for(&host, port, default_port)?
            };
            return Ok(Target {
                scheme: scheme.clone(),
                authority,
                host,
                policy_path: policy_form(&path),
                path,
                query,
                via: Via::Proxy,
            });
        }
        // An h2 request whose :authority is sidekey itself is a gateway request.
    }

    let gateway = table
        .gateway_match(&path, &parts.method)
        .and_then(|(route, rest)| Some((route, rest, route.gateway.as_ref()?)));
    let Some((route, rest, g)) = gateway else {
        return gateway_miss(parts, own, path, query);
    };
    let upstream_path = if g.base_path.is_empty() {
        rest.to_string()
    } else if rest == "/" && path == g.prefix {
        g.base_path.clone()
    } else {
        format!("{}{}", g.base_path, rest)
    };
    Ok(Target {
        scheme: g.scheme.clone(),
        host: g.host.clone(),
        authority: g.authority.clone(),
        policy_path: Some(match_form(rest).into_owned()),
        path: upstream_path,
        query,
        via: Via::Gateway(route.clone()),
    })
}

/// A gateway request no prefix covers: a target naming sidekey itself (as the client
/// addressed it), never dialled; the decision refuses it.
fn gateway_miss(
    parts: &Parts,
    own: SocketAddr,
    path: String,
    query: Option<String>,
) -> Result<Target, ProxyError> {
    let named = parts
        .uri
        .authority()
        .cloned()
        .or_else(|| {
            let h = parts.headers.get(http::header::HOST)?.to_str().ok()?;
            h.parse::<Authority>().ok()
        })
        .filter(|a| !a.as_str().contains('@'));
    let authority = match named {
        Some(a) => a,
        None => own.to_string().parse().map_err(|_| bad("bad host"))?,
    };
    Ok(Target {
        scheme: Scheme::HTTP,
        host: canonical_host(authority.host()),
        authority,
        policy_path: policy_form(&path),
        path,
        query,
        via: Via::GatewayMiss,
    })
}

/// Whether `host:port` names sidekey's own proxy listener.
fn is_self(host: &str, port: u16, own: SocketAddr) -> bool {
    if port != own.port() {
        return false;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip.is_unspecified() || ip == own.ip(),
        Err(_) => host == "localhost",
    }
}

/// Compare `value` (`host[:port]`) with the expected host and port.
fn check_same_host(
    value: &str,
    host: &str,
    port: u16,
    default_port: u16,
) -> Result<(), ProxyError> {
    if value == host && port == default_port {
        return Ok(()); // the usual case, without parsing
    }
    let a: Authority = value.parse().map_err(|_| bad("bad Host header"))?;
    let h = canonical_host(a.host());
    let p = a.port_u16().unwrap_or(default_port);
    if h != host || p != port {
        return Err(bad(format!(
            "request names host `{}`, not the tunnel's `{host}`",
            crate::audit::bounded(&h)
        )));
    }
    Ok(())
}

fn authority_for(host: &str, port: u16, default_port: u16) -> Result<Authority, ProxyError> {
    let h = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let text = if port == default_port {
        h
    } else {
        format!("{h}:{port}")
    };
    text.parse().map_err(|_| bad("bad host"))
}
