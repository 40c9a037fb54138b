//! Runs the real `sidekey` binary for a test: the one launcher of the test suite.
//!
//! [`ConfigDir`] is a fresh temp dir holding `sidekey.yaml` and any extra files (per-user
//! credential files...). [`Sidekey::builder`] (or the [`Sidekey::start`] shorthand)
//! spawns `sidekey run --config` in one environment for every test: inherited, minus
//! the variables that would steer it ([`SIDEKEY_ENV_CLEARED`] and the proxy
//! variables), plus `SIDEKEY_LOG_FORMAT=json` and `SIDEKEY_LOG` =
//! `$SIDEKEY_TEST_LOG` or [`DEFAULT_LOG`], then the test's own variables. It captures
//! stdout (audit) and stderr (logs) completely via reader threads, waits up to
//! [`START_TIMEOUT`] for the `"message":"listening"` line to learn the ports, and on a
//! failing test prints the tail of both streams. [`Sidekey::check`] runs
//! `sidekey check --config`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_sidekey");
/// Generous: the machine running the suite is shared and noisy.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
pub const AUDIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The log filter sidekey runs with unless `SIDEKEY_TEST_LOG` or the test says
/// otherwise: sidekey's own debug lines (so leak checks see them), others at info.
pub const DEFAULT_LOG: &str = "info,sidekey=debug";

/// Variables a developer's shell may hold that would change what sidekey does; never
/// inherited (a test sets what it needs explicitly). The proxy variables
/// ([`PROXY_ENV`](super::processes::PROXY_ENV)) are cleared too.
pub const SIDEKEY_ENV_CLEARED: &[&str] = &[
    "SIDEKEY_CONFIG",
    "SIDEKEY_LOG",
    "SIDEKEY_LOG_FORMAT",
    "SIDEKEY_WORKERS",
    "SLACK_BOT_TOKEN",
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_NAMESPACE",
    "VAULT_CACERT",
    "VAULT_SKIP_VERIFY",
    "BAO_ADDR",
    "BAO_TOKEN",
];

/// Name of the config file inside a [`ConfigDir`].
pub const CONFIG_NAME: &str = "sidekey.yaml";

/// A temp dir for one sidekey instance's config and files.
pub struct ConfigDir {
    dir: tempfile::TempDir,
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigDir {
    pub fn new() -> ConfigDir {
        ConfigDir {
            dir: tempfile::Builder::new()
                .prefix("sidekey-test-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join(CONFIG_NAME)
    }

    /// Writes `contents` to `rel` (creating parent dirs); returns the absolute path.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn write_config(&self, yaml: &str) -> PathBuf {
        self.write(CONFIG_NAME, yaml)
    }
}

type Buf = Arc<Mutex<Vec<u8>>>;

fn pump(mut r: impl Read + Send + 'static, buf: Buf) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

fn clean_env(cmd: &mut Command) {
    for k in SIDEKEY_ENV_CLEARED
        .iter()
        .chain(super::processes::PROXY_ENV)
    {
        cmd.env_remove(k);
    }
}

/// How to start one sidekey: [`Sidekey::builder`], then [`start`](Launch::start).
pub struct Launch {
    dir: Option<ConfigDir>,
    yaml: String,
    env: Vec<(String, String)>,
}

impl Launch {
    /// One more environment variable (after the standard ones, so it wins).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn envs(mut self, env: &[(&str, &str)]) -> Self {
        for (k, v) in env {
            self = self.env(k, v);
        }
        self
    }

    /// The log filter (`SIDEKEY_LOG`) for this instance.
    pub fn log(self, filter: &str) -> Self {
        self.env("SIDEKEY_LOG", filter)
    }

    /// Run in a prepared dir (extra files already written) instead of a fresh one.
    pub fn in_dir(mut self, dir: ConfigDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Lets the test write files (keys, secrets) into the config dir before the start.
    pub fn prepare(mut self, f: impl FnOnce(&Path)) -> Self {
        let dir = self.dir.take().unwrap_or_default();
        f(dir.path());
        self.dir = Some(dir);
        self
    }

    /// Starts sidekey and waits for its listening line (panics, with its output, when
    /// it exits or stays silent for [`START_TIMEOUT`]).
    pub fn start(self) -> Sidekey {
        Sidekey::launch(self)
    }

    /// [`start`](Self::start) for async tests: the wait runs off the runtime's threads.
    pub async fn start_async(self) -> Sidekey {
        tokio::task::spawn_blocking(move || self.start())
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// A running sidekey. Dropping it kills the process.
pub struct Sidekey {
    child: Option<Child>,
    pub dir: ConfigDir,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The raw start-up line that announced the listeners.
    pub listening_line: String,
    stdout: Buf,
    stderr: Buf,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

/// Finds the listening line; accepts the fields at top level or (leniently) under
/// `fields`, so a format bug fails the format test rather than every test.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let get = |k: &str| -> Option<String> {
        v.get(k)
            .or_else(|| v.get("fields").and_then(|f| f.get(k)))
            .and_then(|x| x.as_str())
            .map(str::to_string)
    };
    if get("message")? != "listening" {
        return None;
    }
    Some((get("proxy")?.parse().ok()?, get("admin")?.parse().ok()?))
}

impl Sidekey {
    /// How to start sidekey on `config_yaml` (written to `sidekey.yaml` in its dir).
    pub fn builder(config_yaml: &str) -> Launch {
        Launch {
            dir: None,
            yaml: config_yaml.to_string(),
            env: Vec::new(),
        }
    }

    /// Writes `config_yaml` to a fresh dir and starts sidekey with extra `env`.
    pub fn start(config_yaml: &str, env: &[(&str, &str)]) -> Sidekey {
        Self::builder(config_yaml).envs(env).start()
    }

    /// Like [`Sidekey::start`] in a prepared dir (extra files already written).
    pub fn start_in(dir: ConfigDir, config_yaml: &str, env: &[(&str, &str)]) -> Sidekey {
        Self::builder(config_yaml).in_dir(dir).envs(env).start()
    }

    fn launch(opts: Launch) -> Sidekey {
        let dir = opts.dir.unwrap_or_default();
        let config_yaml = opts.yaml.as_str();
        let cfg = dir.write_config(config_yaml);
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg)
            .current_dir(dir.path());
        clean_env(&mut cmd);
        cmd.env("SIDEKEY_LOG_FORMAT", "json");
        let log = std::env::var("SIDEKEY_TEST_LOG").unwrap_or_else(|_| DEFAULT_LOG.to_string());
        cmd.env("SIDEKEY_LOG", log);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn sidekey");
        let stdout: Buf = Default::default();
        let stderr: Buf = Default::default();
        let readers = vec![
            pump(child.stdout.take().unwrap(), stdout.clone()),
            pump(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let t0 = Instant::now();
        loop {
            let text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
            if let Some((line, (proxy, admin))) = text
                .lines()
                .find_map(|l| parse_listening(l).map(|a| (l.to_string(), a)))
            {
                return Sidekey {
                    child: Some(child),
                    dir,
                    proxy_addr: proxy,
                    admin_addr: admin,
                    listening_line: line,
                    stdout,
                    stderr,
                    readers,
                    exit: None,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                for r in readers {
                    let _ = r.join();
                }
                panic!(
                    "sidekey exited ({status}) before listening.\n--- config ---\n{config_yaml}\n--- stderr ---\n{}\n--- stdout ---\n{}",
                    String::from_utf8_lossy(&stderr.lock().unwrap()),
                    String::from_utf8_lossy(&stdout.lock().unwrap())
                );
            }
            if t0.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sidekey printed no listening line within {START_TIMEOUT:?}.\n--- stderr ---\n{text}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT` of the proxy listener.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy_addr)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Everything sidekey wrote to stdout so far.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Everything sidekey wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Everything sidekey wrote so far: stdout (audit), a newline, stderr (logs).
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout_text(), self.stderr_text())
    }

    /// How many stderr lines contain `needle`.
    pub fn stderr_count(&self, needle: &str) -> usize {
        self.stderr_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn stderr_has(&self, needle: &str) -> bool {
        self.stderr_count(needle) > 0
    }

    /// Whether a stderr line with `needle` arrives within 10 s (log lines reach the
    /// test through a reader thread, so one written just before a response may still
    /// be on its way when the response is read).
    pub fn wait_stderr(&self, needle: &str) -> bool {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(10) {
            if self.stderr_has(needle) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    /// Every complete stdout line that is a JSON object (the audit records).
    pub fn audit_records(&self) -> Vec<Value> {
        let text = self.stdout_text();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    /// Waits until at least `n` audit records exist (up to [`AUDIT_TIMEOUT`]); returns all.
    pub fn wait_audit(&self, n: usize) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let r = self.audit_records();
            if r.len() >= n {
                return r;
            }
            if t0.elapsed() > AUDIT_TIMEOUT {
                panic!(
                    "expected {n} audit records on stdout, found {}.\n--- stdout ---\n{}",
                    r.len(),
                    self.stdout_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The audit record whose `request_id` is `id` (waiting for it briefly).
    pub fn audit_for(&self, request_id: &str) -> Value {
        let t0 = Instant::now();
        loop {
            if let Some(r) = self
                .audit_records()
                .into_iter()
                .find(|r| r["request_id"] == request_id)
            {
                return r;
            }
            if t0.elapsed() > AUDIT_TIMEOUT {
                panic!(
                    "no audit record with request_id {request_id:?}.\n--- stdout ---\n{}",
                    self.stdout_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL) and waits for the output readers to drain.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            self.exit = c.wait().ok();
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// SIGTERM, then waits up to `grace` for a clean exit (SIGKILL after that). Returns the
    /// exit status; all output is captured afterwards.
    pub fn shutdown(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let t0 = Instant::now();
            loop {
                if let Ok(Some(st)) = c.try_wait() {
                    self.exit = Some(st);
                    break;
                }
                if t0.elapsed() > grace {
                    let _ = c.kill();
                    self.exit = c.wait().ok();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.exit
    }

    /// Sends a signal (`"TERM"`, `"HUP"`...) to the process without waiting.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().expect("sidekey already stopped");
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status();
        assert!(st.is_ok_and(|s| s.success()), "kill -{sig} {pid} failed");
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if it did not.
    /// After an exit all output has been captured.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            let c = self.child.as_mut()?;
            if let Ok(Some(st)) = c.try_wait() {
                self.child = None;
                self.exit = Some(st);
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Some(st);
            }
            if t0.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `sidekey check --config` on `config_yaml` written to a fresh dir.
    /// Returns (exit code, stdout, stderr); exit code -1 when killed by a signal.
    pub fn check(config_yaml: &str) -> (i32, String, String) {
        let dir = ConfigDir::new();
        Self::check_in(&dir, config_yaml, &[])
    }

    /// `sidekey check` on `config_yaml` written into `dir`, with extra env.
    pub fn check_in(
        dir: &ConfigDir,
        config_yaml: &str,
        env: &[(&str, &str)],
    ) -> (i32, String, String) {
        let p = dir.write_config(config_yaml);
        Self::check_path(&p, env)
    }

    /// `sidekey check --config PATH` (the file need not exist).
    pub fn check_path(path: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = Command::new(BIN);
        cmd.arg("check").arg("--config").arg(path);
        run_cmd(cmd, env)
    }

    /// Runs sidekey with arbitrary arguments (e.g. `--version`).
    pub fn run_args(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        run_cmd(cmd, env)
    }
}

fn run_cmd(mut cmd: Command, env: &[(&str, &str)]) -> (i32, String, String) {
    clean_env(&mut cmd);
    cmd.env("RUST_BACKTRACE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn sidekey");
    let out: Buf = Default::default();
    let err: Buf = Default::default();
    let r1 = pump(child.stdout.take().unwrap(), out.clone());
    let r2 = pump(child.stderr.take().unwrap(), err.clone());
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sidekey {cmd:?} did not exit within 30s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = r1.join();
    let _ = r2.join();
    let o = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    let e = String::from_utf8_lossy(&err.lock().unwrap()).into_owned();
    (status.code().unwrap_or(-1), o, e)
}

impl Drop for Sidekey {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let tail = |s: String| {
                let n = s.len();
                if n <= 16_000 {
                    return s;
                }
                let mut i = n - 16_000;
                while !s.is_char_boundary(i) {
                    i += 1;
                }
                s[i..].to_string()
            };
            eprintln!(
                "--- sidekey stderr (tail) ---\n{}",
                tail(self.stderr_text())
            );
            eprintln!(
                "--- sidekey stdout (tail) ---\n{}",
                tail(self.stdout_text())
            );
        }
    }
}
