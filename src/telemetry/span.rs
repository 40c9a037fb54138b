//! One request's span, built from its finished audit record: kind server, parent =
//! the incoming `traceparent`, the audit record's trace id, named `{METHOD} {route}`,
//! with the contract's attributes. Everything in it is what the audit record already
//! holds (so never a token and never a query string).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::audit::AuditRecord;
use crate::proxy::headers::TraceContext;

/// When and under which ids one request ran.
pub struct SpanTiming<'a> {
    pub trace: Option<&'a TraceContext>,
    pub start: SystemTime,
    pub duration: Duration,
}

/// The span for `record`, or `None` when the caller's trace is not sampled.
pub fn build(
    record: &AuditRecord<'_>,
    timing: &SpanTiming<'_>,
    scope: &InstrumentationScope,
) -> Option<SpanData> {
    let (trace_id, span_id, parent) = match timing.trace {
        Some(t) if !t.sampled => return None,
        Some(t) => (
            TraceId::from_hex(&t.trace_id).unwrap_or_else(|_| random_trace()),
            SpanId::from(t.span_id),
            t.parent_span.map(SpanId::from),
        ),
        // A CONNECT tunnel carries no traceparent: its span starts a trace.
        None => (random_trace(), SpanId::from(fastrand::u64(1..)), None),
    };
    let name = match record.route {
        Some(route) => Cow::Owned(format!("{} {route}", record.method)),
        None => Cow::Owned(record.method.to_string()),
    };
    let status = if record.status >= 500 {
        Status::error(record.error.unwrap_or("upstream 5xx"))
    } else {
        Status::Unset
    };
    Some(SpanData {
        span_context: SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: parent.unwrap_or(SpanId::INVALID),
        parent_span_is_remote: parent.is_some(),
        span_kind: SpanKind::Server,
        name,
        start_time: timing.start,
        end_time: timing.start + timing.duration,
        attributes: attributes(record),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    })
}

fn random_trace() -> TraceId {
    TraceId::from(fastrand::u128(1..))
}

/// The contract's attributes; a null audit field is left out (OTLP has no null).
fn attributes(r: &AuditRecord<'_>) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(16);
    let mut text = |k: &'static str, v: Option<&str>| {
        if let Some(v) = v {
            a.push(KeyValue::new(k, v.to_string()));
        }
    };
    text("sidekey.auth_context", Some(r.auth_context));
    text("sidekey.route", r.route);
    text("sidekey.credential", r.credential);
    text("sidekey.decision", Some(r.decision));
    text("sidekey.error", r.error);
    text("sidekey.request_id", Some(r.request_id));
    text("sidekey.agent", Some(r.agent));
    text("enduser.id", r.user.as_deref());
    text("http.request.method", Some(&r.method));
    text("url.scheme", Some(r.scheme));
    text("server.address", Some(&r.host));
    text("url.path", Some(&r.path));
    // MCP: the first JSON-RPC message of the POST names the method and, for a
    // `tools/call`, the tool (already bounded by the MCP gate); other requests have
    // neither.
    let first = r.mcp.and_then(|m| m.first());
    text("mcp.method.name", first.and_then(|e| e.method.as_deref()));
    text("gen_ai.tool.name", first.and_then(|e| e.tool.as_deref()));
    a.push(KeyValue::new(
        "http.response.status_code",
        i64::from(r.status),
    ));
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::Value;

    fn record<'a>(route: Option<&'a str>, status: u16) -> AuditRecord<'a> {
        AuditRecord {
            ts: "t",
            request_id: "r1",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            agent: "hr-agent",
            user: Some("alice".into()),
            groups: None,
            auth_context: "user_delegated",
            route,
            credential: Some("notion-user"),
            decision: "allow",
            error: None,
            method: "POST".into(),
            scheme: "https",
            host: "api.notion.com".into(),
            path: "/v1/pages".into(),
            status,
            upstream_ms: Some(1.0),
            total_ms: 2.0,
            bytes_in: 0,
            bytes_out: 0,
            mcp: None,
        }
    }

    #[test]
    fn an_mcp_call_names_its_method_and_tool() {
        let entries = [crate::mcp::gate::AuditEntry {
            method: Some("tools/call".into()),
            tool: Some("create_issue".into()),
            decision: "allow",
        }];
        let mut r = record(Some("gh"), 200);
        r.mcp = Some(&entries);
        let a = attributes(&r);
        let get = |k: &str| {
            a.iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(get("mcp.method.name"), Some(Value::from("tools/call")));
        assert_eq!(get("gen_ai.tool.name"), Some(Value::from("create_issue")));
        let plain = attributes(&record(Some("gh"), 200));
        assert!(plain.iter().all(|kv| !kv.key.as_str().starts_with("mcp.")));
    }

    fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a Value> {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn a_span_carries_the_audit_ids_and_attributes() {
        let cx = TraceContext {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            parent_span: Some(0x00f0_67aa_0ba9_02b7),
            span_id: 7,
            sampled: true,
        };
        let timing = SpanTiming {
            trace: Some(&cx),
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(5),
        };
        let scope = InstrumentationScope::builder("sidekey").build();
        let s = build(&record(Some("notion"), 200), &timing, &scope).unwrap();
        assert_eq!(s.name, "POST notion");
        assert_eq!(s.span_kind, SpanKind::Server);
        assert_eq!(
            s.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(s.parent_span_id, SpanId::from(0x00f0_67aa_0ba9_02b7));
        assert!(s.parent_span_is_remote);
        assert_eq!(s.span_context.span_id(), SpanId::from(7));
        assert_eq!(
            s.end_time,
            SystemTime::UNIX_EPOCH + Duration::from_millis(5)
        );
        assert_eq!(attr(&s, "enduser.id"), Some(&Value::from("alice")));
        assert_eq!(attr(&s, "url.path"), Some(&Value::from("/v1/pages")));
        assert_eq!(
            attr(&s, "http.response.status_code"),
            Some(&Value::I64(200))
        );
        assert_eq!(attr(&s, "sidekey.error"), None, "null fields are left out");
        assert_eq!(s.status, Status::Unset);
    }

    #[test]
    fn unsampled_callers_get_no_span_and_5xx_is_an_error() {
        let cx = TraceContext {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            parent_span: Some(1),
            span_id: 2,
            sampled: false,
        };
        let scope = InstrumentationScope::builder("sidekey").build();
        let mut timing = SpanTiming {
            trace: Some(&cx),
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
        };
        assert!(build(&record(None, 200), &timing, &scope).is_none());
        timing.trace = None;
        let mut r = record(None, 503);
        r.error = Some("credential_store_unavailable");
        let s = build(&r, &timing, &scope).unwrap();
        assert_eq!(s.name, "POST");
        assert_eq!(s.parent_span_id, SpanId::INVALID);
        assert_eq!(s.status, Status::error("credential_store_unavailable"));
    }
}
