//! Contract checks shared by the test files: the error shape, traceparent format,
//! RFC 3339 timestamps, and path normalisation for escape checks.

use serde_json::Value;

use super::client::Resp;

/// Asserts `resp` is a sidekey-generated error per the SPEC: status, `x-sidekey-error:
/// CODE`, JSON body `{error, message, request_id}` with `request_id` equal to the
/// `x-sidekey-request-id` header. Returns the body.
#[track_caller]
pub fn assert_sidekey_error(resp: &Resp, status: u16, code: &str) -> Value {
    assert_eq!(
        resp.status,
        status,
        "expected {status} {code}, got {} with headers {:?} body {:?}",
        resp.status,
        resp.headers,
        resp.text()
    );
    assert_eq!(
        resp.header("x-sidekey-error"),
        Some(code),
        "x-sidekey-error header; body {:?}",
        resp.text()
    );
    let body = resp.json();
    assert!(body.is_object(), "error body must be a JSON object: {body}");
    assert_eq!(body["error"], code, "error body: {body}");
    let msg = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("message must be a string: {body}"));
    assert!(!msg.trim().is_empty(), "message must not be empty: {body}");
    let rid = body["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("request_id must be a string: {body}"));
    assert!(!rid.is_empty(), "request_id must not be empty: {body}");
    assert_eq!(
        resp.header("x-sidekey-request-id"),
        Some(rid),
        "body request_id must equal the x-sidekey-request-id header"
    );
    body
}

/// The `x-sidekey-request-id` of a response; panics if missing or empty.
#[track_caller]
pub fn request_id(resp: &Resp) -> String {
    let id = resp
        .header("x-sidekey-request-id")
        .unwrap_or_else(|| panic!("response without x-sidekey-request-id: {:?}", resp.headers));
    assert!(!id.trim().is_empty(), "empty x-sidekey-request-id");
    id.to_string()
}

pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// W3C `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero.
pub fn is_traceparent(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 4
        && parts[0] == "00"
        && is_lower_hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && is_lower_hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && is_lower_hex(parts[3], 2)
}

/// The trace-id part of a traceparent.
pub fn trace_id_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or("")
}

/// Whether `s` parses as an RFC 3339 timestamp.
pub fn is_rfc3339(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// How a typical origin server (one that decodes the path once, as Go's `URL.Path`,
/// many frameworks and file servers do) would see `path`: percent-decoded once (`%2e`,
/// `%2f`, `%5c` included), backslashes as slashes, dot segments resolved (RFC 3986 5.2.4).
pub fn normalize_path(path: &str) -> String {
    let p = super::upstream::pct_decode(path);
    let p = p.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "." | "" => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// Whether the upstream-visible `path` stays at or under `base` after normalisation.
pub fn stays_under(path: &str, base: &str) -> bool {
    let n = normalize_path(path);
    n == base || n.starts_with(&format!("{base}/"))
}
