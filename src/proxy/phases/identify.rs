//! The identify phase: the request's size limit, its target (where it goes, see
//! [`crate::proxy::target`]) and its end user (who it is for).

use std::sync::Arc;

use http::request::Parts;

use crate::error::ProxyError;
use crate::identity::Identity;
use crate::proxy::exchange::Exchange;
use crate::proxy::target::{self, Target};
use crate::proxy::{ConnInfo, Runtime, Shared};

/// hyper's HTTP/1 buffer cannot go below 8 KiB, so the configured limit is also
/// checked here, for both protocols.
pub(super) fn check_header_size(rt: &Runtime, parts: &Parts) -> Result<(), ProxyError> {
    let limit = rt.config.limits.max_header_bytes;
    let uri_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + parts.uri.authority().map_or(0, |a| a.as_str().len());
    let size: usize = uri_len
        + parts
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > limit {
        return Err(ProxyError::HeadersTooLarge(limit));
    }
    Ok(())
}

/// Where the request goes, with its path normalised once; recorded for the audit.
pub(super) fn locate(
    shared: &Shared,
    rt: &Runtime,
    conn: &ConnInfo,
    ex: &mut Exchange,
    parts: &Parts,
) -> Result<Target, ProxyError> {
    match target::resolve(
        parts,
        conn.intercepted.as_ref(),
        shared.proxy_addr,
        &rt.table,
    ) {
        Ok(t) => {
            ex.host = t.host.clone();
            ex.path = t.path.clone();
            Ok(t)
        }
        Err(e) => {
            // No target: audit what the client asked for (never the query).
            ex.host = parts
                .uri
                .host()
                .map(str::to_string)
                .or_else(|| host_header(&parts.headers))
                .unwrap_or_default();
            ex.path = parts.uri.path().to_string();
            Err(e)
        }
    }
}

/// The end user, if any. The identity header is removed later whatever happens.
pub(super) async fn identify(
    rt: &Runtime,
    conn: &Arc<ConnInfo>,
    h: &http::HeaderMap,
) -> Result<Option<Identity>, ProxyError> {
    let inner = rt.identifier.identify(h, conn.loopback).await?;
    let Some(tunnel) = &conn.intercepted else {
        return Ok(inner);
    };
    // Inside a tunnel, the CONNECT request's identity holds for every inner request;
    // an inner request may repeat it but never name someone else.
    match (&tunnel.identity, inner) {
        (None, inner) => Ok(inner),
        (Some(outer), None) => Ok(Some(outer.clone())),
        (Some(outer), Some(inner)) if outer.user == inner.user => Ok(Some(inner)),
        (Some(_), Some(_)) => Err(ProxyError::BadRequest(
            "inner request identity differs from the CONNECT identity".into(),
        )),
    }
}

fn host_header(h: &http::HeaderMap) -> Option<String> {
    let v = h.get(http::header::HOST)?.to_str().ok()?;
    let a: http::uri::Authority = v.parse().ok()?;
    Some(a.host().trim_matches(['[', ']']).to_ascii_lowercase())
}
