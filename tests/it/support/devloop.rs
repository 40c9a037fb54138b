//! Harness for the development loop: `sidekey run -- CMD` and `sidekey env` as a user
//! runs them, with every byte of output captured and signals sent to the process.
//!
//! * [`SidekeyProc`] spawns the real binary with any arguments (a clean proxy/CA
//!   environment plus the test's own), and waits for its exit or for output.
//! * [`fixed_ports`] rewrites a config's ephemeral listeners to free fixed ports, for
//!   `sidekey env` (which prints the configured address) and listener checks.
//! * [`nothing_listens`] checks that a port refuses connections.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::processes::{CLIENT_ENV_CLEARED, PROXY_ENV};
use super::sidekey::BIN;

type Buf = Arc<Mutex<Vec<u8>>>;

fn pump(mut r: impl Read + Send + 'static, buf: Buf) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = r.read(&mut chunk) {
            buf.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    })
}

/// A `sidekey` process started with arbitrary arguments.
pub struct SidekeyProc {
    child: Child,
    stdout: Buf,
    stderr: Buf,
    readers: Vec<JoinHandle<()>>,
    what: String,
}

impl SidekeyProc {
    /// `sidekey ARGS` in `cwd`, with proxy/CA/SIDEKEY_* variables cleared, then `env`.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> SidekeyProc {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(cwd);
        for k in PROXY_ENV.iter().chain(CLIENT_ENV_CLEARED).chain(&[
            "SIDEKEY_CONFIG",
            "SIDEKEY_LOG",
            "SIDEKEY_USER",
            "NODE_USE_ENV_PROXY",
        ]) {
            cmd.env_remove(k);
        }
        cmd.env("SIDEKEY_LOG_FORMAT", "json");
        for (k, v) in env {
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
        SidekeyProc {
            child,
            stdout,
            stderr,
            readers,
            what: format!("sidekey {args:?}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Both outputs, for failure messages and secret scans.
    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout_text(),
            self.stderr_text()
        )
    }

    /// Stdout lines that are audit records (JSON objects with a `request_id`).
    pub fn audit_records(&self) -> Vec<Value> {
        // The command shares stdout with the audit: a record may follow the command's
        // own output on one line (written before the command's newline), so every
        // record is read from where it starts, `{"ts":`, to the end of its JSON.
        let text = self.stdout_text();
        text.lines()
            .flat_map(|l| l.match_indices("{\"ts\":").map(move |(i, _)| &l[i..]))
            .filter_map(|s| {
                serde_json::Deserializer::from_str(s)
                    .into_iter::<Value>()
                    .next()?
                    .ok()
            })
            .filter(|v| v.get("request_id").is_some())
            .collect()
    }

    /// Waits until stdout holds `needle` (the command is up to some point).
    #[track_caller]
    pub fn wait_stdout(&mut self, needle: &str, timeout: Duration) {
        let t0 = Instant::now();
        while !self.stdout_text().contains(needle) {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.join();
                panic!(
                    "{} exited ({st}) before printing {needle:?}\n{}",
                    self.what,
                    self.output()
                );
            }
            if t0.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "{} printed no {needle:?} within {timeout:?}\n{}",
                    self.what,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` (`"TERM"`, `"INT"`) to sidekey.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
        assert!(st.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }

    /// Waits for the exit (killing and panicking after `timeout`); all output is read.
    #[track_caller]
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.join();
                return st;
            }
            if t0.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.join();
                panic!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.what,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit code (panics on a signal death, which sidekey never dies of here).
    #[track_caller]
    pub fn code(&mut self, timeout: Duration) -> i32 {
        let st = self.wait(timeout);
        st.code()
            .unwrap_or_else(|| panic!("{} died of a signal: {st}\n{}", self.what, self.output()))
    }

    fn join(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for SidekeyProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

/// `yaml` with `listen: 127.0.0.1:0` and `admin_listen: 127.0.0.1:0` set to free fixed
/// ports; returns the text and the two addresses.
pub fn fixed_ports(yaml: &str) -> (String, SocketAddr, SocketAddr) {
    let proxy: SocketAddr = format!("127.0.0.1:{}", super::upstream::dead_port())
        .parse()
        .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", super::upstream::dead_port())
        .parse()
        .unwrap();
    let text = yaml
        .replace("\nlisten: 127.0.0.1:0\n", &format!("\nlisten: {proxy}\n"))
        .replace(
            "\nadmin_listen: 127.0.0.1:0\n",
            &format!("\nadmin_listen: {admin}\n"),
        );
    assert!(
        text.contains(&proxy.to_string()),
        "no `listen: 127.0.0.1:0` in\n{yaml}"
    );
    (text, proxy, admin)
}

/// Whether connecting to `addr` is refused (nothing listens).
pub fn nothing_listens(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

/// `bash -c SCRIPT` with a clean proxy/CA environment plus `env`.
pub fn bash(script: &str, env: &[(&str, &str)]) -> super::ProcOut {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script);
    for k in PROXY_ENV.iter().chain(CLIENT_ENV_CLEARED) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    super::run_proc(cmd)
}

/// A helper process (an API stand-in, a collector) whose stdout lines are JSON.
pub struct LineProc {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl LineProc {
    /// Python running `script` (any path) with `args`, a clean client environment.
    pub fn python(script: &Path, args: &[&str]) -> LineProc {
        let mut cmd = Command::new(super::python());
        cmd.arg(script).args(args).env("PYTHONUNBUFFERED", "1");
        for k in PROXY_ENV.iter().chain(CLIENT_ENV_CLEARED) {
            cmd.env_remove(k);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        LineProc { child, lines }
    }

    /// The next line as JSON, within `timeout`.
    #[track_caller]
    pub fn next_json(&mut self, timeout: Duration) -> Value {
        let line = self
            .lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no output line within {timeout:?}: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// Stops the process and returns every line it printed that was not read yet.
    pub fn stop(mut self) -> Vec<Value> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            if let Ok(v) = serde_json::from_str(&l) {
                rest.push(v);
            }
        }
        rest
    }
}

impl Drop for LineProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
