//! MCP routes (SPEC "MCP servers (Streamable HTTP)"), against the official Python SDK:
//! its FastMCP server as the upstream (JSON and SSE answers) and its Streamable HTTP
//! client + `ClientSession` as the agent, plus raw JSON-RPC posts for exact shapes.
//!
//! * `raw`: refusals, argument rules, JWT allow lists, batches, bad bodies.
//! * `lists`: filtered `tools/list` in both modes with a cursor; tofu and file pins.
//! * `sdk`: the SDK client through the gateway, the forward proxy and HTTPS_PROXY
//!   interception; consent prompts.
//! * `observe`: audit entries, bounded metric labels, the secret sweep.
//! * `check`: `sidekey check` on `mcp:` blocks and `sidekey mcp hash`.

mod check;
mod lists;
mod observe;
mod raw;
mod sdk;

use crate::support::*;

/// The claw credential every MCP route here injects.
pub const TOKEN: &str = "mcp-claw-secret-5521";
/// Gateway path of the MCP endpoint.
pub const GW: &str = "/gh/mcp";

/// Rules shared by most tests: reads for anyone, `create_issue` for acme by alice,
/// deletes never; the default denies.
pub const RULES: &str = r#"      tools:
        - {name: "get_*"}
        - {name: auth_digest}
        - {name: mutate_description}
        - {name: create_issue, args: {"/owner": [acme]}, allow: {users: [alice]}}
        - {name: "delete_*", action: deny}
      default: deny
"#;

/// A config with the MCP route `gh` as a gateway (`/gh` -> the FastMCP server) and as
/// a forward-proxy route for `mcp.test`; `mcp_extra` goes into both `mcp:` blocks.
pub fn config(up: &McpServer, mcp_extra: &str) -> String {
    format!(
        "{head}default: deny\nupstreams:\n  mcp.test: {addr}\ncredentials:\n  bot: {{source: env, env: MCP_TOKEN}}\nroutes:\n  - name: gh\n    gateway: {{prefix: /gh, upstream: http://{addr}}}\n    auth: claw\n    credential: bot\n    mcp:\n{RULES}{mcp_extra}  - name: gh-proxy\n    match: {{host: mcp.test, path: \"/mcp*\"}}\n    auth: claw\n    credential: bot\n    mcp:\n{RULES}{mcp_extra}  - name: plain\n    gateway: {{prefix: /plain, upstream: http://{addr}}}\n    auth: claw\n    credential: bot\n",
        head = yaml_head("mcp-agent"),
        addr = up.addr,
    )
}

pub fn start(up: &McpServer, mcp_extra: &str) -> Sidekey {
    Sidekey::start(&config(up, mcp_extra), &[("MCP_TOKEN", TOKEN)])
}

/// A `tools/call` request body.
pub fn call(id: serde_json::Value, name: &str, args: serde_json::Value) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                       "params": {"name": name, "arguments": args}})
    .to_string()
}

/// A `tools/list` request body (with `cursor` when given).
pub fn list(id: u64, cursor: Option<&str>) -> String {
    let params = match cursor {
        Some(c) => serde_json::json!({"cursor": c}),
        None => serde_json::json!({}),
    };
    serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params})
        .to_string()
}

/// Assert a JSON-RPC refusal: HTTP 200, the header, code -32001, `data` naming the
/// code and the request id. Returns the JSON-RPC answer.
#[track_caller]
pub fn assert_refusal(resp: &Resp, id: serde_json::Value, code: &str) -> serde_json::Value {
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("x-sidekey-error"),
        Some(code),
        "{}",
        resp.text()
    );
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let v = resp.json();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], id, "{v}");
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert_eq!(v["error"]["data"]["error"], code, "{v}");
    assert_eq!(
        v["error"]["data"]["request_id"].as_str(),
        resp.header("x-sidekey-request-id"),
        "{v}"
    );
    v
}

/// The one JSON-RPC answer of a response (JSON body or SSE stream).
#[track_caller]
pub fn answer(resp: &Resp) -> serde_json::Value {
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut msgs = jsonrpc_messages(resp);
    assert_eq!(
        msgs.len(),
        1,
        "expected one JSON-RPC answer: {}",
        resp.text()
    );
    msgs.remove(0)
}

/// The text content of a `tools/call` result.
#[track_caller]
pub fn result_text(answer: &serde_json::Value) -> String {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text result in {answer}"))
        .to_string()
}

/// Hex SHA-256, for comparing with what the upstream saw.
pub fn sha256_hex(data: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
