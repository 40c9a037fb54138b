//! The MCP stage of an explanation: `--tool NAME [--args JSON]` evaluated by the very
//! function the proxy applies to every `tools/call` ([`crate::mcp::rules::decide_tool`]).

use serde_json::Value;

use crate::config::{Enforce, RouteSpec};
use crate::identity::Identity;
use crate::mcp::rules::decide_tool;

/// What the tool rules said: a line for the outcome and, when refused, the code.
pub(super) struct ToolStage {
    pub line: String,
    pub refusal: Option<&'static str>,
}

/// Evaluate `tool` on the deciding route; `None` when no tool was asked about.
/// `route_allows` is false when the route already refused the call (the tool rules are
/// then not reached, as on the proxy).
pub(super) fn stage(
    tool: Option<&(String, Value)>,
    route: Option<&RouteSpec>,
    identity: Option<&Identity>,
    route_allows: bool,
) -> Option<ToolStage> {
    let (name, args) = tool?;
    let Some(mcp) = route.and_then(|r| r.mcp.as_ref()) else {
        return Some(ToolStage {
            line: format!("{name}: the route has no mcp: block, so tools are not inspected"),
            refusal: None,
        });
    };
    if !route_allows {
        return Some(ToolStage {
            line: format!("{name}: not reached (the route refuses the call first)"),
            refusal: None,
        });
    }
    let d = decide_tool(&mcp.rules, identity, name, args);
    let rule = match d.rule_index {
        Some(i) => format!("rule {i} `{}`", d.rule),
        None => "the default".to_string(),
    };
    let line = match d.error_code() {
        None => format!("{name}: allowed by {rule}"),
        Some(code) => format!("{name}: refused by {rule} ({code}, a JSON-RPC error)"),
    };
    Some(ToolStage {
        line,
        refusal: d.error_code(),
    })
}

/// Whether a tool refusal is only reported (the route rolls out in report mode).
pub(super) fn reported(route: Option<&RouteSpec>) -> bool {
    route.is_some_and(|r| r.enforce == Enforce::Report)
}
