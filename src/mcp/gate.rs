//! The request side of an MCP route: read the POST body (bounded by
//! `max_body_bytes`), classify it, and decide every `tools/call` in it. What was
//! learnt is kept in an [`McpCall`] on the exchange: the request ids (for JSON-RPC
//! refusals), the `tools/list` ids (for the response filter) and the audit entries.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;

use super::config::McpConfig;
use super::filter::ListFilter;
use super::jsonrpc::{self, Message};
use super::pin::PinStore;
use super::rules::{ToolRefusal, decide_tool};
use crate::audit::bounded;
use crate::config::RouteSpec;
use crate::error::ProxyError;
use crate::identity::Identity;
use crate::metrics::Metrics;

/// Longest tool name quoted in an error message.
const QUOTED_NAME: usize = 128;

/// One JSON-RPC message in the audit record's `mcp` list.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub method: Option<String>,
    pub tool: Option<String>,
    pub decision: &'static str,
}

/// What the request side learnt about one MCP POST.
#[derive(Debug, Clone)]
pub struct McpCall {
    pub batch: bool,
    /// Ids of the requests in the body, in order (what refusals answer).
    pub ids: Vec<Value>,
    /// Ids of its `tools/list` requests (whose answers are filtered).
    pub list_ids: Vec<Value>,
    pub entries: Vec<AuditEntry>,
    messages: Vec<Message>,
}

impl McpCall {
    fn new(batch: bool, messages: Vec<Message>) -> Self {
        let ids = messages
            .iter()
            .filter(|m| m.is_request())
            .filter_map(|m| m.id.clone())
            .collect();
        let list_ids = messages
            .iter()
            .filter(|m| m.is_tools_list())
            .filter_map(|m| m.id.clone())
            .collect();
        let entries = messages
            .iter()
            .map(|m| AuditEntry {
                method: m.method.as_deref().map(|s| bounded(s).into_owned()),
                tool: m.call.as_ref().map(|c| bounded(&c.name).into_owned()),
                decision: "allow",
            })
            .collect();
        McpCall {
            batch,
            ids,
            list_ids,
            entries,
            messages,
        }
    }

    /// The JSON-RPC form of a refusal of this POST (`None`: no request to answer).
    pub fn refusal<B: From<Bytes>>(
        &self,
        e: &ProxyError,
        request_id: &str,
    ) -> Option<http::Response<B>> {
        super::errors::response(e, request_id, &self.ids, self.batch)
    }

    /// The filter for this POST's answer, when it asked for a tool list and the route
    /// filters or pins lists.
    pub fn list_filter(
        &self,
        route: &RouteSpec,
        identity: Option<&Identity>,
        pins: &Arc<PinStore>,
        metrics: &Arc<Metrics>,
    ) -> Option<ListFilter> {
        let cfg = route.mcp.as_ref()?;
        if self.list_ids.is_empty() || !cfg.inspects_lists() {
            return None;
        }
        Some(ListFilter {
            config: cfg.clone(),
            identity: identity.cloned(),
            route: route.name.clone(),
            pins: pins.clone(),
            metrics: metrics.clone(),
            ids: self.list_ids.clone(),
        })
    }
}

/// Read and classify an MCP POST body. Refusals here are plain HTTP errors: without
/// a parsed body there is no id to answer.
pub async fn read(
    cfg: &McpConfig,
    parts: &mut http::request::Parts,
    body: Incoming,
    upgrade: bool,
) -> Result<(Bytes, McpCall), ProxyError> {
    if upgrade {
        return Err(ProxyError::BadRequest(
            "an MCP POST cannot ask for a protocol upgrade".into(),
        ));
    }
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ProxyError::BadRequest(
            "an MCP POST body must be application/json".into(),
        ));
    }
    let limit = cfg.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::BodyTooLarge(limit));
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ProxyError::BodyTooLarge(limit));
        }
        Err(_) => {
            return Err(ProxyError::BadRequest(
                "the request body ended early".into(),
            ));
        }
    };
    let classified = jsonrpc::classify(&bytes)
        .map_err(|e| ProxyError::BadRequest(format!("not a JSON-RPC message or batch: {e}")))?;
    let call = McpCall::new(classified.batch, classified.messages);
    if !call.list_ids.is_empty() && cfg.inspects_lists() {
        // The answer is read to filter it: it must come uncompressed.
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    Ok((bytes, call))
}

/// Decide every `tools/call` of the POST: the tool rules, then the pins. A batch with
/// any refused call is refused whole (the first refusal is the answer).
pub fn decide(
    call: &mut McpCall,
    route: &RouteSpec,
    identity: Option<&Identity>,
    identity_header: &http::HeaderName,
    pins: &PinStore,
    metrics: &Metrics,
) -> Result<(), ProxyError> {
    let Some(cfg) = &route.mcp else {
        return Ok(());
    };
    let mut first: Option<ProxyError> = None;
    for (msg, entry) in call.messages.iter().zip(call.entries.iter_mut()) {
        let Some(tool) = &msg.call else { continue };
        let d = decide_tool(&cfg.rules, identity, &tool.name, &tool.arguments);
        let quoted = bounded_name(&tool.name);
        let refusal = match d.refusal {
            Some(ToolRefusal::Denied) => Some(ProxyError::ToolDenied(format!(
                "tool `{quoted}` is refused by rule `{}` of route `{}`",
                d.rule, route.name
            ))),
            Some(ToolRefusal::IdentityRequired) => Some(ProxyError::IdentityRequired {
                header: identity_header.to_string(),
            }),
            Some(ToolRefusal::UserNotAllowed) => Some(ProxyError::UserNotAllowed {
                route: route.name.to_string(),
            }),
            None if pins.call_refused(&route.name, &cfg.pin, &tool.name) => {
                Some(ProxyError::ToolChanged(format!(
                    "tool `{quoted}` does not match its pin on route `{}`",
                    route.name
                )))
            }
            None => None,
        };
        let decision = if refusal.is_some() { "deny" } else { "allow" };
        entry.decision = decision;
        metrics.mcp_call(&route.name, &d.rule, decision);
        if first.is_none() {
            first = refusal;
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn bounded_name(name: &str) -> String {
    if name.len() <= QUOTED_NAME {
        return name.to_string();
    }
    let mut end = QUOTED_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}
