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
use crate::policy::{RouteTable, canonical_host, match_form, normalize};

#[derive(Debug)]
pub struct Target {
    pub scheme: Scheme,
    /// Lower-case host without port or brackets.
    pub host: String,
    /// Authority sent upstream (URI authority, and so `Host` / `:authority`).
    pub authority: Authority,
    /// Normalised path sent upstream.
    pub path: String,
    /// The path policy matches (match form; for gateways, the part below the prefix).
    pub policy_path: String,
    pub query: Option<String>,
    /// Set for gateway requests: the route chosen by prefix.
    pub gateway: Option<Arc<RouteSpec>>,
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
            policy_path: match_form(&path).into_owned(),
            path,
            query,
            gateway: None,
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
                policy_path: match_form(&path).into_owned(),
                path,
                query,
                gateway: None,
            });
        }
        // An h2 request whose :authority is sidekey itself is a gateway request.
    }

    let Some((route, rest)) = table.gateway_match(&path, &parts.method) else {
        return Err(ProxyError::RouteDenied(format!(
            "no gateway route for `{}`",
            crate::audit::bounded(&path)
        )));
    };
    let Some(g) = &route.gateway else {
        return Err(ProxyError::RouteDenied("no gateway route".into()));
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
        policy_path: match_form(rest).into_owned(),
        path: upstream_path,
        query,
        gateway: Some(route.clone()),
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
