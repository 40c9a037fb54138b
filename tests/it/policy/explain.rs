//! `sidekey explain` against the real binary: allow, deny, the default, method and
//! path mismatches, allow lists, report mode and MCP tool flags, in text and JSON,
//! with exit codes; and a table of requests on which explain and the running proxy
//! (its audit records) agree.

use serde_json::Value;

use crate::support::*;

const BOT: &str = "bot-secret-explain-4d2a";

fn config(default: &str, listen: &str, up: &str) -> String {
    format!(
        "version: 1\nagent: explain-agent\nlisten: {listen}\nadmin_listen: 127.0.0.1:0\ndefault: {default}\nupstreams:\n  slack.test: {up}\n  hr.test: {up}\n  me.test: {up}\n  open.test: {up}\n  other.test: {up}\n\
credentials:\n  bot: {{source: env, env: BOT_TOKEN}}\n  mine: {{source: file, file: 'tokens/{{user}}'}}\n\
routes:\n\
  - {{name: slack-read, match: {{host: slack.test, methods: [GET]}}, auth: claw, credential: bot}}\n\
  - {{name: slack-post, match: {{host: slack.test, path: \"/api/chat.*\", methods: [POST]}}, auth: claw, credential: bot, inject: {{header: X-Api-Key}}}}\n\
  - {{name: no-admin, match: {{host: hr.test, path: \"/admin/*\"}}, auth: deny}}\n\
  - {{name: hr, match: {{host: hr.test}}, auth: claw, credential: bot, allow: {{users: [alice]}}}}\n\
  - {{name: me, match: {{host: me.test}}, auth: assistant, credential: mine}}\n\
  - {{name: open, match: {{host: open.test}}, auth: passthrough}}\n\
  - {{name: gw, gateway: {{prefix: /slack, upstream: 'http://slack.test/api'}}, auth: claw, credential: bot}}\n"
    )
}

/// `sidekey explain --config PATH ARGS...` -> (exit code, stdout, stderr).
fn explain(dir: &ConfigDir, args: &[&str]) -> (i32, String, String) {
    let cfg = dir.config_path();
    let mut all = vec!["explain", "--config", cfg.to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    Sidekey::run_args(&all, &[("BOT_TOKEN", BOT)])
}

fn explain_json(dir: &ConfigDir, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let (code, out, err) = explain(dir, &a);
    let v = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("explain --json printed no JSON ({e}): {out}\n{err}"));
    (code, v)
}

fn dir_with(default: &str) -> ConfigDir {
    let dir = ConfigDir::new();
    dir.write_config(&config(default, "127.0.0.1:15080", "127.0.0.1:9"));
    dir.write("tokens/alice", "alice-secret-explain-7f1b");
    dir
}

#[test]
fn allow_deny_default_and_mismatches_in_text_and_json() {
    let dir = dir_with("deny");
    // allow: the second route; the first fails on its method.
    let (code, out, _) = explain(&dir, &["POST", "http://slack.test/api/chat.postMessage"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("[0] slack-read") && out.contains("method GET does not match"),
        "{out}"
    );
    assert!(
        out.contains("[1] slack-post") && out.contains("path /api/chat.* matches"),
        "{out}"
    );
    assert!(out.contains("decision: allow"), "{out}");
    assert!(
        out.contains("bot (env)") && out.contains("x-api-key: <token>"),
        "{out}"
    );
    let (code, v) = explain_json(&dir, &["POST", "http://slack.test/api/chat.postMessage"]);
    assert_eq!(code, 0);
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["route"], "slack-post");
    assert_eq!(v["auth_context"], "system_service");
    assert_eq!(
        (v["credential"].as_str(), v["source"].as_str()),
        (Some("bot"), Some("env"))
    );
    assert!(v["error"].is_null());
    let reasons = v["reasons"].as_array().expect("reasons");
    assert_eq!(reasons.len(), 2);
    assert_eq!(reasons[0]["matched"], false);
    // path mismatch: POST elsewhere on slack.test matches no route -> the default.
    let (code, v) = explain_json(&dir, &["POST", "http://slack.test/api/files.upload"]);
    assert_eq!(code, 1);
    assert_eq!(
        (v["decision"].as_str(), v["error"].as_str()),
        (Some("deny"), Some("route_denied"))
    );
    assert!(v["route"].is_null());
    assert!(
        v["reasons"][1]["why"]
            .as_str()
            .unwrap_or_default()
            .contains("path /api/chat.* does not match")
    );
    // auth: deny
    let (code, out, _) = explain(&dir, &["GET", "http://hr.test/admin/users"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[2] no-admin") && out.contains("route_denied (403)"),
        "{out}"
    );
    // default passthrough: allowed, no credential.
    let pass = dir_with("passthrough");
    let (code, v) = explain_json(&pass, &["GET", "http://other.test/x"]);
    assert_eq!(code, 0);
    assert_eq!(
        (v["decision"].as_str(), v["auth_context"].as_str()),
        (Some("allow"), Some("none"))
    );
    assert!(v["credential"].is_null() && v["route"].is_null());
    // A gateway URL (origin form) decided by its prefix.
    let (code, v) = explain_json(&dir, &["GET", "/slack/chat.postMessage"]);
    assert_eq!(code, 0);
    assert_eq!(v["route"], "gw");
    let (_, out, err) = explain(&dir, &["POST", "http://slack.test/api/chat.x"]);
    assert!(
        !out.contains(BOT) && !err.contains(BOT),
        "explain never resolves a secret"
    );
}

#[test]
fn allow_lists_identity_and_report_mode() {
    let dir = dir_with("deny");
    let (code, v) = explain_json(&dir, &["GET", "http://hr.test/people"]);
    assert_eq!((code, v["error"].as_str()), (1, Some("identity_required")));
    assert_eq!(v["identity"]["verdict"], "missing");
    let (code, v) = explain_json(
        &dir,
        &[
            "--user",
            "bob",
            "--groups",
            "eng,ops",
            "GET",
            "http://hr.test/people",
        ],
    );
    assert_eq!((code, v["error"].as_str()), (1, Some("user_not_allowed")));
    assert_eq!(v["identity"]["groups"], serde_json::json!(["eng", "ops"]));
    let (code, v) = explain_json(&dir, &["--user", "alice", "GET", "http://hr.test/people"]);
    assert_eq!(
        (code, v["decision"].as_str(), v["credential"].as_str()),
        (0, Some("allow"), Some("bot"))
    );
    let (code, v) = explain_json(&dir, &["--user", "alice", "GET", "http://me.test/notes"]);
    assert_eq!(
        (code, v["auth_context"].as_str(), v["source"].as_str()),
        (0, Some("user_delegated"), Some("file"))
    );
    // Report mode: the same refusal, forwarded without a credential.
    let report = ConfigDir::new();
    report.write_config(&config("report", "127.0.0.1:15080", "127.0.0.1:9").replace(
        "allow: {users: [alice]}}",
        "allow: {users: [alice]}, enforce: report}",
    ));
    let (code, v) = explain_json(&report, &["--user", "bob", "GET", "http://hr.test/people"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (v["report"].as_bool(), v["error"].as_str()),
        (Some(true), Some("user_not_allowed"))
    );
    assert!(
        v["credential"].is_null(),
        "report mode injects nothing: {v}"
    );
    let (code, out, _) = explain(&report, &["GET", "http://other.test/"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("decision: report") && out.contains("route_denied"),
        "{out}"
    );
}

#[test]
fn bad_arguments_and_configs_exit_2_and_tool_flags_are_checked() {
    let dir = dir_with("deny");
    for args in [
        vec!["GET", "not a url"],
        vec!["GET", "ftp://slack.test/x"],
        vec!["G(T", "http://slack.test/"],
        vec![
            "--tool",
            "create_issue",
            "--args",
            "{not json",
            "POST",
            "http://me.test/mcp",
        ],
        vec![
            "--tool",
            "create_issue",
            "--args",
            "[1,2]",
            "POST",
            "http://me.test/mcp",
        ],
        vec!["--args", "{}", "POST", "http://me.test/mcp"],
        vec!["--groups", "eng", "GET", "http://hr.test/"],
    ] {
        let (code, out, err) = explain(&dir, &args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, v) = explain_json(
        &dir,
        &[
            "--user",
            "alice",
            "--tool",
            "get_issue",
            "--args",
            "{\"owner\":\"acme\"}",
            "POST",
            "http://me.test/mcp",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert!(
        v["tool"]
            .as_str()
            .unwrap_or_default()
            .starts_with("get_issue"),
        "{v}"
    );
    let bad = ConfigDir::new();
    bad.write_config(
        &config("deny", "127.0.0.1:15080", "127.0.0.1:9")
            .replace("auth: passthrough", "auth: passthru"),
    );
    let (code, _, err) = explain(&bad, &["GET", "http://open.test/"]);
    assert_eq!(code, 2);
    assert!(err.contains("routes[5].auth"), "{err}");
}

/// (method, url, user) of the table both explain and the proxy decide.
const TABLE: &[(&str, &str, Option<&str>)] = &[
    ("GET", "http://slack.test/api/conversations.list", None),
    (
        "POST",
        "http://slack.test/api/chat.postMessage",
        Some("alice"),
    ),
    ("POST", "http://slack.test/api/files.upload", None),
    ("DELETE", "http://slack.test/api/chat.delete", Some("bob")),
    ("GET", "http://hr.test/admin/users", Some("alice")),
    ("GET", "http://hr.test/people", None),
    ("GET", "http://hr.test/people", Some("bob")),
    ("GET", "http://hr.test/people", Some("alice")),
    ("GET", "http://me.test/notes", Some("alice")),
    ("GET", "http://me.test/notes", None),
    ("PUT", "http://open.test/anything", None),
    ("GET", "http://other.test/", Some("alice")),
    ("GET", "/slack/chat.postMessage", None),
    ("GET", "/nothing/here", None),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_the_running_proxy_agree_on_a_table_of_requests() {
    let up = Upstream::start();
    let listen = "127.0.0.1:0";
    for default in ["deny", "report"] {
        let dir = ConfigDir::new();
        dir.write("tokens/alice", "alice-secret-explain-7f1b");
        let yaml = config(default, listen, &up.host_port());
        dir.write_config(&yaml);
        let mut expected = Vec::new();
        for (method, url, user) in TABLE {
            let mut args = vec![];
            if let Some(u) = user {
                args.extend(["--user", u]);
            }
            args.extend([*method, *url]);
            let (code, v) = explain_json(&dir, &args);
            expected.push((code, v));
        }
        let sk = Sidekey::start_in(dir, &yaml, &[("BOT_TOKEN", BOT)]);
        for ((method, url, user), (code, want)) in TABLE.iter().zip(&expected) {
            let headers: Vec<(&str, &str)> = user.iter().map(|u| ("x-sidekey-user", *u)).collect();
            let resp = if url.starts_with('/') {
                gateway_request(sk.proxy_addr, method, url, &headers, empty()).await
            } else {
                proxy_request(sk.proxy_addr, method, url, &headers, empty()).await
            };
            let rec = sk.audit_for(&request_id(&resp));
            let ctx = format!(
                "default {default}: {method} {url} {user:?}\nexplain: {want}\naudit: {rec}"
            );
            let decision = match rec["decision"].as_str() {
                Some("report") => "allow",
                other => other.unwrap_or_default(),
            };
            assert_eq!(Some(decision), want["decision"].as_str(), "{ctx}");
            assert_eq!(*code, if decision == "allow" { 0 } else { 1 }, "{ctx}");
            assert_eq!(rec["error"], want["error"], "{ctx}");
            assert_eq!(rec["route"], want["route"], "{ctx}");
            assert_eq!(rec["auth_context"], want["auth_context"], "{ctx}");
            assert_eq!(rec["decision"] == "report", want["report"] == true, "{ctx}");
            if want["decision"] == "allow" {
                assert_eq!(rec["credential"], want["credential"], "{ctx}");
                assert!(resp.status < 400, "{ctx}");
            } else {
                assert_eq!(Some(resp.status as u64), want["status"].as_u64(), "{ctx}");
            }
        }
    }
}

/// `--tool`/`--args` on a route with an `mcp:` block run the proxy's own tool decision:
/// a rule by name, an argument pointer, an allow list, the default, and report mode.
#[test]
fn tool_flags_are_decided_by_the_routes_tool_rules() {
    let dir = ConfigDir::new();
    let mcp = "    mcp:\n      tools:\n        - {name: \"get_*\"}\n        - {name: create_issue, args: {\"/owner\": [acme]}, allow: {groups: [eng]}}\n        - {name: \"delete_*\", action: deny}\n      default: deny\n";
    let yaml = format!(
        "version: 1\nagent: explain-agent\nlisten: 127.0.0.1:15080\nadmin_listen: 127.0.0.1:0\ndefault: deny\nupstreams:\n  gh.test: 127.0.0.1:9\n  rep.test: 127.0.0.1:9\ncredentials:\n  bot: {{source: env, env: BOT_TOKEN}}\nroutes:\n  - name: gh\n    match: {{host: gh.test}}\n    auth: claw\n    credential: bot\n{mcp}  - name: rep\n    match: {{host: rep.test}}\n    auth: claw\n    credential: bot\n    enforce: report\n{mcp}"
    );
    dir.write_config(&yaml);
    let ask = |user: &[&str], tool: &str, args: &str, host: &str| {
        let url = format!("http://{host}/mcp");
        let mut a: Vec<&str> = user.to_vec();
        a.extend(["--tool", tool, "--args", args, "POST", url.as_str()]);
        explain_json(&dir, &a)
    };
    let (code, v) = ask(&[], "get_issue", "{}", "gh.test");
    assert_eq!((code, v["decision"].as_str()), (0, Some("allow")), "{v}");
    assert_eq!(v["credential"], "bot", "{v}");
    let (code, v) = ask(&[], "delete_repo", "{}", "gh.test");
    assert_eq!((code, v["error"].as_str()), (1, Some("tool_denied")), "{v}");
    assert!(
        v["tool"].as_str().unwrap_or_default().contains("delete_*"),
        "{v}"
    );
    let (code, v) = ask(&[], "unknown", "{}", "gh.test");
    assert_eq!((code, v["error"].as_str()), (1, Some("tool_denied")), "{v}");
    assert!(
        v["tool"].as_str().unwrap_or_default().contains("default"),
        "{v}"
    );
    // The argument rule applies only for owner acme; then the allow list decides.
    let eng = ["--user", "ann", "--groups", "eng"];
    let ops = ["--user", "bob", "--groups", "ops"];
    let (code, v) = ask(&eng, "create_issue", r#"{"owner":"acme"}"#, "gh.test");
    assert_eq!(code, 0, "{v}");
    let (code, v) = ask(&ops, "create_issue", r#"{"owner":"acme"}"#, "gh.test");
    assert_eq!(
        (code, v["error"].as_str()),
        (1, Some("user_not_allowed")),
        "{v}"
    );
    let (code, v) = ask(&eng, "create_issue", r#"{"owner":"evil"}"#, "gh.test");
    assert_eq!((code, v["error"].as_str()), (1, Some("tool_denied")), "{v}");
    let (code, v) = ask(&[], "create_issue", r#"{"owner":"acme"}"#, "gh.test");
    assert_eq!(
        (code, v["error"].as_str()),
        (1, Some("identity_required")),
        "{v}"
    );
    // Report mode: allowed, uncredentialed, with the would-be error.
    let (code, v) = ask(&[], "delete_repo", "{}", "rep.test");
    assert_eq!((code, v["error"].as_str()), (0, Some("tool_denied")), "{v}");
    assert!(v["credential"].is_null(), "report mode never injects: {v}");
    let (code, v) = ask(&[], "get_issue", "{}", "rep.test");
    assert_eq!((code, v["credential"].as_str()), (0, Some("bot")), "{v}");
}
