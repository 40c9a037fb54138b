//! OpenBao for the integration tests: [`BaoProcess`], the one launcher of a real
//! `bao server -dev` (used by the Vault tests here and by the IdP of the JWT tests in
//! `jwt_support::openbao`), and [`OpenBao`], its async API for KV v2.
//!
//! Also the Vault tests' helpers, thin layers over `support`: a local OAuth token
//! endpoint and a recording upstream (`servers.rs`, both `support::Upstream`
//! responders), and sidekey (`sidekey.rs`, the `support` launcher).
//!
//! `bao` is found by `support::Tool::Bao` (`$BAO_BIN`, `./.venv/bin/bao`, `PATH`);
//! without it the tests fail saying to run `scripts/test.sh`.
#![allow(dead_code, unused_imports)]

pub mod servers;
pub mod sidekey;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::support;
pub use crate::support::free_port;

pub use servers::{TokenServer, Upstream};
pub use sidekey::Sidekey;

/// A response, read whole, its body as text.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl From<support::Resp> for Resp {
    fn from(r: support::Resp) -> Resp {
        Resp {
            body: r.text(),
            status: r.status,
            headers: r.headers,
        }
    }
}

/// Send one request over a fresh HTTP/1.1 connection to `addr` (the URI may be
/// absolute-form, for the forward proxy), with the tests' one client.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> anyhow::Result<Resp> {
    let req = req.map(support::full_body);
    support::try_request(addr, req)
        .await
        .map(Resp::from)
        .map_err(anyhow::Error::msg)
}

/// One OpenBao HTTP API call: `/v1/{path}` (`path` already encoded) with `token`.
pub async fn bao_api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    token: Option<&str>,
) -> anyhow::Result<Resp> {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("/v1/{path}"))
        .header("host", addr.to_string());
    if let Some(t) = token {
        b = b.header("x-vault-token", t);
    }
    let body = body.map(|v| v.to_string()).unwrap_or_default();
    send(addr, b.body(Full::new(Bytes::from(body)))?).await
}

pub fn random_token(prefix: &str) -> String {
    let s: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(24)
        .collect();
    format!("{prefix}-{s}")
}

/// Segment-wise percent-encoding of a logical KV path (so `a%2Fb` stays one key).
pub fn encode_path(logical: &str) -> String {
    const SEG: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'@')
        .remove(b'+');
    logical
        .split('/')
        .map(|s| utf8_percent_encode(s, SEG).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// A `bao server -dev` process on a loopback port: in-memory, unsealed, KV v2 at
/// `secret/`, a random root token, its log in a temp dir. Killed on drop.
pub struct BaoProcess {
    pub addr: SocketAddr,
    pub root_token: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// How long a dev server may take to answer `sys/health` (the machine is noisy).
pub const BAO_START_TIMEOUT: Duration = Duration::from_secs(60);

impl BaoProcess {
    /// Spawns the server on `port` (not yet ready: see [`wait_healthy`](Self::wait_healthy)).
    pub fn spawn(port: u16) -> BaoProcess {
        let bao = support::Tool::Bao.path();
        let dir = tempfile::tempdir().expect("tempdir");
        let root_token = random_token("root");
        let log = dir.path().join("bao.log");
        let out = std::fs::File::create(&log).expect("bao log");
        let child = Command::new(&bao)
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={root_token}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .env("HOME", dir.path())
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("bao log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} server -dev: {e}", bao.display()));
        BaoProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            root_token,
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    /// Spawns a server on a free loopback port and waits until it is healthy. The
    /// port is free when picked but another process may take it before `bao` binds
    /// it, so a start that fails with "address already in use" is tried again on a
    /// new port.
    pub async fn start_fresh() -> BaoProcess {
        for _ in 0..4 {
            let mut process = BaoProcess::spawn(support::free_port());
            match process.try_wait_healthy().await {
                Ok(()) => return process,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("bao exited during start:\n{log}"),
            }
        }
        panic!("bao could not bind a free loopback port in four tries");
    }

    /// Waits until `sys/health` answers 200; panics with the server's log when it
    /// exits or is not healthy within [`BAO_START_TIMEOUT`].
    pub async fn wait_healthy(&mut self) {
        if let Err(log) = self.try_wait_healthy().await {
            panic!("bao exited during start:\n{log}");
        }
    }

    /// [`wait_healthy`](Self::wait_healthy), but an exit during start is returned
    /// (with the server's log) instead of a panic.
    async fn try_wait_healthy(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("exit {status}\n{}", self.log_text()));
            }
            if let Ok(r) = bao_api(self.addr, "GET", "sys/health", None, None).await
                && r.status == 200
            {
                return Ok(());
            }
            assert!(
                t0.elapsed() < BAO_START_TIMEOUT,
                "OpenBao dev server not healthy on {} within {BAO_START_TIMEOUT:?}:\n{}",
                self.addr,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stop the server (its in-memory data is gone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for BaoProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An OpenBao dev server with the async API the Vault tests use.
pub struct OpenBao {
    pub addr: SocketAddr,
    pub root_token: String,
    process: BaoProcess,
}

impl OpenBao {
    pub async fn start() -> Self {
        Self::from_process(BaoProcess::start_fresh().await)
    }

    /// Starts on a fixed `port` (a restart on the port a sidecar already knows).
    pub async fn start_on(port: u16) -> Self {
        let mut process = BaoProcess::spawn(port);
        process.wait_healthy().await;
        Self::from_process(process)
    }

    fn from_process(process: BaoProcess) -> Self {
        OpenBao {
            addr: process.addr,
            root_token: process.root_token.clone(),
            process,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Call the HTTP API at `/v1/{path}` (`path` already encoded) with `token`.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&str>,
    ) -> anyhow::Result<Resp> {
        bao_api(self.addr, method, path, body.as_ref(), token).await
    }

    /// Root-token API call; panics on transport errors.
    pub async fn api(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Resp {
        self.raw(method, path, body, Some(&self.root_token))
            .await
            .expect("OpenBao API call")
    }

    /// Write a KV v2 secret at a logical path under `secret/`; its new version.
    pub async fn kv_put(&self, logical: &str, data: serde_json::Value) -> u64 {
        let r = self
            .api(
                "POST",
                &format!("secret/data/{}", encode_path(logical)),
                Some(serde_json::json!({ "data": data })),
            )
            .await;
        assert_eq!(r.status, 200, "kv put {logical}: {}", r.body);
        r.json()["data"]["version"].as_u64().expect("version")
    }

    /// The data map of a KV v2 secret, if any.
    pub async fn kv_get(&self, logical: &str) -> Option<serde_json::Value> {
        let r = self
            .api(
                "GET",
                &format!("secret/data/{}", encode_path(logical)),
                None,
            )
            .await;
        (r.status == 200).then(|| r.json()["data"]["data"].clone())
    }

    /// Stop the server (its in-memory data is gone).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// A sidekey config with one vault block, `credentials:` and `routes:` YAML (indented
/// two spaces), and `api.test` resolved to the recording upstream.
pub fn config(
    bao_url: &str,
    vault_auth: &str,
    upstream: SocketAddr,
    credentials: &str,
    routes: &str,
) -> String {
    format!(
        "{}default: deny\n\
         upstreams:\n  api.test: {upstream}\n\
         vault:\n  address: {bao_url}\n  auth: {vault_auth}\n  kv_mount: secret\n  timeout: 2s\n\
         credentials:\n{credentials}\nroutes:\n{routes}\n",
        support::yaml_head("test-agent")
    )
}
