//! `sidekey env` as a developer uses it: `eval "$(sidekey env --config F)"` in bash,
//! then curl and httpx with their default settings go through sidekey (plain HTTP,
//! and HTTPS with sidekey's CA trusted through the printed trust variables), while
//! the admin listener stays reachable directly (NO_PROXY).

use std::time::Duration;

use super::{TOKEN, claw_config, token_env};
use crate::support::*;

fn env_script(cfg: &std::path::Path, scheme: &str, admin: std::net::SocketAddr) -> String {
    format!(
        r#"set -e
eval "$('{bin}' env --config '{cfg}')"
echo "curl=$(curl -sS --max-time 30 -o /dev/null -w '%{{http_code}}' {scheme}://api.example.test/via-curl)"
echo "httpx=$('{py}' -c 'import httpx; print(httpx.get("{scheme}://api.example.test/via-httpx", timeout=30).status_code)')"
echo "admin=$(curl -sS --max-time 30 http://{admin}/healthz)"
echo "node=$NODE_USE_ENV_PROXY"
echo "no_proxy=$no_proxy"
echo "https_proxy=$HTTPS_PROXY"
echo "cert=$SSL_CERT_FILE"
"#,
        bin = BIN,
        cfg = cfg.display(),
        py = python().display(),
    )
}

fn line<'a>(out: &'a ProcOut, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| {
            panic!(
                "no {key}= line\nstdout: {}\nstderr: {}",
                out.stdout, out.stderr
            )
        })
}

#[track_caller]
fn assert_both_injected(paths: &[String], recorded: &[Recorded]) {
    for p in paths {
        let r = recorded
            .iter()
            .find(|r| &r.path == p)
            .unwrap_or_else(|| panic!("upstream never saw {p}: {recorded:?}"));
        assert_eq!(r.header_all("authorization"), [format!("Bearer {TOKEN}")]);
    }
}

#[test]
fn eval_in_bash_sends_curl_and_httpx_through_sidekey() {
    let up = Upstream::start();
    let (yaml, proxy, admin) = fixed_ports(&claw_config("devloop-env", &up.host_port(), ""));
    let sk = Sidekey::start(&yaml, &token_env());
    let out = bash(&env_script(&sk.dir.config_path(), "http", admin), &[]);
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert_eq!(line(&out, "curl"), "200");
    assert_eq!(line(&out, "httpx"), "200");
    assert_eq!(
        line(&out, "admin"),
        "ok",
        "the admin listener is reached directly"
    );
    assert_eq!(line(&out, "node"), "1");
    assert_eq!(line(&out, "https_proxy"), format!("http://{proxy}"));
    assert_eq!(
        line(&out, "no_proxy"),
        format!("localhost,127.0.0.1,::1,{admin}")
    );
    assert_eq!(line(&out, "cert"), "", "no trust variables without tls:");
    let paths = ["/via-curl".to_string(), "/via-httpx".to_string()];
    assert_both_injected(&paths, &up.wait_requests(2, Duration::from_secs(10)));
    let audit = sk.wait_audit(2);
    for p in &paths {
        let rec = audit
            .iter()
            .find(|r| &r["path"] == p)
            .expect("audit record");
        assert_eq!(rec["auth_context"], "system_service");
        assert_eq!(rec["route"], "example-api");
    }
    super::assert_no_secret(
        &format!("{}{}{}", out.stdout, sk.stdout_text(), sk.stderr_text()),
        &[TOKEN],
    );
}

#[test]
fn with_tls_the_printed_trust_variables_make_curl_and_httpx_trust_sidekey() {
    let up = TlsUpstream::start(&["api.example.test"]);
    let dir = ConfigDir::new();
    // A directory name a shell would split or unquote: the values must survive eval.
    let ca_home = dir.path().join("it's a dir");
    std::fs::create_dir_all(&ca_home).unwrap();
    let ca = SidekeyCa::init(&ca_home);
    let yaml = claw_config(
        "devloop-env-tls",
        &up.host_port(),
        &ca.tls_yaml(&[up.ca_pem_path()]),
    );
    let (yaml, _, admin) = fixed_ports(&yaml);
    let sk = Sidekey::start_in(dir, &yaml, &token_env());
    let out = bash(&env_script(&sk.dir.config_path(), "https", admin), &[]);
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert_eq!(
        line(&out, "curl"),
        "200",
        "curl trusts sidekey's CA: {}",
        out.stderr
    );
    assert_eq!(line(&out, "httpx"), "200");
    assert_eq!(line(&out, "admin"), "ok");
    let bundle = ca.cert.with_file_name("trust-bundle.pem");
    assert_eq!(line(&out, "cert"), bundle.to_str().unwrap());
    let pem = std::fs::read_to_string(&bundle).unwrap();
    let ca_pem = std::fs::read_to_string(&ca.cert).unwrap();
    assert!(pem.contains(ca_pem.trim()), "the bundle holds sidekey's CA");
    assert!(
        pem.matches("BEGIN CERTIFICATE").count() > 1,
        "and the system roots"
    );
    let paths = ["/via-curl".to_string(), "/via-httpx".to_string()];
    assert_both_injected(&paths, &up.wait_requests(2, Duration::from_secs(10)));
    let audit = sk.wait_audit(2);
    assert!(audit.iter().all(|r| r["scheme"] == "https"), "{audit:?}");
    super::assert_no_secret(
        &format!("{}{}{}", out.stdout, sk.stdout_text(), sk.stderr_text()),
        &[TOKEN],
    );
}

#[test]
fn env_prints_every_variable_of_ca_env_shell_quoted() {
    let dir = ConfigDir::new();
    let ca = SidekeyCa::init(dir.path());
    let yaml = format!(
        "version: 1\nagent: a\nlisten: 127.0.0.1:15980\nadmin_listen: 0.0.0.0:15990\n{}",
        ca.tls_yaml(&[]).replace("  upstream_roots: []\n", "")
    );
    let cfg = dir.write_config(&yaml);
    let (code, stdout, stderr) =
        Sidekey::run_args(&["env", "--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stderr}");
    let ca_env = ca.env(&ca.cert.with_file_name("trust-bundle.pem"));
    assert!(!ca_env.is_empty());
    for (k, v) in &ca_env {
        assert!(
            stdout.contains(&format!("export {k}='{v}'")),
            "{k} missing from\n{stdout}"
        );
    }
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        assert!(
            stdout.contains(&format!("export {k}='http://127.0.0.1:15980'\n")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("export NO_PROXY='localhost,127.0.0.1,::1,127.0.0.1:15990'\n"),
        "an unspecified admin address is reached on loopback: {stdout}"
    );
    assert!(stdout.lines().all(|l| l.starts_with("export ")), "{stdout}");
}

#[test]
fn env_refuses_an_invalid_config_and_port_zero_with_exit_2() {
    let dir = ConfigDir::new();
    let bad = dir.write(
        "bad.yaml",
        "version: 1\nagent: a\nroutes:\n  - name: r\n    match: {host: x}\n    auth: claw\n    credential: nope\n",
    );
    let (code, stdout, stderr) =
        Sidekey::run_args(&["env", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "nothing to eval on error: {stdout}");
    assert!(stderr.contains("routes[0].credential"), "{stderr}");
    let zero = dir.write("zero.yaml", "version: 1\nagent: a\nlisten: 127.0.0.1:0\n");
    let (code, stdout, stderr) =
        Sidekey::run_args(&["env", "--config", zero.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("listen") && stderr.contains("run -- CMD"),
        "{stderr}"
    );
}

/// Issue 12: HTTPS works in development out of the box. `tls.generate: true` creates
/// the CA on first run where the config points (never on `check`), and the variables
/// `sidekey env` prints make curl and httpx trust it.
#[test]
fn a_generated_dev_ca_is_created_on_first_run_and_trusted_through_env() {
    let up = TlsUpstream::start(&["api.example.test"]);
    let dir = ConfigDir::new();
    let tls = format!(
        "tls:\n  ca_cert: dev-ca/ca.crt\n  ca_key: dev-ca/ca.key\n  generate: true\n  upstream_roots: [{:?}]\n",
        up.ca_pem_path().to_str().unwrap()
    );
    let yaml = claw_config("devloop-dev-ca", &up.host_port(), &tls);
    let (yaml, _, admin) = fixed_ports(&yaml);
    dir.write_config(&yaml);
    let (code, out, err) = Sidekey::check_path(&dir.config_path(), &token_env());
    assert_eq!(code, 0, "{out}{err}");
    assert!(!dir.path().join("dev-ca").exists(), "check writes nothing");
    let sk = Sidekey::start_in(dir, &yaml, &token_env());
    let ca_dir = sk.dir.path().join("dev-ca");
    assert!(ca_dir.join("ca.crt").is_file() && ca_dir.join("ca.key").is_file());
    assert!(
        sk.wait_stderr("generated a development CA"),
        "{}",
        sk.stderr_text()
    );
    let out = bash(&env_script(&sk.dir.config_path(), "https", admin), &[]);
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert_eq!(line(&out, "curl"), "200", "{}", out.stderr);
    assert_eq!(line(&out, "httpx"), "200");
    let paths = ["/via-curl".to_string(), "/via-httpx".to_string()];
    assert_both_injected(&paths, &up.wait_requests(2, Duration::from_secs(10)));
    let key = std::fs::read_to_string(ca_dir.join("ca.key")).unwrap();
    let key_line = key.lines().nth(1).unwrap_or_default();
    assert!(key_line.len() > 16, "a PEM body line: {key_line:?}");
    let all = format!("{}{}{}", out.stdout, sk.stdout_text(), sk.stderr_text());
    super::assert_no_secret(&all, &[TOKEN, key_line]);
}
