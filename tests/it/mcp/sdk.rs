//! The official SDK's client (`streamable_http_client` + `ClientSession`) as the agent,
//! through sidekey as a gateway base URL and as a forward proxy, against FastMCP in
//! JSON and SSE modes; and the consent prompt (-32042) as the SDK parses it
//! (SPEC "MCP servers": refusals, consent prompts; "Ways in").

use serde_json::{Value, json};

use super::*;

/// Run the SDK client; returns its JSON report.
fn sdk(url: &str, proxy: Option<&str>, user: Option<&str>, calls: &[(&str, Value)]) -> Value {
    sdk_with(url, proxy, user, calls, &[])
}

fn sdk_with(
    url: &str,
    proxy: Option<&str>,
    user: Option<&str>,
    calls: &[(&str, Value)],
    extra: &[&str],
) -> Value {
    let mut args: Vec<String> = vec!["--url".into(), url.into(), "--list".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    if let Some(p) = proxy {
        args.extend(["--proxy".into(), p.into()]);
    }
    if let Some(u) = user {
        args.extend(["--user".into(), u.into()]);
    }
    for (name, a) in calls {
        args.extend(["--call".into(), (*name).into(), a.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_py_json("mcp_client.py", &args, &[])
}

fn assert_session(report: &Value, what: &str) {
    assert_eq!(
        report["server"], "sidekey-test-upstream",
        "{what}: {report}"
    );
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        tools,
        ["get_issue", "auth_digest", "mutate_description"],
        "{what}"
    );
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(
        calls[0],
        json!({"name": "get_issue", "ok": true, "text": "issue 7"}),
        "{what}"
    );
    assert_eq!(calls[1]["ok"], false, "{what}: {report}");
    assert_eq!(calls[1]["code"], -32001, "{what}: {report}");
    assert_eq!(calls[1]["data"]["error"], "tool_denied", "{what}: {report}");
    // The server saw sidekey's credential, never the client's.
    assert_eq!(
        calls[2]["text"].as_str(),
        Some(sha256_hex(&format!("Bearer {TOKEN}")).as_str()),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_client_works_through_the_gateway_and_the_forward_proxy() {
    for mode in [McpMode::Json, McpMode::Sse] {
        let up = McpServer::start(mode, false, false);
        let sk = start(&up, "");
        let calls = [
            ("get_issue", json!({"number": 7})),
            ("delete_repo", json!({"name": "prod"})),
            ("auth_digest", json!({})),
        ];
        let gw = sdk(&format!("{}{GW}", sk.proxy_url()), None, None, &calls);
        assert_session(&gw, &format!("{mode:?} gateway"));
        let fwd = sdk("http://mcp.test/mcp", Some(&sk.proxy_url()), None, &calls);
        assert_session(&fwd, &format!("{mode:?} forward proxy"));
        // The session's DELETE (and any GET stream) pass on the route's own decision.
        let is_delete = |r: &Value| r["method"] == "DELETE" && r["route"] == "gh-proxy";
        wait_until(
            std::time::Duration::from_secs(10),
            "the session's DELETE audited",
            || sk.audit_records().iter().any(is_delete),
        );
        let records = sk.audit_records();
        let delete = records
            .iter()
            .find(|r| is_delete(r))
            .expect("DELETE record");
        assert_eq!(delete["decision"], "allow");
        assert!(delete["mcp"].is_null(), "{delete}");
        let posts: Vec<&Value> = records.iter().filter(|r| r["method"] == "POST").collect();
        assert!(posts.iter().all(|r| r["mcp"].is_array()), "{posts:?}");
        assert!(!sk.stdout_text().contains(TOKEN) && !sk.stderr_text().contains(TOKEN));
        assert!(!gw.to_string().contains(TOKEN) && !fwd.to_string().contains(TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_client_works_through_https_proxy_interception() {
    let dir = ConfigDir::new();
    let upstream_ca = TestCa::new("mcp upstream CA");
    let ca_path = dir.write("upstream-ca.pem", &upstream_ca.pem);
    let (cert, key) = write_leaf_pem(&upstream_ca, &["mcp.test"], dir.path());
    let up = McpServer::start_tls(McpMode::Sse, &cert, &key);
    let ca = SidekeyCa::init(dir.path());
    let cfg = format!(
        "{head}default: deny\n{tls}upstreams:\n  mcp.test: {addr}\ncredentials:\n  bot: {{source: env, env: MCP_TOKEN}}\nroutes:\n  - name: gh-proxy\n    match: {{host: mcp.test, path: \"/mcp*\"}}\n    auth: claw\n    credential: bot\n    mcp:\n{RULES}",
        head = yaml_head("mcp-agent"),
        tls = ca.tls_yaml(&[&ca_path]),
        addr = up.addr,
    );
    let sk = Sidekey::start_in(dir, &cfg, &[("MCP_TOKEN", TOKEN)]);
    let calls = [
        ("get_issue", json!({"number": 7})),
        ("delete_repo", json!({"name": "prod"})),
        ("auth_digest", json!({})),
    ];
    let ca_arg = ca.cert.to_str().unwrap();
    let report = sdk_with(
        "https://mcp.test/mcp",
        Some(&sk.proxy_url()),
        None,
        &calls,
        &["--ca", ca_arg],
    );
    assert_session(&report, "HTTPS_PROXY interception");
    let rec = sk
        .audit_records()
        .into_iter()
        .find(|r| r["method"] == "POST")
        .expect("a POST record");
    assert_eq!(
        (rec["scheme"].as_str(), rec["host"].as_str()),
        (Some("https"), Some("mcp.test"))
    );
    assert!(!sk.stdout_text().contains(TOKEN) && !sk.stderr_text().contains(TOKEN));
}

fn assistant_config(up: &McpServer, connect_url: &str) -> String {
    format!(
        "{head}default: deny\ncredentials:\n  gh-user:\n    source: file\n    file: \"users/{{user}}/gh.txt\"\n{connect_url}routes:\n  - name: gh\n    gateway: {{prefix: /gh, upstream: http://{addr}}}\n    auth: assistant\n    credential: gh-user\n    mcp:\n{RULES}",
        head = yaml_head("mcp-agent"),
        addr = up.addr,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_credential_is_a_url_elicitation_the_sdk_parses() {
    let up = McpServer::start(McpMode::Sse, false, false);
    let dir = ConfigDir::new();
    dir.write("users/alice/gh.txt", "alice-gh-secret-3391\n");
    let cfg = assistant_config(
        &up,
        "    connect_url: \"https://connect.example.test/gh?user={user}\"\n",
    );
    let sk = Sidekey::start_in(dir, &cfg, &[]);
    let url = format!("{}{GW}", sk.proxy_url());
    // Bob has no credential: initialize is answered with the consent prompt.
    let bob = sdk(&url, None, Some("bob"), &[]);
    let e = &bob["init_error"];
    assert_eq!(e["code"], -32042, "{bob}");
    assert_eq!(e["data"]["error"], "credential_missing", "{bob}");
    let el = &e["elicitations"];
    assert_eq!(el.as_array().map(Vec::len), Some(1), "{bob}");
    assert_eq!(el[0]["mode"], "url");
    assert_eq!(el[0]["url"], "https://connect.example.test/gh?user=bob");
    assert!(el[0]["id"].as_str().is_some_and(|s| !s.is_empty()), "{bob}");
    assert!(
        el[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("gh-user")),
        "{bob}"
    );
    // The raw shape: HTTP 200, the header, the request's id.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let resp = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &init.to_string(),
        &[("x-sidekey-user", "bob")],
    )
    .await;
    assert_eq!(
        (resp.status, resp.header("x-sidekey-error")),
        (200, Some("credential_missing"))
    );
    let v = resp.json();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(0), json!(-32042))
    );
    assert_eq!(
        v["error"]["data"]["elicitations"][0]["elicitationId"].as_str(),
        resp.header("x-sidekey-request-id")
    );
    // Alice has one: her session works with her credential.
    let alice = sdk(&url, None, Some("alice"), &[("auth_digest", json!({}))]);
    assert_eq!(
        alice["calls"][0]["text"].as_str(),
        Some(sha256_hex("Bearer alice-gh-secret-3391").as_str()),
        "{alice}"
    );
    assert!(
        !sk.stdout_text().contains("alice-gh-secret")
            && !sk.stderr_text().contains("alice-gh-secret")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_connect_url_a_missing_credential_is_a_plain_jsonrpc_refusal() {
    let up = McpServer::start(McpMode::Json, true, false);
    let sk = Sidekey::start(&assistant_config(&up, ""), &[]);
    let resp = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(8), "get_issue", json!({"number": 1})),
        &[("x-sidekey-user", "carol")],
    )
    .await;
    let v = assert_refusal(&resp, json!(8), "credential_missing");
    assert_eq!(v["error"]["data"]["credential"], "gh-user");
    // The route's own refusals come first: an assistant route without identity.
    let resp = mcp_gateway_post(
        sk.proxy_addr,
        GW,
        &call(json!(9), "get_issue", json!({"number": 1})),
        &[],
    )
    .await;
    assert_refusal(&resp, json!(9), "identity_required");
}
