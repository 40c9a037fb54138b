//! `sidekey check` on `mcp:` blocks (every problem with its YAML path, exit 2) and
//! `sidekey mcp hash` reading stdin (SPEC "Command line", "MCP servers").

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::*;

fn route(mcp: &str) -> String {
    format!(
        "{}credentials:\n  bot: {{source: env, env: T}}\nroutes:\n  - name: gh\n    gateway: {{prefix: /gh, upstream: https://mcp.example.test}}\n    auth: claw\n    credential: bot\n    mcp:\n{mcp}",
        yaml_head("check-agent")
    )
}

#[test]
fn mcp_problems_are_reported_with_their_yaml_paths() {
    let bad = route(
        r#"      tools:
        - {name: ""}
        - {name: create_issue, args: {owner: [acme]}}
        - {name: x, action: block}
        - {name: y, action: deny, allow: {groups: [eng]}}
        - {name: z, allow: {}}
        - {name: w, args: {"/a~2": ["*"]}}
      default: maybe
      pin: {file: missing-pins.json}
      max_body_bytes: lots
"#,
    );
    let (code, out, err) = Sidekey::check(&bad);
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    for path in [
        "routes[0].mcp.tools[0].name",
        "routes[0].mcp.tools[1].args.owner",
        "routes[0].mcp.tools[2].action",
        "routes[0].mcp.tools[3].allow",
        "routes[0].mcp.tools[4].allow",
        "routes[0].mcp.tools[5].args./a~2",
        "routes[0].mcp.default",
        "routes[0].mcp.pin.file",
        "routes[0].mcp.max_body_bytes",
    ] {
        assert!(
            err.lines().any(|l| l.contains(&format!("{path}: "))),
            "no problem at {path}:\n{err}"
        );
    }
    assert!(!err.contains("panicked"), "{err}");

    let dir = ConfigDir::new();
    dir.write("pins.json", r#"{"tools": {"get_issue": "md5:abc"}}"#);
    let (code, _, err) = Sidekey::check_in(&dir, &route("      pin: {file: pins.json}\n"), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("routes[0].mcp.pin.file: ") && err.contains("get_issue"),
        "{err}"
    );
    let (code, _, err) = Sidekey::check(&route("      pin: sometimes\n"));
    assert_eq!(code, 2);
    assert!(err.contains("routes[0].mcp.pin: "), "{err}");

    let good = route(
        r#"      tools:
        - {name: "get_*"}
        - {name: create_issue, args: {"/owner": [acme, "acme-*"], "/n": [42]}, allow: {users: [alice]}}
        - {name: "delete_*", action: deny}
      default: allow
      filter_list: false
      pin: tofu
      max_body_bytes: 64KiB
"#,
    );
    let (code, out, err) = Sidekey::check(&good);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
}

#[test]
fn mcp_hash_reads_stdin_and_refuses_what_is_not_a_tool_list() {
    let run = |input: &str| {
        let mut child = Command::new(BIN)
            .args(["mcp", "hash"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sidekey mcp hash");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tool = json!({"name": "get_issue", "description": "Read one issue.", "inputSchema": {"type": "object"}});
    let canonical =
        r#"{"description":"Read one issue.","inputSchema":{"type":"object"},"name":"get_issue"}"#;
    let want = format!("sha256:{}", super::sha256_hex(canonical));
    // An SSE stream carrying the response, as `curl` would save it.
    let sse = format!(
        "event: message\ndata: {}\n\n",
        json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [tool]}})
    );
    for input in [json!({"tools": [tool]}).to_string(), sse] {
        let (code, out, err) = run(&input);
        assert_eq!(code, Some(0), "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, json!({"tools": {"get_issue": want}}));
    }
    let (code, out, err) = run("{\"nothing\": 1}");
    assert_eq!(code, Some(2), "{out}");
    assert!(err.contains("tools"), "{err}");
}
