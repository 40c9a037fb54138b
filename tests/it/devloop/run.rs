//! `sidekey run --config F [--user U] -- CMD ARGS` as a supervisor: CMD starts only once
//! `/readyz` answers 200, gets the proxy environment and `SIDEKEY_USER`, receives
//! SIGINT/SIGTERM sent to sidekey, and sidekey exits with CMD's status and leaves no
//! listener behind. A config error exits 2 without starting CMD.

use std::time::Duration;

use super::{TOKEN, claw_config, token_env};
use crate::support::*;

/// Generous bound for a `run -- CMD` whose command is quick.
const EXIT: Duration = Duration::from_secs(60);

fn run_cmd(dir: &ConfigDir, yaml: &str, cmd: &[&str], env: &[(&str, &str)]) -> SidekeyProc {
    let cfg = dir.write_config(yaml);
    let mut args = vec!["run", "--config", cfg.to_str().unwrap()];
    args.extend_from_slice(cmd);
    SidekeyProc::spawn(&args, env, dir.path())
}

#[test]
fn exits_with_the_commands_status() {
    let dir = ConfigDir::new();
    let yaml = claw_config("devloop-status", "127.0.0.1:9", "");
    for (cmd, want) in [
        (vec!["--", "true"], 0),
        (vec!["--", "sh", "-c", "exit 7"], 7),
        (vec!["--", "sh", "-c", "kill -TERM $$"], 128 + 15),
        (vec!["--", "/nonexistent/agent-binary"], 127),
    ] {
        let mut p = run_cmd(&dir, &yaml, &cmd, &token_env());
        assert_eq!(p.code(EXIT), want, "{cmd:?}\n{}", p.output());
    }
}

#[test]
fn the_command_gets_the_proxy_environment_and_the_user_once_ready() {
    let up = Upstream::start();
    let dir = ConfigDir::new();
    let yaml = claw_config("devloop-run-env", &up.host_port(), "");
    // NO_PROXY's last entry is the admin listener: /readyz already answers 200.
    let script = r#"admin=${NO_PROXY##*,}
echo "ready=$(curl -sS --max-time 30 http://$admin/readyz)"
echo "user=$SIDEKEY_USER node=$NODE_USE_ENV_PROXY"
echo "status=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' http://api.example.test/from-cmd)"
case "$HTTP_PROXY" in http://127.0.0.1:*) echo proxy=ok;; *) echo "proxy=$HTTP_PROXY";; esac"#;
    let mut p = run_cmd(
        &dir,
        &yaml,
        &["--user", "alice", "--", "sh", "-c", script],
        &token_env(),
    );
    assert_eq!(p.code(EXIT), 0, "{}", p.output());
    let out = p.stdout_text();
    for want in ["ready=ready", "user=alice node=1", "status=200", "proxy=ok"] {
        assert!(
            out.lines().any(|l| l == want),
            "no line {want:?}\n{}",
            p.output()
        );
    }
    let r = up.only();
    assert_eq!(r.path, "/from-cmd");
    assert_eq!(r.header_all("authorization"), [format!("Bearer {TOKEN}")]);
    let audit = p.audit_records();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["route"], "example-api");
    assert_eq!(audit[0]["status"], 200);
    super::assert_no_secret(&p.output(), &[TOKEN]);
}

#[test]
fn sigterm_and_sigint_reach_the_command_and_its_status_is_returned() {
    let dir = ConfigDir::new();
    let yaml = claw_config("devloop-signals", "127.0.0.1:9", "");
    for (sig, code) in [("TERM", 3), ("INT", 4)] {
        let script = "trap 'echo got-TERM; exit 3' TERM; trap 'echo got-INT; exit 4' INT; echo started; while :; do sleep 0.05; done";
        let mut p = run_cmd(&dir, &yaml, &["--", "sh", "-c", script], &token_env());
        p.wait_stdout("started", EXIT);
        p.signal(sig);
        assert_eq!(p.code(EXIT), code, "{}", p.output());
        assert!(
            p.stdout_text().contains(&format!("got-{sig}")),
            "{}",
            p.output()
        );
    }
}

#[test]
fn no_listener_is_left_behind_even_by_a_process_the_command_left_running() {
    let dir = ConfigDir::new();
    let (yaml, proxy, admin) = fixed_ports(&claw_config("devloop-listeners", "127.0.0.1:9", ""));
    // The command starts a sleeper that outlives it; it must not inherit the sockets.
    let mut p = run_cmd(
        &dir,
        &yaml,
        &[
            "--",
            "sh",
            "-c",
            "sleep 60 </dev/null >/dev/null 2>&1 & echo sleeper=$!",
        ],
        &token_env(),
    );
    assert_eq!(p.code(EXIT), 0, "{}", p.output());
    let out = p.stdout_text();
    let sleeper = out
        .lines()
        .find_map(|l| l.strip_prefix("sleeper="))
        .expect("sleeper pid");
    let alive = std::path::Path::new("/proc").join(sleeper).exists();
    let (proxy_free, admin_free) = (nothing_listens(proxy), nothing_listens(admin));
    let _ = std::process::Command::new("kill").arg(sleeper).status();
    assert!(alive, "the sleeper outlived the command");
    assert!(proxy_free, "the proxy listener {proxy} is still open");
    assert!(admin_free, "the admin listener {admin} is still open");
}

#[test]
fn a_config_error_exits_2_and_never_starts_the_command() {
    let dir = ConfigDir::new();
    let marker = dir.path().join("started");
    let yaml = "version: 1\nagent: a\nlisten: nowhere\nroutes:\n  - name: r\n    auth: claw\n    credential: missing\n";
    let touch = format!("touch '{}'", marker.display());
    let mut p = run_cmd(&dir, yaml, &["--", "sh", "-c", &touch], &[]);
    assert_eq!(p.code(EXIT), 2, "{}", p.output());
    let err = p.stderr_text();
    assert!(
        err.contains("listen:") && err.contains("routes[0].credential"),
        "{err}"
    );
    assert!(!marker.exists(), "the command ran despite the config error");
}

#[test]
fn a_listener_that_cannot_be_bound_exits_1_without_the_command() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = ConfigDir::new();
    let marker = dir.path().join("started");
    let yaml = claw_config("devloop-busy", "127.0.0.1:9", "").replace(
        "\nlisten: 127.0.0.1:0\n",
        &format!("\nlisten: {}\n", busy.local_addr().unwrap()),
    );
    let touch = format!("touch '{}'", marker.display());
    let mut p = run_cmd(&dir, &yaml, &["--", "sh", "-c", &touch], &token_env());
    assert_eq!(p.code(EXIT), 1, "{}", p.output());
    assert!(
        p.stderr_text().contains("cannot bind listen"),
        "{}",
        p.output()
    );
    assert!(!marker.exists());
}

#[test]
fn not_ready_within_30s_exits_1_with_the_reason_and_no_command() {
    let dir = ConfigDir::new();
    let marker = dir.path().join("started");
    // Vault unreachable: /readyz stays 503 (credential store), as the contract says.
    let vault = format!(
        "vault:\n  address: http://127.0.0.1:{}\n  auth: {{method: token, token_env: DEVLOOP_VAULT_TOKEN}}\n",
        dead_port()
    );
    let yaml = claw_config("devloop-not-ready", "127.0.0.1:9", &vault);
    let touch = format!("touch '{}'", marker.display());
    let mut p = run_cmd(
        &dir,
        &yaml,
        &["--", "sh", "-c", &touch],
        &[
            ("DEVLOOP_API_TOKEN", TOKEN),
            ("DEVLOOP_VAULT_TOKEN", "s.devloop-vault-token"),
        ],
    );
    assert_eq!(p.code(Duration::from_secs(120)), 1, "{}", p.output());
    let err = p.stderr_text();
    assert!(
        err.contains("not ready within 30s") && err.contains("503"),
        "{err}"
    );
    assert!(
        !marker.exists(),
        "the command ran although sidekey never got ready"
    );
    super::assert_no_secret(&p.output(), &["s.devloop-vault-token", TOKEN]);
}
