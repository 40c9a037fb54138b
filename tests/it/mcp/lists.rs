//! `tools/list` answers: filtered for the caller in JSON and SSE with `nextCursor`
//! kept, and tool definitions pinned (`tofu`, pin files from `sidekey mcp hash`)
//! (SPEC "MCP servers": `filter_list`, `pin`).

use serde_json::{Value, json};

use super::*;
use crate::prom;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_filtered_per_caller_in_json_and_sse_keeping_the_cursor() {
    for mode in [McpMode::Json, McpMode::Sse] {
        let up = McpServer::start(mode, true, true);
        let sk = start(&up, "");
        let page1 = mcp_gateway_post(sk.proxy_addr, GW, &list(1, None), &[]).await;
        let want = if mode == McpMode::Sse {
            "text/event-stream"
        } else {
            "application/json"
        };
        assert!(
            page1
                .header("content-type")
                .is_some_and(|c| c.starts_with(want)),
            "{mode:?}: {:?}",
            page1.headers
        );
        let a = answer(&page1);
        // The server's page 1 is get_issue, create_issue; only alice may create issues.
        assert_eq!(tool_names(&a), ["get_issue"], "{mode:?}");
        assert_eq!(a["result"]["nextCursor"], "page-2", "{mode:?}");
        assert_eq!(a["id"], 1);
        let mine = mcp_gateway_post(
            sk.proxy_addr,
            GW,
            &list(2, None),
            &[("x-sidekey-user", "alice")],
        )
        .await;
        assert_eq!(
            tool_names(&answer(&mine)),
            ["get_issue", "create_issue"],
            "{mode:?}"
        );
        let page2 = mcp_gateway_post(sk.proxy_addr, GW, &list(3, Some("page-2")), &[]).await;
        let a = answer(&page2);
        assert_eq!(
            tool_names(&a),
            ["auth_digest", "mutate_description"],
            "{mode:?}: delete_repo is never listed"
        );
        assert!(
            a["result"].get("nextCursor").is_none_or(Value::is_null),
            "{a}"
        );
        // Other members of a listed tool are untouched.
        let listed = &answer(&mcp_gateway_post(sk.proxy_addr, GW, &list(4, None), &[]).await)["result"]
            ["tools"][0];
        assert_eq!(listed["description"], "Read one issue.");
        assert_eq!(listed["inputSchema"]["required"], json!(["number"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tofu_drops_a_tool_whose_description_changed() {
    let up = McpServer::start(McpMode::Sse, true, false);
    let sk = start(&up, "      pin: tofu\n");
    let names = |r: &Resp| tool_names(&answer(r));
    let before = mcp_gateway_post(sk.proxy_addr, GW, &list(1, None), &[]).await;
    assert!(names(&before).contains(&"get_issue".to_string()));
    let ok = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(2), "get_issue", json!({"number": 1})),
        &[],
    )
    .await;
    assert_eq!(result_text(&answer(&ok)), "issue 1");
    let m = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(3), "mutate_description", json!({})),
        &[],
    )
    .await;
    assert_eq!(result_text(&answer(&m)), "mutated");
    let after = mcp_gateway_post(sk.proxy_addr, GW, &list(4, None), &[]).await;
    let after = names(&after);
    assert!(
        !after.contains(&"get_issue".to_string()),
        "changed tool still listed: {after:?}"
    );
    assert!(after.contains(&"auth_digest".to_string()), "{after:?}");
    let refused = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(5), "get_issue", json!({"number": 1})),
        &[],
    )
    .await;
    assert_refusal(&refused, json!(5), "tool_changed");
    // A warning names the route and the tool; the counter records the change once.
    wait_until(
        std::time::Duration::from_secs(10),
        "tool change warning",
        || {
            sk.stderr_text().lines().any(|l| {
                l.contains("WARN")
                    && l.contains("\"route\":\"gh\"")
                    && l.contains("\"tool\":\"get_issue\"")
            })
        },
    );
    let _ = mcp_gateway_post(sk.proxy_addr, GW, &list(6, None), &[]).await;
    let metrics = http_get(sk.admin_addr, "/metrics").await.text();
    assert_eq!(
        prom::parse(&metrics).value("sidekey_mcp_tool_changes_total", &[("route", "gh")]),
        1.0
    );
}

/// The hash the contract defines, computed independently of sidekey.
fn contract_hash(tool: &Value) -> String {
    let mut picked = serde_json::Map::new();
    for k in ["name", "description", "inputSchema"] {
        if let Some(v) = tool.get(k) {
            picked.insert(k.into(), v.clone());
        }
    }
    // serde_json's default map is sorted and `to_string` is compact.
    format!("sha256:{}", sha256_hex(&Value::Object(picked).to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_file_from_sidekey_mcp_hash_drops_unpinned_and_changed_tools() {
    let up = McpServer::start(McpMode::Json, true, false);
    // The list straight from the server, as an operator would fetch it.
    let direct = gateway_request(
        up.addr,
        "POST",
        "/mcp",
        &MCP_POST_HEADERS,
        full(list(1, None)),
    )
    .await;
    let dir = ConfigDir::new();
    let answer_file = dir.write("answer.json", &direct.body);
    let (code, out, err) = Sidekey::run_args(&["mcp", "hash", answer_file.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let mut pins: Value = serde_json::from_str(&out).expect("mcp hash prints JSON");
    for tool in direct.json()["result"]["tools"].as_array().unwrap() {
        let name = tool["name"].as_str().unwrap();
        assert_eq!(
            pins["tools"][name].as_str(),
            Some(contract_hash(tool).as_str()),
            "{name}"
        );
    }
    // auth_digest is left unpinned.
    pins["tools"].as_object_mut().unwrap().remove("auth_digest");
    dir.write("pins.json", pins.to_string());
    let sk = Sidekey::start_in(
        dir,
        &config(&up, "      pin: {file: pins.json}\n"),
        &[("MCP_TOKEN", TOKEN)],
    );
    let listed = tool_names(&answer(
        &mcp_gateway_post(sk.proxy_addr, GW, &list(2, None), &[]).await,
    ));
    assert_eq!(listed, ["get_issue", "mutate_description"]);
    let r = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(3), "auth_digest", json!({})),
        &[],
    )
    .await;
    assert_refusal(&r, json!(3), "tool_changed");
    let r = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(4), "mutate_description", json!({})),
        &[],
    )
    .await;
    assert_eq!(result_text(&answer(&r)), "mutated");
    let listed = tool_names(&answer(
        &mcp_gateway_post(sk.proxy_addr, GW, &list(5, None), &[]).await,
    ));
    assert_eq!(
        listed,
        ["mutate_description"],
        "the changed get_issue is dropped"
    );
    let r = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(6), "get_issue", json!({"number": 1})),
        &[],
    )
    .await;
    assert_refusal(&r, json!(6), "tool_changed");
    let metrics = http_get(sk.admin_addr, "/metrics").await.text();
    assert_eq!(
        prom::parse(&metrics).value("sidekey_mcp_tool_changes_total", &[("route", "gh")]),
        2.0
    );
}
