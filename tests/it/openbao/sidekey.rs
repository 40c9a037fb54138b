//! The sidekey binary under test: started with a YAML config in a tempdir, JSON logs on
//! stderr (the `listening` line gives the addresses), audit records on stdout.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::{Resp, send};

pub struct Sidekey {
    child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

fn pump(r: impl std::io::Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
}

impl Sidekey {
    /// Start with `yaml` and extra environment; waits for the `listening` line.
    pub async fn start(yaml: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("sidekey.yaml");
        std::fs::write(&cfg, yaml).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidekey"));
        cmd.arg("run")
            .arg("--config")
            .arg(&cfg)
            .env_clear()
            .env("SIDEKEY_LOG_FORMAT", "json");
        cmd.env(
            "SIDEKEY_LOG",
            std::env::var("SIDEKEY_TEST_LOG").unwrap_or_else(|_| "debug".into()),
        );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sidekey");
        let (out, err) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        pump(child.stdout.take().expect("stdout"), out.clone());
        pump(child.stderr.take().expect("stderr"), err.clone());
        for _ in 0..600 {
            let found = err.lock().unwrap().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                if v["message"] != "listening" {
                    return None;
                }
                let addr = |k: &str| v[k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
                Some((addr("proxy")?, addr("admin")?))
            });
            if let Some((proxy, admin)) = found {
                return Sidekey {
                    child,
                    proxy,
                    admin,
                    out,
                    err,
                    _dir: dir,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "sidekey exited with {status}: {}",
                    err.lock().unwrap().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "sidekey did not log `listening`: {}",
            err.lock().unwrap().join("\n")
        );
    }

    /// `GET url` through the forward proxy, as `user`.
    pub async fn get(&self, user: Option<&str>, url: &str) -> Resp {
        let mut b = Request::get(url);
        if let Some(u) = user {
            b = b.header("x-sidekey-user", u);
        }
        send(
            self.proxy,
            b.body(Full::new(Bytes::new())).expect("request"),
        )
        .await
        .expect("proxy request")
    }

    pub async fn admin(&self, path: &str) -> Resp {
        let req = Request::get(path)
            .header("host", self.admin.to_string())
            .body(Full::new(Bytes::new()))
            .expect("request");
        send(self.admin, req).await.expect("admin request")
    }

    /// Sum of the samples of `metric` whose line contains every one of `labels`.
    pub async fn metric(&self, metric: &str, labels: &[&str]) -> f64 {
        let text = self.admin("/metrics").await.body;
        text.lines()
            .filter(|l| l.starts_with(metric) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Poll `/readyz` until it answers `status` (panics after `secs`).
    pub async fn wait_ready(&self, status: u16, secs: u64) {
        for _ in 0..secs * 10 {
            if self.admin("/readyz").await.status == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let last = self.admin("/readyz").await;
        let vault_lines: Vec<String> = self
            .err
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("Vault"))
            .cloned()
            .collect();
        panic!(
            "/readyz never answered {status}: {} {}\n{}",
            last.status,
            last.body,
            vault_lines.join("\n")
        );
    }

    /// The directory holding the config file (relative paths in it resolve here).
    pub fn config_dir(&self) -> std::path::PathBuf {
        self._dir.path().to_path_buf()
    }

    /// Every line sidekey wrote so far, stdout then stderr.
    pub fn output(&self) -> String {
        let mut s = self.out.lock().unwrap().join("\n");
        s.push('\n');
        s.push_str(&self.err.lock().unwrap().join("\n"));
        s
    }

    pub fn stderr_has(&self, needle: &str) -> bool {
        self.stderr_count(needle) > 0
    }

    pub fn stderr_count(&self, needle: &str) -> usize {
        self.err
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Panic if any secret appears in sidekey's output or metrics.
    pub async fn assert_no_secrets(&self, secrets: &[String]) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let all = format!("{}\n{}", self.output(), self.admin("/metrics").await.body);
        for (i, s) in secrets.iter().enumerate() {
            assert!(!s.is_empty());
            assert!(
                !all.contains(s.as_str()),
                "secret #{i} found in sidekey output or metrics"
            );
        }
    }
}

impl Drop for Sidekey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
