//! Header hygiene on the way up and on the way back.
//!
//! Hop-by-hop headers (RFC 9110 7.6.1: `Connection` and every header it names,
//! `Keep-Alive`, `Proxy-Connection`, `Proxy-Authorization`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`) belong to one connection and are dropped in both
//! directions; the client connection to sidekey is not the upstream connection.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Drop hop-by-hop headers, including those `Connection` lists. `Upgrade` is kept only
/// when `keep_upgrade` (a WebSocket handshake sidekey forwards itself).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(&name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Headers whose underscore spelling must never pass: a CGI/WSGI upstream folds `_`
/// into `-` and would read them as framing or credentials.
const SENSITIVE: [&str; 12] = [
    "transfer-encoding",
    "content-length",
    "connection",
    "host",
    "authorization",
    "proxy-authorization",
    "cookie",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

/// Drop `Transfer_Encoding`, `Content_Length` and the like (see [`SENSITIVE`]).
pub fn strip_underscore_lookalikes(headers: &mut HeaderMap) {
    let found: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            k.as_str().contains('_')
                && SENSITIVE.contains(&k.as_str().replace('_', "-").trim_matches('-'))
        })
        .cloned()
        .collect();
    for name in found {
        headers.remove(name);
    }
}

/// Remove the identity header and every look-alike (`x_sidekey_user`, any case).
///
/// Done on every request, injected or not: the identity is for sidekey alone, and an
/// upstream (or a framework that folds `_` into `-`) must never see a spoofable copy.
pub fn strip_identity(headers: &mut HeaderMap, identity: &HeaderName) {
    let target = identity.as_str().as_bytes();
    let lookalikes: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str().as_bytes();
            k.len() == target.len()
                && k.iter()
                    .zip(target)
                    .all(|(a, b)| a == b || (matches!(a, b'_' | b'-') && matches!(b, b'_' | b'-')))
        })
        .cloned()
        .collect();
    for name in lookalikes {
        headers.remove(name);
    }
}

/// On a route that injects: drop every client credential so the one that goes out is
/// always sidekey's. `keep` (the route's `keep_client_headers`) may spare
/// `Authorization`, `Cookie` or `Proxy-Authorization`, never the injected header.
pub fn strip_client_credentials(
    headers: &mut HeaderMap,
    injected: Option<&HeaderName>,
    keep: &[HeaderName],
) {
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::PROXY_AUTHORIZATION,
    ] {
        if !keep.contains(&name) {
            headers.remove(name);
        }
    }
    if let Some(name) = injected {
        headers.remove(name);
    }
}

/// The W3C trace id of a valid `traceparent`, or `None`.
pub fn trace_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("traceparent")?.to_str().ok()?;
    let parts: Vec<&str> = v.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    if parts.len() < 4
        || !hex(parts[0], 2)
        || parts[0] == "ff"
        || !hex(parts[1], 32)
        || !hex(parts[2], 16)
        || !hex(parts[3], 2)
    {
        return None;
    }
    if parts[1].bytes().all(|b| b == b'0') || parts[2].bytes().all(|b| b == b'0') {
        return None;
    }
    Some(parts[1].to_string())
}

/// Keep a valid `traceparent`, or start a new trace; returns the trace id.
pub fn ensure_traceparent(headers: &mut HeaderMap) -> String {
    if let Some(id) = trace_id(headers) {
        return id;
    }
    let trace = format!("{:032x}", fastrand::u128(1..));
    let span = format!("{:016x}", fastrand::u64(1..));
    if let Ok(v) = HeaderValue::from_str(&format!("00-{trace}-{span}-01")) {
        headers.insert("traceparent", v);
    }
    headers.remove("tracestate");
    trace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_listed_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-end-to-end", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("x-end-to-end").is_some());
    }

    #[test]
    fn identity_and_lookalikes_go() {
        let mut h = HeaderMap::new();
        h.insert("x-sidekey-user", HeaderValue::from_static("alice"));
        h.insert("x_sidekey_user", HeaderValue::from_static("mallory"));
        h.insert("x_sidekey-user", HeaderValue::from_static("mallory"));
        h.insert("x-sidekey-users", HeaderValue::from_static("keep"));
        strip_identity(&mut h, &HeaderName::from_static("x-sidekey-user"));
        assert_eq!(h.len(), 1);
        assert!(h.get("x-sidekey-users").is_some());
    }

    #[test]
    fn traceparent_kept_or_created() {
        let mut h = HeaderMap::new();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert("traceparent", HeaderValue::from_static(tp));
        assert_eq!(
            ensure_traceparent(&mut h),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(h["traceparent"], tp);
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static("garbage"));
        let id = ensure_traceparent(&mut h);
        assert_eq!(id.len(), 32);
        assert_eq!(trace_id(&h).unwrap(), id);
    }
}
