//! Raw JSON-RPC posts for exact shapes: refusals carry the request's id, argument
//! rules, allow lists by JWT groups, whole-batch refusal, non-JSON-RPC and oversized
//! bodies (SPEC "MCP servers": tool rules, refusals, body limits).

use serde_json::json;

use super::*;
use crate::jwt_support::keys;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_jsonrpc_errors_carrying_the_request_id() {
    let up = McpServer::start(McpMode::Json, true, false);
    let sk = start(&up, "");
    // An `action: deny` rule.
    let resp = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(41), "delete_repo", json!({"name": "x"})),
        &[],
    )
    .await;
    let v = assert_refusal(&resp, json!(41), "tool_denied");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("delete_*"),
        "{v}"
    );
    let rec = sk.audit_for(&request_id(&resp));
    assert_eq!(
        (rec["decision"].as_str(), rec["error"].as_str()),
        (Some("deny"), Some("tool_denied"))
    );
    assert!(
        rec["upstream_ms"].is_null(),
        "a refused call must not go upstream: {rec}"
    );
    assert_eq!(
        rec["mcp"],
        json!([{"method": "tools/call", "tool": "delete_repo", "decision": "deny"}])
    );
    // No rule applies: the default denies; a string id is kept as it is.
    let resp = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!("req-7"), "unknown_tool", json!({})),
        &[],
    )
    .await;
    let v = assert_refusal(&resp, json!("req-7"), "tool_denied");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("default"),
        "{v}"
    );
    // An allowed call reaches the real server.
    let resp = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(3), "get_issue", json!({"number": 3})),
        &[],
    )
    .await;
    assert!(resp.header("x-sidekey-error").is_none(), "{}", resp.text());
    let a = answer(&resp);
    assert_eq!(
        (a["id"].clone(), result_text(&a)),
        (json!(3), "issue 3".to_string())
    );
    let rec = sk.audit_for(&request_id(&resp));
    assert_eq!(rec["decision"], "allow");
    assert!(rec["upstream_ms"].is_number(), "{rec}");
    assert_eq!(
        rec["mcp"],
        json!([{"method": "tools/call", "tool": "get_issue", "decision": "allow"}])
    );
    // Methods other than tools/call pass.
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}).to_string();
    let resp = mcp_gateway_post(sk.proxy_addr, GW, &ping, &[]).await;
    assert_eq!(answer(&resp)["id"], 9);
    assert_eq!(
        sk.audit_for(&request_id(&resp))["mcp"],
        json!([{"method": "ping", "tool": null, "decision": "allow"}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argument_rules_and_allow_lists_by_jwt_group() {
    let up = McpServer::start(McpMode::Json, true, false);
    let signer = keys::es256("k1");
    let dir = ConfigDir::new();
    dir.write("jwks.json", keys::jwks(&[&signer]));
    let identity = format!(
        "identity:\n  header: x-sidekey-user\n  mode: jwt\n  jwt: {{jwks_file: jwks.json, issuer: \"{}\", audiences: [\"{}\"], groups_claim: groups, algorithms: [ES256]}}\n",
        keys::ISSUER,
        keys::AUDIENCE
    );
    let cfg = config(&up, "").replace(
        "{name: create_issue, args: {\"/owner\": [acme]}, allow: {users: [alice]}}",
        "{name: create_issue, args: {\"/owner\": [acme, \"acme-*\"], \"/title\": [\"*\"]}, allow: {groups: [eng]}}",
    );
    let sk = Sidekey::start_in(dir, &format!("{cfg}{identity}"), &[("MCP_TOKEN", TOKEN)]);
    let eng = format!(
        "Bearer {}",
        keys::sign(&signer, &keys::claims("erin", &["eng"]))
    );
    let ops = format!(
        "Bearer {}",
        keys::sign(&signer, &keys::claims("otto", &["ops"]))
    );
    let post = |who: Option<String>, owner: &'static str| {
        let addr = sk.proxy_addr;
        async move {
            let body = call(
                json!(1),
                "create_issue",
                json!({"owner": owner, "title": "t"}),
            );
            match who {
                Some(w) => {
                    mcp_gateway_post(addr, GW, &body, &[("x-sidekey-user", w.as_str())]).await
                }
                None => mcp_gateway_post(addr, GW, &body, &[]).await,
            }
        }
    };
    let ok = post(Some(eng.clone()), "acme").await;
    assert_eq!(result_text(&answer(&ok)), "created t for acme");
    let ok = post(Some(eng.clone()), "acme-labs").await;
    assert_eq!(result_text(&answer(&ok)), "created t for acme-labs");
    assert_refusal(
        &post(Some(ops.clone()), "acme").await,
        json!(1),
        "user_not_allowed",
    );
    assert_refusal(&post(None, "acme").await, json!(1), "identity_required");
    // The argument rule does not apply to another owner: the default denies.
    assert_refusal(
        &post(Some(eng.clone()), "evil").await,
        json!(1),
        "tool_denied",
    );
    // A missing argument never matches.
    let body = call(json!(2), "create_issue", json!({"owner": "acme"}));
    let resp = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &body,
        &[("x-sidekey-user", eng.as_str())],
    )
    .await;
    assert_refusal(&resp, json!(2), "tool_denied");
    // Lists show each caller what it could call.
    let names = |resp: Resp| tool_names(&answer(&resp));
    let for_eng = names(
        mcp_gateway_post(
            sk.proxy_addr,
            GW,
            &list(5, None),
            &[("x-sidekey-user", eng.as_str())],
        )
        .await,
    );
    let for_ops = names(
        mcp_gateway_post(
            sk.proxy_addr,
            GW,
            &list(5, None),
            &[("x-sidekey-user", ops.as_str())],
        )
        .await,
    );
    assert!(for_eng.contains(&"create_issue".to_string()), "{for_eng:?}");
    assert!(
        !for_ops.contains(&"create_issue".to_string()),
        "{for_ops:?}"
    );
    for names in [&for_eng, &for_ops] {
        assert!(
            names.contains(&"get_issue".to_string()) && !names.contains(&"delete_repo".to_string()),
            "{names:?}"
        );
    }
    let rec = sk
        .audit_records()
        .into_iter()
        .find(|r| r["user"] == "otto")
        .expect("otto's record");
    assert_eq!(rec["groups"], json!(["ops"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_refused_call_is_refused_whole() {
    let up = McpServer::start(McpMode::Json, true, false);
    let sk = start(&up, "");
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_issue", "arguments": {"number": 1}}},
        {"jsonrpc": "2.0", "id": "two", "method": "tools/call", "params": {"name": "delete_repo", "arguments": {"name": "r"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"}
    ])
    .to_string();
    let resp = mcp_gateway_post(sk.proxy_addr, GW, &batch, &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-sidekey-error"), Some("tool_denied"));
    let answers = resp.json();
    let answers = answers
        .as_array()
        .expect("a batch is answered with an array");
    let ids: Vec<&serde_json::Value> = answers.iter().map(|a| &a["id"]).collect();
    assert_eq!(
        ids,
        [&json!(1), &json!("two")],
        "one answer per request, none for the notification"
    );
    for a in answers {
        assert_eq!(a["error"]["code"], -32001);
        assert_eq!(a["error"]["data"]["error"], "tool_denied");
    }
    let rec = sk.audit_for(&request_id(&resp));
    assert!(
        rec["upstream_ms"].is_null(),
        "nothing of a refused batch is forwarded: {rec}"
    );
    let decisions: Vec<&str> = rec["mcp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["allow", "deny", "allow"]);
    assert_eq!(rec["mcp"][2]["method"], "notifications/initialized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_jsonrpc_or_too_large_are_refused() {
    let up = McpServer::start(McpMode::Json, true, false);
    let sk = start(&up, "      max_body_bytes: 2KiB\n");
    for (body, ctype) in [
        ("hello", "application/json"),
        ("{\"jsonrpc\":\"2.0\"}", "application/json"),
        ("[]", "application/json"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            "application/json",
        ),
        (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, "text/plain"),
    ] {
        let resp = gateway_request(
            sk.proxy_addr,
            "POST",
            GW,
            &[("content-type", ctype)],
            full(body.to_string()),
        )
        .await;
        let v = assert_sidekey_error(&resp, 400, "bad_request");
        assert_eq!(
            v["request_id"].as_str(),
            resp.header("x-sidekey-request-id"),
            "{body}"
        );
    }
    let big = call(json!(1), "get_issue", json!({"pad": "x".repeat(4096)}));
    let resp = mcp_gateway_post(sk.proxy_addr, GW, &big, &[]).await;
    assert_sidekey_error(&resp, 413, "body_too_large");
    // Without a Content-Length (chunked), the limit holds while reading.
    let headers = [("content-type", "application/json")];
    let resp = gateway_request(sk.proxy_addr, "POST", GW, &headers, pattern_body(64 * 1024)).await;
    assert_sidekey_error(&resp, 413, "body_too_large");
    let rec = sk.audit_for(&request_id(&resp));
    assert_eq!(
        (rec["error"].as_str(), rec["status"].as_u64()),
        (Some("body_too_large"), Some(413))
    );
    assert!(rec["upstream_ms"].is_null());
    // A body within the limit passes.
    let fits = call(json!(2), "get_issue", json!({"number": 2}));
    assert_eq!(
        result_text(&answer(
            &mcp_gateway_post(sk.proxy_addr, GW, &fits, &[]).await
        )),
        "issue 2"
    );
}

/// SPEC "Explaining and rolling out policy": on a route with `enforce: report` a
/// `tools/call` the rules refuse goes out uncredentialed and is audited `report` with
/// the code enforcement would answer; a tool the rules allow still gets the credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_mode_forwards_refused_tool_calls_uncredentialed() {
    let up = McpServer::start(McpMode::Json, true, false);
    let yaml = config(&up, "")
        .replace(
            "    credential: bot\n    mcp:\n",
            "    credential: bot\n    enforce: report\n    mcp:\n",
        )
        .replace(
            "        - {name: auth_digest}\n",
            "        - {name: auth_digest, allow: {users: [alice]}}\n",
        );
    let sk = Sidekey::start(&yaml, &[("MCP_TOKEN", TOKEN)]);
    // Refused by policy (no identity for an allow-listed tool): forwarded without it.
    let resp = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(5), "auth_digest", json!({})),
        &[],
    )
    .await;
    assert!(resp.header("x-sidekey-error").is_none(), "{}", resp.text());
    assert_eq!(result_text(&answer(&resp)), sha256_hex(""));
    let rec = sk.audit_for(&request_id(&resp));
    assert_eq!(
        (rec["decision"].as_str(), rec["error"].as_str()),
        (Some("report"), Some("identity_required")),
        "{rec}"
    );
    assert!(rec["credential"].is_null(), "{rec}");
    assert_eq!(
        rec["mcp"],
        json!([{"method": "tools/call", "tool": "auth_digest", "decision": "report"}])
    );
    // An `action: deny` rule: reported as tool_denied, the call still reaches the server.
    let resp = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(6), "delete_repo", json!({"name": "x"})),
        &[],
    )
    .await;
    assert!(resp.header("x-sidekey-error").is_none(), "{}", resp.text());
    assert_eq!(answer(&resp)["id"], 6);
    let rec = sk.audit_for(&request_id(&resp));
    assert_eq!(
        (rec["decision"].as_str(), rec["error"].as_str()),
        (Some("report"), Some("tool_denied")),
        "{rec}"
    );
    // Allowed by the rules: injected as under enforcement.
    let resp = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(7), "get_issue", json!({"number": 7})),
        &[],
    )
    .await;
    let rec = sk.audit_for(&request_id(&resp));
    assert_eq!(rec["decision"], "allow", "{rec}");
    assert_eq!(rec["credential"], "bot", "{rec}");
    assert!(
        !sk.all_output().contains(TOKEN),
        "the credential leaked into the output"
    );
}
