//! Harness for the connect tests (`tests/it/connect/`).
//!
//! * [`OidcProvider`]: the real npm `oidc-provider` (`tests/node/provider.mjs`) under
//!   node on a free loopback port, as the OAuth provider users connect and as the
//!   `verify_user` IdP. Its stdout lines (grant events, with the code and verifier it
//!   received, so tests can look for them elsewhere) are kept.
//! * [`Proc`]: the sidekey binary as `run` or `connect`, with its listening addresses
//!   (proxy, admin, connect) and every output line.
//! * [`browse`]: one connect flow in `tests/py/connect_flow.py` (httpx, cookies kept).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;

use crate::openbao::{Resp, send};

type Lines = Arc<Mutex<Vec<String>>>;

fn pump(r: impl std::io::Read + Send + 'static, sink: Lines) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
}

/// `tests/node/`, where `npm ci` installed oidc-provider.
fn node_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        d.join("node_modules/oidc-provider").is_dir(),
        "oidc-provider is not installed: run scripts/test.sh (or `npm ci --prefix tests/node`)"
    );
    d
}

/// The running oidc-provider.
pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    out: Lines,
    err: Lines,
}

impl OidcProvider {
    /// Start with these clients (`client_id`, `client_secret`, `redirect_uris`) and an
    /// access token lifetime in seconds.
    pub fn start(clients: Value, access_ttl: u64) -> OidcProvider {
        let node = std::env::var("SIDEKEY_TEST_NODE").unwrap_or_else(|_| "node".into());
        let dir = node_dir();
        let mut child = Command::new(node)
            .arg(dir.join("provider.mjs"))
            .current_dir(&dir)
            .env("PROVIDER_CLIENTS", clients.to_string())
            .env("PROVIDER_ACCESS_TTL", access_ttl.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start node tests/node/provider.mjs (is node installed?)");
        let (out, err): (Lines, Lines) = Default::default();
        pump(child.stdout.take().unwrap(), out.clone());
        pump(child.stderr.take().unwrap(), err.clone());
        let t0 = Instant::now();
        loop {
            let issuer = out.lock().unwrap().iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                v["issuer"].as_str().map(String::from)
            });
            if let Some(issuer) = issuer {
                return OidcProvider {
                    child,
                    issuer,
                    out,
                    err,
                };
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "oidc-provider exited ({st}): {}",
                    err.lock().unwrap().join("\n")
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "oidc-provider did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its grant events (`{"event": "grant.success", "grant_type": ...}`).
    pub fn events(&self) -> Vec<Value> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("event").is_some())
            .collect()
    }

    /// How many `grant_type` token requests it answered (any outcome).
    pub fn grants(&self, grant_type: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e["grant_type"] == grant_type)
            .count()
    }

    /// Every code and PKCE verifier it received at its token endpoint.
    pub fn received_secrets(&self) -> Vec<String> {
        let mut v = Vec::new();
        for e in self.events() {
            for k in ["code", "code_verifier", "refresh_token"] {
                if let Some(s) = e[k].as_str().filter(|s| s.len() >= 16) {
                    v.push(s.to_string());
                }
            }
        }
        v
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sidekey process (`run` or `connect`).
pub struct Proc {
    child: Child,
    pub proxy: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub connect: Option<SocketAddr>,
    out: Lines,
    err: Lines,
    pub dir: tempfile::TempDir,
}

impl Proc {
    /// Write `yaml` (and `files`) to a fresh dir and start `sidekey SUBCOMMAND --config`.
    pub fn start(sub: &str, yaml: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> Proc {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, body) in files {
            std::fs::write(dir.path().join(name), body).expect("write file");
        }
        let cfg = dir.path().join("sidekey.yaml");
        std::fs::write(&cfg, yaml).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sidekey"))
            .arg(sub)
            .arg("--config")
            .arg(&cfg)
            .env_clear()
            .env("SIDEKEY_LOG_FORMAT", "json")
            .env("SIDEKEY_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sidekey");
        let (out, err): (Lines, Lines) = Default::default();
        pump(child.stdout.take().unwrap(), out.clone());
        pump(child.stderr.take().unwrap(), err.clone());
        let t0 = Instant::now();
        loop {
            let found = err.lock().unwrap().iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                let msg = v["message"].as_str()?;
                if !msg.starts_with("listening") {
                    return None;
                }
                let addr = |k: &str| v[k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
                Some((addr("proxy"), addr("admin")?, addr("connect")))
            });
            if let Some((proxy, admin, connect)) = found {
                return Proc {
                    child,
                    proxy,
                    admin,
                    connect,
                    out,
                    err,
                    dir,
                };
            }
            if let Ok(Some(st)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "sidekey {sub} exited ({st}): {}",
                    err.lock().unwrap().join("\n")
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "sidekey {sub} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET url` through the forward proxy as `user`.
    pub async fn get(&self, user: &str, url: &str) -> Resp {
        let req = Request::get(url)
            .header("x-sidekey-user", user)
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(self.proxy.expect("a proxy listener"), req)
            .await
            .expect("proxy request")
    }

    /// `GET path` on the connect listener, with an optional `Cookie` header.
    pub async fn page(&self, path_and_query: &str, cookie: Option<&str>) -> Resp {
        let addr = self.connect.expect("a connect listener");
        let mut b = Request::get(path_and_query).header("host", addr.to_string());
        if let Some(c) = cookie {
            b = b.header("cookie", c);
        }
        send(addr, b.body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("connect request")
    }

    /// `GET path` on the admin listener.
    pub async fn admin(&self, path: &str) -> Resp {
        let req = Request::get(path)
            .header("host", self.admin.to_string())
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(self.admin, req).await.expect("admin request")
    }

    /// The value of the `sidekey_connect_total` sample with these labels (0 if none).
    pub async fn connect_total(&self, credential: &str, result: &str) -> f64 {
        let text = self.admin("/metrics").await.body;
        let want =
            format!("sidekey_connect_total{{credential=\"{credential}\",result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&want)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Every line written so far, stdout then stderr.
    pub fn output(&self) -> String {
        format!(
            "{}\n{}",
            self.out.lock().unwrap().join("\n"),
            self.err.lock().unwrap().join("\n")
        )
    }

    /// The `event: connect` audit records so far.
    pub fn connect_records(&self) -> Vec<Value> {
        self.out
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "connect")
            .collect()
    }

    /// Wait until `n` connect records were written; all of them.
    pub fn wait_connect_records(&self, n: usize) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let r = self.connect_records();
            if r.len() >= n {
                return r;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "expected {n} connect audit records:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sidekey output ---\n{}", self.output());
        }
    }
}

/// Run `tests/py/connect_flow.py URL --login LOGIN ARGS..`; its JSON answer.
pub fn browse(url: &str, login: &str, args: &[&str]) -> Value {
    let mut all = vec![url, "--login", login];
    all.extend_from_slice(args);
    super::run_py_json("connect_flow.py", &all, &[])
}

/// A random signing key (48 characters).
pub fn signing_key() -> String {
    crate::openbao::random_token("key-0123456789abcdef")
}

/// Panic when any of `secrets` appears in any of `haystacks` (named for the message).
pub fn assert_absent(haystacks: &[(&str, &str)], secrets: &[String]) {
    for (i, s) in secrets.iter().enumerate() {
        assert!(s.len() >= 8, "secret #{i} is too short to search for");
        for (name, text) in haystacks {
            assert!(!text.contains(s.as_str()), "secret #{i} found in {name}");
        }
    }
}

/// The decoded value of query parameter `key` in `url`.
pub fn query_value(url: &str, key: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == key).then(|| super::pct_decode(&v.replace('+', " ")))
    })
}
