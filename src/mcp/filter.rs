//! The response side of an MCP route: `tools/list` answers filtered for this caller
//! and checked against the pins, in a JSON body or inside an SSE stream.
//!
//! JSON answers are read whole (bounded) and rewritten; SSE streams go through
//! [`super::sse`], event by event. `nextCursor` and every other member are kept; only
//! `result.tools` shrinks.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Response, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::config::McpConfig;
use super::pin::{PinStore, tool_hash};
use super::rules::tool_visible;
use crate::audit::bounded;
use crate::error::ProxyError;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::proxy::forward::UpstreamBody;

/// Largest JSON answer (or single SSE event) read to be filtered.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Everything needed to filter the answers to one POST's `tools/list` requests.
pub struct ListFilter {
    pub config: Arc<McpConfig>,
    pub identity: Option<Identity>,
    pub route: Arc<str>,
    pub pins: Arc<PinStore>,
    pub metrics: Arc<Metrics>,
    /// Ids of the `tools/list` requests whose answers are filtered.
    pub ids: Vec<Value>,
}

impl ListFilter {
    /// Filter a JSON-RPC answer (one response or a batch) in place; `true` if changed.
    pub fn answer(&self, v: &mut Value) -> bool {
        match v {
            Value::Array(items) => items.iter_mut().fold(false, |acc, m| self.message(m) | acc),
            m => self.message(m),
        }
    }

    fn message(&self, msg: &mut Value) -> bool {
        if !msg.get("id").is_some_and(|id| self.ids.contains(id)) {
            return false;
        }
        let Some(tools) = msg
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let listed: Vec<(&str, String)> = tools
            .iter()
            .map(|t| {
                (
                    t.get("name").and_then(Value::as_str).unwrap_or(""),
                    tool_hash(t),
                )
            })
            .collect();
        let verdicts = self.pins.observe(&self.route, &self.config.pin, &listed);
        let keep: Vec<bool> = listed
            .iter()
            .zip(&verdicts)
            .map(|((name, _), v)| {
                if v.newly_changed {
                    tracing::warn!(route = %self.route, tool = %bounded(name), "MCP tool definition does not match its pin; dropped from lists and refused on call");
                    self.metrics.mcp_tool_changed(&self.route);
                }
                let named = !name.is_empty();
                let visible = !self.config.filter_list || tool_visible(&self.config.rules, self.identity.as_ref(), name);
                named && v.keep && visible
            })
            .collect();
        drop(listed);
        if keep.iter().all(|k| *k) {
            return false;
        }
        let mut flags = keep.into_iter();
        tools.retain(|_| flags.next().unwrap_or(false));
        true
    }
}

/// Apply `filter` to an upstream answer (nothing to do without one).
pub async fn response(
    resp: Response<UpstreamBody>,
    filter: Option<ListFilter>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let Some(filter) = filter else {
        return Ok(resp);
    };
    let media = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let sse = media == "text/event-stream";
    if !(sse || media == "application/json") {
        return Ok(resp);
    }
    let encoded = resp
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(ProxyError::Upstream("the MCP server compressed a tools/list answer; sidekey asked for identity encoding and cannot filter it".into()));
    }
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if sse {
        let body = super::sse::SseFilter::new(body, filter).boxed_unsync();
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = read_bounded(body).await?;
    let bytes = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => match filter.answer(&mut v) {
            true => Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
            false => bytes,
        },
        Err(_) if !parts.status.is_success() => bytes,
        Err(_) => {
            return Err(ProxyError::Upstream(
                "the MCP server's tools/list answer is not JSON".into(),
            ));
        }
    };
    let body = Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

/// Read a whole answer, up to [`MAX_ANSWER_BYTES`]. (Written out rather than with
/// `Limited`: its `Into<BoxError>` bound on a boxed body makes the request future's
/// `Send` depend on a higher-ranked lifetime the compiler cannot prove.)
async fn read_bounded(mut body: UpstreamBody) -> Result<Bytes, ProxyError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            ProxyError::Upstream("the MCP server's tools/list answer failed".into())
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_ANSWER_BYTES {
                return Err(ProxyError::Upstream(
                    "the MCP server's tools/list answer is too large to filter".into(),
                ));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::mcp::config::{PinMode, ToolDefault, ToolRules};

    pub(crate) fn filter(ids: Vec<Value>) -> ListFilter {
        let rules = ToolRules {
            rules: vec![crate::mcp::config::ToolRule {
                name: "get_*".parse().unwrap(),
                args: vec![],
                action: crate::mcp::config::ToolAction::Allow,
                allow: None,
            }],
            default: ToolDefault::Deny,
        };
        ListFilter {
            config: Arc::new(McpConfig {
                rules,
                filter_list: true,
                pin: PinMode::Off,
                max_body_bytes: 1024,
            }),
            identity: None,
            route: Arc::from("r"),
            pins: Arc::default(),
            metrics: Arc::new(Metrics::new().unwrap()),
            ids,
        }
    }

    pub(crate) fn list_answer(id: u64) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [{"name": "get_a"}, {"name": "drop_b"}], "nextCursor": "c2"}})
    }

    #[test]
    fn json_answers_keep_allowed_tools_and_the_cursor() {
        let f = filter(vec![json!(1)]);
        let mut v = list_answer(1);
        assert!(f.answer(&mut v));
        assert_eq!(
            v["result"],
            json!({"tools": [{"name": "get_a"}], "nextCursor": "c2"})
        );
        let mut other = list_answer(2);
        assert!(!f.answer(&mut other), "another id is not touched");
        let mut batch = json!([list_answer(2), list_answer(1)]);
        assert!(f.answer(&mut batch));
        assert_eq!(
            batch[0]["result"]["tools"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(
            batch[1]["result"]["tools"].as_array().map(Vec::len),
            Some(1)
        );
    }
}
