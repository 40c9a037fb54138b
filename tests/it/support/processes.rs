//! Real client processes run by tests: curl and the Python scripts in `tests/py/`,
//! with the CA environment set explicitly and their output captured.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

/// Bound on a client process (curl, Python) run by a test.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// Client processes: environment, curl, Python
// ---------------------------------------------------------------------------------------

/// Variables that steer proxies or CA trust in clients; cleared for every client process
/// (this machine presets several), then set explicitly by the test. The proxy ones
/// ([`PROXY_ENV`]) are cleared for sidekey itself too.
pub const CLIENT_ENV_CLEARED: &[&str] = &[
    "WS_PROXY",
    "WSS_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "NIX_SSL_CERT_FILE",
    "PIP_CERT",
    "HTTPLIB2_CA_CERTS",
    "CARGO_HTTP_CAINFO",
    "GIT_SSL_CAINFO",
    "AWS_CA_BUNDLE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
    "SLACK_BOT_TOKEN",
];

/// Proxy settings every process a test starts must not inherit.
pub const PROXY_ENV: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Clears every proxy and CA variable for a client process, then sets `env`.
pub fn client_env(cmd: &mut Command, env: &[(&str, &str)]) {
    for k in PROXY_ENV.iter().chain(CLIENT_ENV_CLEARED) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// Output of one client process.
#[derive(Debug)]
pub struct ProcOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn pump_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Start `cmd` with no stdin and both outputs piped to the test.
fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` to completion within [`CLIENT_TIMEOUT`] (killed and panicking after).
pub fn run_proc(mut cmd: Command) -> ProcOut {
    let mut child = spawn_piped(&mut cmd);
    let out = pump_all(child.stdout.take().unwrap());
    let err = pump_all(child.stderr.take().unwrap());
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if t0.elapsed() > CLIENT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let o = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
            let e = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            panic!("{cmd:?} did not finish within {CLIENT_TIMEOUT:?}\nstdout: {o}\nstderr: {e}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    ProcOut {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
    }
}

/// What curl observed.
#[derive(Debug)]
pub struct CurlOut {
    /// curl's exit code (0 ok; 56 for a refused CONNECT, 60 for an untrusted cert...).
    pub exit: i32,
    /// The final response status (0 if none).
    pub status: u16,
    /// The CONNECT response status (0 if none).
    pub connect_status: u16,
    /// `1.1` or `2`.
    pub http_version: String,
    /// Response header blocks as curl dumped them (`-D`).
    pub headers: String,
    pub body: Vec<u8>,
    pub stderr: String,
}

impl CurlOut {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("curl body is not JSON ({e}): {:?} / {self:?}", self.text()))
    }

    /// The last value of response header `name` in the final header block.
    pub fn header(&self, name: &str) -> Option<String> {
        let last_block = self
            .headers
            .split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .last()?;
        last_block.lines().rev().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Runs `curl -sS` with `args` (the test passes `--proxy`, `--cacert`...), every proxy
/// and CA variable cleared.
pub fn curl(args: &[&str]) -> CurlOut {
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("h.txt");
    let mut cmd = Command::new(super::Tool::Curl.path());
    cmd.arg("-sS")
        .arg("--max-time")
        .arg("60")
        .arg("-D")
        .arg(&hdr)
        .arg("-w")
        .arg("\n%{http_code} %{http_version} %{http_connect}")
        .args(args);
    client_env(&mut cmd, &[]);
    let out = run_proc(cmd);
    let mut body = out.stdout.into_bytes();
    let pos = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let tail = String::from_utf8_lossy(&body[(pos + 1).min(body.len())..]).into_owned();
    body.truncate(pos);
    let mut parts = tail.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let http_version = parts.next().unwrap_or("").to_string();
    let connect_status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    CurlOut {
        exit: out.code,
        status,
        connect_status,
        http_version,
        headers: std::fs::read_to_string(&hdr).unwrap_or_default(),
        body,
        stderr: out.stderr,
    }
}

/// The Python interpreter with the test clients installed: `SIDEKEY_TEST_PYTHON`, else
/// `$CARGO_MANIFEST_DIR/.venv/bin/python`. Fails the test (never skips) when missing.
pub fn python() -> PathBuf {
    super::Tool::Python.path()
}

/// `tests/py/<name>`.
pub fn py_script(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name);
    assert!(p.is_file(), "missing Python test script {}", p.display());
    p
}

fn py_command(script: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(py_script(script)).args(args);
    client_env(&mut cmd, env);
    cmd.env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// Runs `tests/py/<script>` to completion with a clean client environment plus `env`.
pub fn run_py(script: &str, args: &[&str], env: &[(&str, &str)]) -> ProcOut {
    run_proc(py_command(script, args, env))
}

/// Runs a script that must succeed; returns its last stdout line as JSON.
#[track_caller]
pub fn run_py_json(script: &str, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let out = run_py(script, args, env);
    assert_eq!(
        out.code, 0,
        "{script} {args:?} failed (exit {})\nstdout: {}\nstderr: {}",
        out.code, out.stdout, out.stderr
    );
    last_json_line(&out)
}

/// The last stdout line of `out`, parsed as JSON.
#[track_caller]
pub fn last_json_line(out: &ProcOut) -> serde_json::Value {
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output\nstderr: {}", out.stderr));
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nstderr: {}", out.stderr))
}

/// A running Python client whose stdout lines the test reads as they come.
pub struct PyChild {
    child: Child,
    lines: std_mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    what: String,
}

impl PyChild {
    pub fn spawn(script: &str, args: &[&str], env: &[(&str, &str)]) -> PyChild {
        let mut cmd = py_command(script, args, env);
        let mut child = spawn_piped(&mut cmd);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = pump_all(child.stderr.take().unwrap());
        PyChild {
            child,
            lines: rx,
            stderr,
            what: format!("{script} {args:?}"),
        }
    }

    /// The next stdout line as JSON, within `timeout`; panics (with stderr) otherwise.
    pub fn next_json(&mut self, timeout: Duration) -> serde_json::Value {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line:?}", self.what)),
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(Vec::new));
                let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
                panic!(
                    "{}: no output line within {timeout:?} ({e})\nstderr: {err}",
                    self.what
                )
            }
        }
    }

    /// Waits for the exit; returns (exit code, remaining stdout lines, stderr).
    pub fn finish(mut self, timeout: Duration) -> (i32, Vec<String>, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st;
            }
            if t0.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not exit within {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            rest.push(l);
        }
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(Vec::new));
        let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
        (status.code().unwrap_or(-1), rest, err)
    }
}

impl Drop for PyChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
