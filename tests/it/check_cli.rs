//! `sidekey check` and the command line (SPEC "Command line"): exit 0 and a routes table
//! for a valid config; exit 2 with one line per problem naming the file and the YAML
//! path for invalid ones; never a panic.

use crate::support::*;

fn valid_yaml() -> String {
    "version: 1
agent: check-agent
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
default: deny
identity:
  header: x-sidekey-user
  mode: trusted
upstreams:
  api.test: 127.0.0.1:9
credentials:
  slack-bot:
    source: env
    env: SLACK_BOT_TOKEN
  notion-user:
    source: file
    file: creds/{user}.txt
    connect_url: https://agents.example.com/connect/notion?user={user}
routes:
  - name: slack-post
    match: {host: slack.com, path: \"/api/chat.*\", methods: [POST]}
    auth: claw
    credential: slack-bot
  - name: notion-pages
    match: {host: api.notion.com}
    auth: assistant
    credential: notion-user
    set_headers: {Notion-Version: \"2022-06-28\"}
  - name: evil-block
    match: {host: \"*.evil.test\"}
    auth: deny
  - name: public-open
    match: {host: public.test}
    auth: passthrough
  - name: slack-gateway
    gateway: {prefix: /slack, upstream: https://slack.com}
    auth: claw
    credential: slack-bot
    inject: {header: X-Api-Key, format: \"{token}\"}
timeouts: {connect: 5s, upstream_response: 30s, idle: 2m}
"
    .to_string()
}

#[track_caller]
fn assert_no_panic(stderr: &str, stdout: &str) {
    for s in [stderr, stdout] {
        assert!(!s.contains("panicked"), "sidekey panicked:\n{s}");
        assert!(!s.contains("stack backtrace"), "backtrace printed:\n{s}");
        assert!(!s.contains("RUST_BACKTRACE"), "panic hint printed:\n{s}");
    }
}

#[test]
fn check_accepts_valid_config_and_prints_routes() {
    let dir = ConfigDir::new();
    let (code, out, err) = Sidekey::check_in(&dir, &valid_yaml(), &[("SLACK_BOT_TOKEN", "xoxb-1")]);
    assert_no_panic(&err, &out);
    assert_eq!(
        code, 0,
        "valid config rejected.\nstdout:\n{out}\nstderr:\n{err}"
    );
    for name in [
        "slack-post",
        "notion-pages",
        "evil-block",
        "public-open",
        "slack-gateway",
    ] {
        assert!(out.contains(name), "routes table lacks {name}:\n{out}");
    }
    // Routes are listed in order.
    let pos: Vec<usize> = [
        "slack-post",
        "notion-pages",
        "evil-block",
        "public-open",
        "slack-gateway",
    ]
    .iter()
    .map(|n| out.find(n).unwrap())
    .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "routes table out of order:\n{out}"
    );
}

/// Runs check on `yaml` and asserts exit 2, no panic, every problem line names the file,
/// and some line contains all of `needles`. Returns stderr.
#[track_caller]
fn assert_invalid(label: &str, yaml: &str, needles: &[&str]) -> String {
    let dir = ConfigDir::new();
    let (code, out, err) = Sidekey::check_in(&dir, yaml, &[("SLACK_BOT_TOKEN", "xoxb-1")]);
    assert_no_panic(&err, &out);
    assert_eq!(
        code, 2,
        "{label}: expected exit 2.\nstdout:\n{out}\nstderr:\n{err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "{label}: no problem reported on stderr");
    for l in &lines {
        assert!(
            l.contains(CONFIG_NAME),
            "{label}: stderr line does not name the file: {l}"
        );
    }
    assert!(
        lines.iter().any(|l| needles.iter().all(|n| l.contains(n))),
        "{label}: no stderr line contains all of {needles:?}:\n{err}"
    );
    err
}

fn with_routes(routes: &str) -> String {
    format!(
        "version: 1\nagent: a\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ncredentials:\n  slack-bot:\n    source: env\n    env: SLACK_BOT_TOKEN\nroutes:\n{routes}"
    )
}

#[test]
fn unknown_credential_names_route_path_and_credential() {
    let yaml = with_routes(
        "  - name: ok\n    match: {host: a.test}\n    auth: claw\n    credential: slack-bot\n  - name: typo\n    match: {host: b.test}\n    auth: claw\n    credential: slak-bott\n",
    );
    assert_invalid(
        "unknown credential",
        &yaml,
        &["routes[1].credential", "slak-bott"],
    );
}

#[test]
fn unknown_top_level_key() {
    let yaml = format!(
        "{}colour: blue\n",
        with_routes("  - name: ok\n    match: {host: a.test}\n    auth: passthrough\n")
    );
    assert_invalid("unknown top-level key", &yaml, &["colour"]);
}

#[test]
fn unknown_key_inside_route_match() {
    let yaml = with_routes(
        "  - name: r\n    match: {host: a.test, hostname: b.test}\n    auth: passthrough\n",
    );
    assert_invalid("unknown match key", &yaml, &["routes[0]", "hostname"]);
}

#[test]
fn bad_auth_value() {
    let yaml = with_routes("  - name: r\n    match: {host: a.test}\n    auth: sometimes\n");
    assert_invalid("bad auth", &yaml, &["routes[0].auth"]);
}

#[test]
fn bad_duration() {
    let yaml = format!(
        "{}timeouts: {{connect: 5 parsecs}}\n",
        with_routes("  - name: r\n    match: {host: a.test}\n    auth: passthrough\n")
    );
    assert_invalid("bad duration", &yaml, &["timeouts.connect"]);
}

#[test]
fn unsupported_version() {
    let yaml = with_routes("  - name: r\n    match: {host: a.test}\n    auth: passthrough\n")
        .replace("version: 1", "version: 2");
    assert_invalid("version 2", &yaml, &["version"]);
}

#[test]
fn assistant_route_without_credential() {
    let yaml = with_routes("  - name: r\n    match: {host: a.test}\n    auth: assistant\n");
    assert_invalid("assistant without credential", &yaml, &["routes[0]"]);
}

#[test]
fn claw_route_without_credential() {
    let yaml = with_routes("  - name: r\n    match: {host: a.test}\n    auth: claw\n");
    assert_invalid("claw without credential", &yaml, &["routes[0]"]);
}

#[test]
fn wildcard_in_middle_of_host() {
    let yaml = with_routes(
        "  - name: r\n    match: {host: \"api.*.example.com\"}\n    auth: passthrough\n",
    );
    assert_invalid("mid-host wildcard", &yaml, &["routes[0].match.host"]);
}

#[test]
fn bad_default_value() {
    let yaml = with_routes("  - name: r\n    match: {host: a.test}\n    auth: passthrough\n")
        .replace("routes:\n", "default: allow\nroutes:\n");
    assert_invalid("bad default", &yaml, &["default"]);
}

#[test]
fn unknown_credential_source() {
    let yaml = "version: 1\nagent: a\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ncredentials:\n  kc:\n    source: keychain\nroutes:\n  - name: r\n    match: {host: a.test}\n    auth: claw\n    credential: kc\n";
    assert_invalid("unknown source", yaml, &["credentials", "kc", "source"]);
}

#[test]
fn unparseable_yaml() {
    let yaml =
        "version: 1\nagent: a\nroutes:\n  - name: r\n    match: {host: a.test\n   auth: : :\n";
    assert_invalid("unparseable YAML", yaml, &[]);
}

#[test]
fn missing_file() {
    let dir = ConfigDir::new();
    let path = dir.config_path();
    let (code, out, err) = Sidekey::check_path(&path, &[]);
    assert_no_panic(&err, &out);
    assert_eq!(
        code, 2,
        "missing file: expected exit 2.\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(err.contains(CONFIG_NAME), "missing file not named:\n{err}");
}

#[test]
fn several_problems_are_one_line_each() {
    let yaml = format!(
        "{}timeouts: {{connect: soon}}\n",
        with_routes(
            "  - name: wild\n    match: {host: \"a.*.test\"}\n    auth: passthrough\n  - name: typo\n    match: {host: b.test}\n    auth: claw\n    credential: nope-cred\n"
        )
    );
    let err = assert_invalid("several problems", &yaml, &["routes[1].credential"]);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let find = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line for {needle}:\n{err}"))
    };
    let a = find("routes[0].match.host");
    let b = find("routes[1].credential");
    let c = find("timeouts.connect");
    assert!(
        a != b && b != c && a != c,
        "problems must be on separate lines:\n{err}"
    );
}

#[test]
fn version_flag() {
    let (code, out, err) = Sidekey::run_args(&["--version"], &[]);
    assert_no_panic(&err, &out);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.contains(env!("CARGO_PKG_VERSION")),
        "--version output: {out}"
    );
}

/// Issue 12: a fixed file credential whose file does not exist gets a warning, as an
/// unset env var does (the config stays valid: the file may be mounted later).
#[test]
fn check_warns_for_a_missing_credential_file() {
    let yaml = "version: 1\nagent: a\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ncredentials:\n  f:\n    source: file\n    file: secrets/token.txt\nroutes:\n  - name: r\n    match: {host: a.test}\n    auth: claw\n    credential: f\n";
    let dir = ConfigDir::new();
    let (code, out, err) = Sidekey::check_in(&dir, yaml, &[]);
    assert_no_panic(&err, &out);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("warning: credentials.f.file") && l.contains("token.txt")),
        "no warning for the missing file:\n{err}"
    );
    dir.write("secrets/token.txt", "tok\n");
    let (code, out, err) = Sidekey::check_in(&dir, yaml, &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(!err.contains("warning"), "the file exists now:\n{err}");
}

/// Issue 12: an unknown `auth:` is one problem, not also "takes no credential".
#[test]
fn unknown_auth_is_one_problem() {
    let yaml = with_routes(
        "  - name: r\n    match: {host: a.test}\n    auth: clow\n    credential: slack-bot\n",
    );
    let err = assert_invalid(
        "unknown auth",
        &yaml,
        &["routes[0].auth", "unknown auth `clow`"],
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one problem, one line:\n{err}");
}

/// Issue 12: an unknown key's path is printed once (the YAML parser repeats it in its
/// own message).
#[test]
fn unknown_key_path_is_printed_once() {
    let yaml = with_routes("  - name: r\n    match: {hostname: a.test}\n    auth: passthrough\n");
    let err = assert_invalid("unknown key", &yaml, &["routes[0].match", "hostname"]);
    let line = err
        .lines()
        .find(|l| l.contains("hostname"))
        .unwrap_or_else(|| panic!("no line for the key:\n{err}"));
    assert_eq!(
        line.matches("routes[0].match").count(),
        1,
        "the path is said once: {line}"
    );
}
