//! The inject phase: turn the client's request into the upstream request. Identity
//! and hop-by-hop headers go, the client's own credentials go on an injecting route,
//! sidekey's credential and the route's `set_headers` come in, and the URI becomes the
//! target's (normalised path, query with any injected parameter).

use http::Uri;
use http::request::Parts;

use super::Call;
use crate::credentials::Token;
use crate::error::ProxyError;
use crate::proxy::target::Target;
use crate::proxy::{Runtime, headers};
use crate::scrub::Secrets;

/// What the later phases need to know about the prepared request.
pub(super) struct Prepared {
    /// What the response must not carry (set when a credential was injected).
    pub secrets: Option<Secrets>,
    /// A WebSocket (HTTP/1.1 `Upgrade`) handshake.
    pub upgrade: bool,
}

pub(super) fn inject(rt: &Runtime, call: &Call, parts: &mut Parts) -> Result<Prepared, ProxyError> {
    headers::strip_identity(&mut parts.headers, rt.identifier.header());
    headers::strip_underscore_lookalikes(&mut parts.headers);
    let upgrade = is_upgrade(parts);
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(http::header::HOST);
    let mut secrets = None;
    match (&call.route, &call.token) {
        (Some(r), Some(token)) => {
            headers::strip_client_credentials(
                &mut parts.headers,
                r.injected_header(),
                &r.keep_client_headers,
            );
            secrets = Some(credential(call, token, parts)?);
        }
        _ => parts.uri = upstream_uri(&call.target, call.target.query.as_deref())?,
    }
    if let Some(r) = &call.route {
        for (k, v) in &r.set_headers {
            parts.headers.insert(k.clone(), v.clone());
        }
    }
    parts.version = http::Version::HTTP_11;
    Ok(Prepared { secrets, upgrade })
}

/// Place `token` on the request (headers and URI) as the route says; used again by
/// the forward phase's retry with a refreshed token.
pub(super) fn credential(
    call: &Call,
    token: &Token,
    parts: &mut Parts,
) -> Result<Secrets, ProxyError> {
    let Some(route) = &call.route else {
        return Err(ProxyError::CredentialStoreUnavailable(
            "route has no credential".into(),
        ));
    };
    let (query, secrets) = crate::proxy::inject::prepare(
        route,
        token,
        &mut parts.headers,
        call.target.query.as_deref(),
    )?;
    parts.uri = upstream_uri(&call.target, query.as_deref())?;
    Ok(secrets)
}

pub(super) fn is_upgrade(parts: &Parts) -> bool {
    parts.version == http::Version::HTTP_11
        && parts.headers.contains_key(http::header::UPGRADE)
        && parts
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| {
                v.to_str().is_ok_and(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
            })
}

fn upstream_uri(t: &Target, query: Option<&str>) -> Result<Uri, ProxyError> {
    let pq = match query {
        Some(q) if !q.is_empty() => format!("{}?{q}", t.path),
        _ => t.path.clone(),
    };
    Uri::builder()
        .scheme(t.scheme.clone())
        .authority(t.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| ProxyError::BadRequest("cannot build the upstream URI".into()))
}
