//! How an [`Explanation`] is printed: text for people, one JSON object for scripts.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Explanation, RouteReason};

/// The text form: the routes tried, then the decision.
pub fn text(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "request: {} {}", e.method, e.url);
    if e.tried.is_empty() {
        let _ = writeln!(out, "routes tried: none");
    } else {
        let _ = writeln!(out, "routes tried:");
        for r in &e.tried {
            let _ = writeln!(
                out,
                "  [{}] {:<20} {}: {}",
                r.index,
                r.route,
                if r.matched { "match" } else { "no match" },
                r.why
            );
        }
    }
    let o = &e.outcome;
    let _ = writeln!(out, "decision: {}", o.decision_label());
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let rows = [
        ("route", dash(o.route.as_deref())),
        ("auth context", o.auth_context.to_string()),
        (
            "credential",
            match (&o.credential, o.source) {
                (Some(c), Some(s)) => format!("{c} ({s})"),
                _ => "-".into(),
            },
        ),
        ("inject", dash(o.inject.as_deref())),
        ("identity", o.identity.describe()),
        ("enforce", o.enforce.to_string()),
        ("tool", dash(o.tool.as_deref())),
        (
            "error",
            match (o.error, o.status) {
                (Some(c), Some(s)) if o.report => {
                    format!("{c} ({s}) if enforced; report mode forwards it without a credential")
                }
                (Some(c), Some(s)) => format!("{c} ({s})"),
                (Some(c), None) => c.to_string(),
                _ => "-".into(),
            },
        ),
    ];
    for (k, v) in rows {
        if k == "tool" && o.tool.is_none() {
            continue;
        }
        let _ = writeln!(out, "  {:<13} {v}", format!("{k}:"));
    }
    if !o.note.is_empty() {
        let _ = writeln!(out, "  {:<13} {}", "note:", o.note);
    }
    out
}

fn reason(r: &RouteReason) -> Value {
    json!({"index": r.index, "route": &*r.route, "matched": r.matched, "why": r.why})
}

/// The JSON form: one object with `decision`, `error`, `route`, `auth_context`,
/// `credential`, `source`, `reasons` and the rest of the outcome.
pub fn json(e: &Explanation) -> Value {
    let o = &e.outcome;
    json!({
        "method": e.method.as_str(),
        "url": e.url,
        "decision": o.decision.as_str(),
        "report": o.report,
        "error": o.error,
        "status": o.status,
        "route": o.route.as_deref(),
        "auth_context": o.auth_context,
        "credential": o.credential.as_deref(),
        "source": o.source,
        "inject": o.inject,
        "enforce": o.enforce.to_string(),
        "identity": {
            "user": o.identity.user,
            "groups": o.identity.groups,
            "verdict": o.identity.verdict.as_str(),
        },
        "tool": o.tool,
        "note": if o.note.is_empty() { Value::Null } else { Value::from(o.note.clone()) },
        "reasons": e.tried.iter().map(reason).collect::<Vec<_>>(),
    })
}
