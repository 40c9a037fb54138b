//! What MCP calls leave behind: audit `mcp` entries (null on other requests), the
//! `sidekey_mcp_calls_total` counter with bounded labels (a hostile tool name is never
//! a label), and no secret anywhere (SPEC "MCP servers": audit, metric).

use serde_json::json;

use super::*;
use crate::prom;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_entries_and_metric_labels_never_carry_a_raw_tool_name() {
    let up = McpServer::start(McpMode::Json, true, false);
    let sk = start(&up, "");
    let hostile = format!("zz_{:016x}{{evil=\"1\"}}", fastrand::u64(..));
    let r = mcp_gateway_post(sk.proxy_addr, GW, &call(json!(1), &hostile, json!({})), &[]).await;
    assert_refusal(&r, json!(1), "tool_denied");
    let denied = sk.audit_for(&request_id(&r));
    assert_eq!(
        denied["mcp"],
        json!([{"method": "tools/call", "tool": hostile, "decision": "deny"}])
    );
    for n in [1, 2] {
        let r = mcp_gateway_post(
            sk.proxy_addr,
            GW,
            &call(json!(n), "get_issue", json!({"number": n})),
            &[],
        )
        .await;
        assert_eq!(result_text(&answer(&r)), format!("issue {n}"));
    }
    let r = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(3), "delete_repo", json!({"name": "x"})),
        &[],
    )
    .await;
    assert_refusal(&r, json!(3), "tool_denied");
    // Not a tools/call: audited, not counted.
    let _ = mcp_gateway_post(sk.proxy_addr, GW, &list(4, None), &[]).await;
    // A non-MCP request has `mcp: null`.
    let plain = gateway_request(sk.proxy_addr, "GET", "/plain/nothing", &[], empty()).await;
    let rec = sk.audit_for(&request_id(&plain));
    assert!(
        rec.get("mcp").is_some_and(serde_json::Value::is_null),
        "{rec}"
    );

    let text = http_get(sk.admin_addr, "/metrics").await.text();
    let m = prom::parse(&text);
    let calls = "sidekey_mcp_calls_total";
    assert_eq!(
        m.value(
            calls,
            &[("route", "gh"), ("rule", "default"), ("decision", "deny")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            calls,
            &[("route", "gh"), ("rule", "get_*"), ("decision", "allow")]
        ),
        2.0
    );
    assert_eq!(
        m.value(
            calls,
            &[("route", "gh"), ("rule", "delete_*"), ("decision", "deny")]
        ),
        1.0
    );
    assert_eq!(m.find(calls, &[]).len(), 3, "{}", m.dump(calls));
    let marker = &hostile[..19];
    assert!(
        !text.contains(marker),
        "a tool name from the request became a label:\n{text}"
    );
    let (code, out) = prom::promtool_check(&text);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_output_of_mcp_calls() {
    let up = McpServer::start(McpMode::Sse, true, false);
    let sk = start(&up, "      pin: tofu\n");
    let mut seen = String::new();
    let bodies = [
        call(json!(1), "auth_digest", json!({})),
        call(json!(2), "delete_repo", json!({"name": "x"})),
        list(3, None),
        "not json".to_string(),
        json!([{"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "get_issue", "arguments": {"number": 4}}},
               {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "nope"}}]).to_string(),
    ];
    for b in &bodies {
        // The client's own Authorization is replaced, whatever it says.
        let r = mcp_gateway_post(
            sk.proxy_addr,
            GW,
            b,
            &[("authorization", "Bearer client-supplied")],
        )
        .await;
        seen.push_str(&format!("{:?}{}", r.headers, r.text()));
    }
    let digest = mcp_gateway_post(sk.proxy_addr, GW, &bodies[0], &[]).await;
    assert_eq!(
        result_text(&answer(&digest)),
        sha256_hex(&format!("Bearer {TOKEN}"))
    );
    let metrics = http_get(sk.admin_addr, "/metrics").await.text();
    sk.wait_audit(bodies.len() + 1);
    for (what, text) in [
        ("responses", seen),
        ("stdout", sk.stdout_text()),
        ("stderr", sk.stderr_text()),
        ("metrics", metrics),
    ] {
        assert!(!text.contains(TOKEN), "the credential leaked into {what}");
    }
}
