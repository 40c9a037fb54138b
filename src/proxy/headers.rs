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
///
/// Runs twice per request, so it first scans the names once (cheap comparisons of
/// standard headers) and only removes, by hash lookup, what is actually there.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if HOP_BY_HOP.contains(name) || (!keep_upgrade && name == header::UPGRADE) {
            doomed.push(name.clone());
        }
    }
    for value in headers.get_all(header::CONNECTION) {
        let listed = value.to_str().ok().into_iter().flat_map(|v| v.split(','));
        for name in listed.filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok()) {
            if !(keep_upgrade && name == header::UPGRADE) {
                doomed.push(name);
            }
        }
    }
    for name in &doomed {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
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

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The W3C trace context of one request: the trace, the caller's span (from a valid
/// incoming `traceparent`) and the span sidekey records for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits (the audit record's `trace_id`).
    pub trace_id: String,
    /// The incoming `traceparent`'s span id; `None` when sidekey started the trace.
    pub parent_span: Option<u64>,
    /// sidekey's own span for this request.
    pub span_id: u64,
    /// The sampled flag (parent-based: the caller's, or set when sidekey starts).
    pub sampled: bool,
}

/// A valid `traceparent`: (trace id, parent span id, flags byte).
fn parse_traceparent(headers: &HeaderMap) -> Option<(&str, u64, u8)> {
    let v = headers.get(TRACEPARENT)?.to_str().ok()?;
    let mut parts = v.trim().split('-');
    let mut field = |n: usize| parts.next().filter(|s| is_lower_hex(s, n));
    let (version, trace, span, flags) = (field(2)?, field(32)?, field(16)?, field(2)?);
    if version == "ff" {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || span.bytes().all(|b| b == b'0') {
        return None;
    }
    let span = u64::from_str_radix(span, 16).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace, span, flags))
}

/// The W3C trace id of a valid `traceparent`, or `None`.
#[cfg(test)]
fn trace_id(headers: &HeaderMap) -> Option<String> {
    parse_traceparent(headers).map(|(trace, _, _)| trace.to_string())
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Keep a valid `traceparent`, or start a new trace; returns the trace id.
pub fn ensure_traceparent(headers: &mut HeaderMap) -> String {
    trace_context(headers, false).trace_id
}

/// Keep a valid `traceparent` (trace id and flags), or start a new trace. With
/// `own_span` (trace export on), the forwarded `traceparent` names sidekey's span as
/// the upstream's parent, as any traced proxy does; without it the header goes on
/// unchanged.
pub fn trace_context(headers: &mut HeaderMap, own_span: bool) -> TraceContext {
    if let Some((trace, parent, flags)) = parse_traceparent(headers) {
        let trace_id = trace.to_string();
        let span_id = if own_span {
            let span_id = fastrand::u64(1..);
            set_traceparent(
                headers,
                u128::from_str_radix(&trace_id, 16).unwrap_or(1),
                span_id,
                flags,
            );
            span_id
        } else {
            parent
        };
        return TraceContext {
            trace_id,
            parent_span: Some(parent),
            span_id,
            sampled: flags & 1 == 1,
        };
    }
    let trace = fastrand::u128(1..);
    let span_id = fastrand::u64(1..);
    set_traceparent(headers, trace, span_id, 1);
    headers.remove(TRACESTATE);
    let mut hex = [0u8; 32];
    lower_hex(trace, &mut hex);
    TraceContext {
        trace_id: String::from_utf8_lossy(&hex).into_owned(),
        parent_span: None,
        span_id,
        sampled: true,
    }
}

/// `traceparent: 00-{trace}-{span}-{flags}`, built without `format!`.
fn set_traceparent(headers: &mut HeaderMap, trace: u128, span: u64, flags: u8) {
    let mut tp = [0u8; 55];
    tp[..3].copy_from_slice(b"00-");
    lower_hex(trace, &mut tp[3..35]);
    tp[35] = b'-';
    lower_hex(u128::from(span), &mut tp[36..52]);
    tp[52] = b'-';
    lower_hex(u128::from(flags), &mut tp[53..55]);
    if let Ok(v) = HeaderValue::from_bytes(&tp) {
        headers.insert(TRACEPARENT, v);
    }
}

/// Write the low `out.len() * 4` bits of `v` as lower-case hex, most significant first.
pub fn lower_hex(mut v: u128, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
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
        let tp = h["traceparent"].to_str().unwrap();
        assert_eq!(tp.len(), 55);
        assert!(tp.starts_with("00-") && tp.ends_with("-01"));
        assert!(h.get("tracestate").is_none());
    }

    #[test]
    fn own_span_rewrites_only_the_parent_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(tp));
        h.insert("tracestate", HeaderValue::from_static("k=v"));
        let cx = trace_context(&mut h, true);
        assert_eq!(cx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.parent_span, Some(0x00f067aa0ba902b7));
        assert!(!cx.sampled);
        let sent = h["traceparent"].to_str().unwrap();
        assert_eq!(sent, format!("00-{}-{:016x}-00", cx.trace_id, cx.span_id));
        assert_eq!(h["tracestate"], "k=v");
        let mut fresh = HeaderMap::new();
        let cx = trace_context(&mut fresh, true);
        assert_eq!(cx.parent_span, None);
        assert!(cx.sampled);
        assert_eq!(
            fresh["traceparent"].to_str().unwrap(),
            format!("00-{}-{:016x}-01", cx.trace_id, cx.span_id)
        );
    }

    #[test]
    fn invalid_traceparents_are_replaced() {
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let mut h = HeaderMap::new();
            h.insert("traceparent", HeaderValue::from_static(bad));
            assert_eq!(trace_id(&h), None, "{bad}");
            let id = ensure_traceparent(&mut h);
            assert_ne!(h["traceparent"], bad);
            assert_eq!(trace_id(&h), Some(id));
        }
    }

    #[test]
    fn lower_hex_pads_and_truncates() {
        let mut out = [0u8; 8];
        lower_hex(0xabc, &mut out);
        assert_eq!(&out, b"00000abc");
        lower_hex(0x1_2345_6789, &mut out);
        assert_eq!(&out, b"23456789");
    }

    #[test]
    fn hop_by_hop_keeps_upgrade_only_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, x-hop"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        let mut kept = h.clone();
        strip_hop_by_hop(&mut kept, true);
        assert_eq!(kept[header::UPGRADE], "websocket");
        assert_eq!(kept[header::CONNECTION], "upgrade");
        assert!(kept.get("x-hop").is_none() && kept.get(header::TE).is_none());
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
    }
}
