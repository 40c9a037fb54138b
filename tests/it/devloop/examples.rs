//! The examples under `examples/`, run as a developer runs them: the API stand-ins
//! (`examples/standins/apis.py`, real TLS for slack.com, api.notion.com and
//! api.github.com), `examples/sidekey.yaml` (ports changed for the test), and
//! `sidekey run --user alice -- <agent>` for the Python SDK agent, the Node agent and
//! the LangGraph agent. Each must succeed, show claw and assistant calls in its audit
//! records, and have had the right credential injected, with no secret in any output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;

use super::assert_no_secret;
use crate::support::*;

const SLACK_BOT: &str = "xoxb-example-bot-5d1e";
const GITHUB_BOT: &str = "ghs_example_service_7a2b";
const NOTION_ALICE: &str = "ntn_alice_example_9c4f";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn sha(header: &str) -> String {
    format!("{:x}", sha2::Sha256::digest(header.as_bytes()))
}

/// The stand-ins, sidekey's CA and alice's Notion token in a fresh state dir, and
/// the examples' config pointing at them.
struct Setup {
    dir: ConfigDir,
    standins: LineProc,
}

impl Setup {
    fn new() -> Setup {
        let dir = ConfigDir::new();
        let state = dir.path().join(".state");
        let standin_dir = state.join("standins");
        let mut standins = LineProc::python(
            &examples_dir().join("standins/apis.py"),
            &["--dir", standin_dir.to_str().unwrap(), "--port", "0"],
        );
        let listening = standins.next_json(Duration::from_secs(60));
        let addr = listening["listening"]
            .as_str()
            .expect("stand-ins listening")
            .to_string();
        let (code, out, err) = Sidekey::run_args(
            &["ca", "init", "--out", state.join("ca").to_str().unwrap()],
            &[],
        );
        assert_eq!(code, 0, "{out}{err}");
        dir.write(".state/tokens/alice/notion", NOTION_ALICE);
        let yaml = std::fs::read_to_string(examples_dir().join("sidekey.yaml"))
            .unwrap()
            .replace("127.0.0.1:9443", &addr)
            .replace("listen: 127.0.0.1:15080", "listen: 127.0.0.1:0")
            .replace("admin_listen: 127.0.0.1:15090", "admin_listen: 127.0.0.1:0");
        dir.write_config(&yaml);
        Setup { dir, standins }
    }

    /// `sidekey run --config ... --user alice -- CMD`; returns (exit code, process).
    fn run(&self, cmd: &[&str]) -> (i32, SidekeyProc) {
        let cfg = self.dir.config_path();
        let mut args = vec![
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--user",
            "alice",
            "--",
        ];
        args.extend_from_slice(cmd);
        let mut p = SidekeyProc::spawn(
            &args,
            &[("SLACK_BOT_TOKEN", SLACK_BOT), ("GITHUB_TOKEN", GITHUB_BOT)],
            &examples_dir(),
        );
        let code = p.code(Duration::from_secs(180));
        (code, p)
    }

    /// The stand-ins' request lines so far.
    fn upstream_seen(self) -> Vec<Value> {
        self.standins.stop()
    }
}

fn result_line(p: &SidekeyProc) -> Value {
    let out = p.stdout_text();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("the agent printed no RESULT\n{}", p.output()));
    // The agent and sidekey's audit share stdout: a record can land right after the
    // JSON, before the agent's newline, so read the first JSON value only.
    serde_json::Deserializer::from_str(line)
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("the RESULT line is not JSON: {line}"))
}

#[track_caller]
fn audit_of<'a>(audit: &'a [Value], route: &str) -> Vec<&'a Value> {
    // The calls of `route`; the CONNECTs that opened their tunnels have records of
    // their own (no user: the agent names its user on each inner request).
    let found: Vec<_> = audit
        .iter()
        .filter(|r| r["route"] == route && r["method"] != "CONNECT")
        .collect();
    assert!(
        !found.is_empty(),
        "no audit record for route {route}: {audit:#?}"
    );
    found
}

#[track_caller]
fn assert_claw_and_assistant(p: &SidekeyProc) {
    let audit = p.audit_records();
    for r in audit_of(&audit, "slack-post") {
        assert_eq!(r["auth_context"], "system_service");
        assert_eq!(r["credential"], "slack-bot");
        assert_eq!(r["decision"], "allow");
        assert_eq!(r["status"], 200);
    }
    for r in audit_of(&audit, "notion") {
        assert_eq!(r["auth_context"], "user_delegated");
        assert_eq!(r["user"], "alice");
        assert_eq!(r["credential"], "notion-user");
        assert_eq!(r["status"], 200);
    }
    assert_no_secret(&p.output(), &[SLACK_BOT, GITHUB_BOT, NOTION_ALICE]);
}

#[track_caller]
fn assert_upstream_saw(seen: &[Value], host: &str, path: &str, auth: &str) {
    let r = seen
        .iter()
        .find(|r| r["host"] == host && r["path"] == path)
        .unwrap_or_else(|| panic!("the stand-in never saw {host}{path}: {seen:#?}"));
    assert_eq!(
        r["auth_sha256"],
        sha(auth).as_str(),
        "{host}{path} got another credential"
    );
    assert_eq!(
        r["identity_header"],
        Value::Null,
        "the identity header never leaves sidekey"
    );
}

#[test]
fn python_sdk_agent_slack_notion_github() {
    let setup = Setup::new();
    let py = python();
    let (code, p) = setup.run(&[py.to_str().unwrap(), "python/agent.py"]);
    assert_eq!(code, 0, "{}", p.output());
    let result = result_line(&p);
    assert_eq!(result["slack_ts"], "1700000000.000100");
    assert_eq!(result["notion_user"], "Alice");
    assert_eq!(result["notion_pages"].as_array().map(Vec::len), Some(1));
    assert_eq!(result["github_issue"], 7);
    assert_eq!(result["denied"], serde_json::json!([403, "route_denied"]));
    assert_claw_and_assistant(&p);
    let audit = p.audit_records();
    for r in audit_of(&audit, "github") {
        assert_eq!(r["auth_context"], "system_service");
    }
    assert!(
        audit
            .iter()
            .any(|r| r["path"] == "/api/admin.users.list" && r["error"] == "route_denied"),
        "{audit:#?}"
    );
    let seen = setup.upstream_seen();
    assert_upstream_saw(
        &seen,
        "slack.com",
        "/api/chat.postMessage",
        &format!("Bearer {SLACK_BOT}"),
    );
    assert_upstream_saw(
        &seen,
        "api.notion.com",
        "/v1/users/me",
        &format!("Bearer {NOTION_ALICE}"),
    );
    assert_upstream_saw(
        &seen,
        "api.github.com",
        "/repos/acme/infra/issues",
        &format!("Bearer {GITHUB_BOT}"),
    );
    assert!(
        seen.iter().all(|r| r["path"] != "/api/admin.users.list"),
        "a denied call never leaves"
    );
    let notion = seen.iter().find(|r| r["host"] == "api.notion.com").unwrap();
    assert_eq!(
        notion["notion_version"], "2022-06-28",
        "the route's set_headers"
    );
}

#[test]
fn node_agent_notion_sdk_and_fetch_through_undici() {
    let node_modules = examples_dir().join("node/node_modules/@notionhq/client");
    assert!(
        node_modules.is_dir(),
        "{} is missing: scripts/test.sh installs it (npm ci --prefix examples/node)",
        node_modules.display()
    );
    let setup = Setup::new();
    let (code, p) = setup.run(&["node", "node/agent.mjs"]);
    assert_eq!(code, 0, "{}", p.output());
    let result = result_line(&p);
    assert_eq!(result["notion_user"], "Alice");
    assert_eq!(result["slack_ts"], "1700000000.000100");
    assert_claw_and_assistant(&p);
    let seen = setup.upstream_seen();
    assert_upstream_saw(
        &seen,
        "api.notion.com",
        "/v1/search",
        &format!("Bearer {NOTION_ALICE}"),
    );
    assert_upstream_saw(
        &seen,
        "slack.com",
        "/api/chat.postMessage",
        &format!("Bearer {SLACK_BOT}"),
    );
}

#[test]
fn langgraph_agent_with_a_scripted_model_calls_both_tools() {
    let setup = Setup::new();
    let py = python();
    let (code, p) = setup.run(&[py.to_str().unwrap(), "langgraph/agent.py"]);
    assert_eq!(code, 0, "{}", p.output());
    let result = result_line(&p);
    assert_eq!(result["answer"], "Posted the onboarding pages to #hr.");
    let tools = result["tools"].as_array().expect("tool results");
    assert_eq!(tools.len(), 2, "{result}");
    assert!(
        tools[0].as_str().unwrap().contains("Onboarding"),
        "{result}"
    );
    assert_eq!(tools[1], "1700000000.000100");
    assert_claw_and_assistant(&p);
    let audit = p.audit_records();
    let calls: Vec<_> = audit.iter().filter(|r| r["method"] != "CONNECT").collect();
    assert_eq!(calls.len(), 2, "one record per tool call: {audit:#?}");
    assert!(
        audit
            .iter()
            .filter(|r| r["method"] == "CONNECT")
            .all(|r| r["status"] == 200 && r["decision"] == "allow"),
        "each tunnel has its own record: {audit:#?}"
    );
    let seen = setup.upstream_seen();
    assert_upstream_saw(
        &seen,
        "api.notion.com",
        "/v1/search",
        &format!("Bearer {NOTION_ALICE}"),
    );
    assert_upstream_saw(
        &seen,
        "slack.com",
        "/api/chat.postMessage",
        &format!("Bearer {SLACK_BOT}"),
    );
}
