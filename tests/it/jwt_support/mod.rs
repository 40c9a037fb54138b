//! Harness for the JWT identity integration tests: runs the real `sidekey` binary on a
//! config in a temp dir, talks HTTP to it as a forward proxy, and gives it a local
//! recording upstream and a local JWKS server. Signing keys live in `keys.rs`.
#![allow(dead_code)]

pub mod keys;
pub mod openbao;
mod server;

pub use server::TestServer;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running sidekey process. Killed on drop.
pub struct Sidekey {
    child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    audit: Arc<Mutex<Vec<String>>>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Sidekey {
    /// Start sidekey on `body` (everything after `version`, `agent`, `listen` and
    /// `admin_listen`). `prepare` may write files (keys, secrets) into the config dir.
    pub fn start(body: &str, prepare: impl FnOnce(&Path)) -> Sidekey {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(dir.path());
        let config = dir.path().join("sidekey.yaml");
        let text = format!(
            "version: 1\nagent: jwt-test-agent\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n{body}"
        );
        std::fs::write(&config, text).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sidekey"))
            .args(["run", "--config"])
            .arg(&config)
            .env("SIDEKEY_LOG_FORMAT", "json")
            .env("SIDEKEY_LOG", "info,sidekey=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sidekey");
        let audit = Arc::new(Mutex::new(Vec::new()));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = audit.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = tx.send(v);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let Ok(ready) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!(
                "sidekey did not start; stderr:\n{}",
                logs.lock().unwrap().join("\n")
            );
        };
        let addr = |k: &str| {
            ready[k]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no `{k}` address in {ready}"))
        };
        Sidekey {
            proxy: addr("proxy"),
            admin: addr("admin"),
            child,
            dir,
            audit,
            logs,
        }
    }

    /// Send `GET http://{host}{path}` through the proxy with extra headers.
    pub fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req =
            format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        http_exchange(self.proxy, &req)
    }

    /// The audit record with this request id (waits for it to be written).
    pub fn audit_for(&self, request_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for line in self.audit.lock().unwrap().iter() {
                if let Ok(v) = serde_json::from_str::<Value>(line)
                    && v["request_id"] == request_id
                {
                    return v;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no audit record for {request_id}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything sidekey wrote so far: stdout (audit) and stderr (logs).
    pub fn all_output(&self) -> String {
        let mut out = self.audit.lock().unwrap().join("\n");
        out.push('\n');
        out.push_str(&self.logs.lock().unwrap().join("\n"));
        out
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Sidekey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }

    pub fn request_id(&self) -> String {
        self.header("x-sidekey-request-id")
            .expect("x-sidekey-request-id")
            .to_string()
    }

    /// The sidekey error code (header and body agree).
    pub fn error(&self) -> Option<String> {
        let code = self.header("x-sidekey-error")?.to_string();
        assert_eq!(self.json()["error"], code.as_str());
        Some(code)
    }
}

/// A plain request to a local HTTP API (OpenBao), JSON body optional.
pub fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("X-Vault-Token: {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    http_exchange(addr, &req)
}

/// One request on a fresh connection; reads until the server closes.
pub fn http_exchange(addr: SocketAddr, request: &str) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    // One request per connection: the proxy closes after answering.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the IdP puts in its tokens, as the config must expect it.
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub user_claim: &'a str,
}

/// The config body the JWT tests share: `jwks` is the `jwks_url:`/`jwks_file:` line,
/// `upstream` the recording server behind `api.test`. Routes on `api.test`:
/// `/me/*` assistant, `/hr/*` claw for group `hr-admins`, `/alice/*` claw for user
/// `alice`, `/open/*` passthrough.
pub fn config(jwks: &str, upstream: SocketAddr) -> String {
    let expect = Expect {
        issuer: keys::ISSUER,
        audience: keys::AUDIENCE,
        user_claim: "sub",
    };
    config_for(jwks, upstream, &expect)
}

/// [`config`] for another issuer, audience and user claim.
pub fn config_for(jwks: &str, upstream: SocketAddr, expect: &Expect<'_>) -> String {
    format!(
        r#"default: deny
identity:
  header: x-sidekey-user
  mode: jwt
  jwt:
    {jwks}
    issuer: "{iss}"
    audiences: ["{aud}"]
    user_claim: {user_claim}
    groups_claim: groups
    leeway_seconds: 5
    algorithms: [RS256, ES256]
    refresh_interval: 1s
upstreams:
  api.test: {upstream}
credentials:
  bot: {{source: file, file: bot.txt}}
  user-tok: {{source: file, file: "users/{{user}}/tok.txt"}}
routes:
  - {{name: me, match: {{host: api.test, path: "/me/*"}}, auth: assistant, credential: user-tok}}
  - {{name: hr, match: {{host: api.test, path: "/hr/*"}}, auth: claw, credential: bot, allow: {{groups: [hr-admins]}}}}
  - {{name: alice-only, match: {{host: api.test, path: "/alice/*"}}, auth: claw, credential: bot, allow: {{users: [alice]}}}}
  - {{name: open, match: {{host: api.test, path: "/open/*"}}, auth: passthrough}}
"#,
        iss = expect.issuer,
        aud = expect.audience,
        user_claim = expect.user_claim,
    )
}

/// Credentials the shared config reads: a bot token and per-user tokens.
pub fn write_secrets(dir: &Path) {
    std::fs::write(dir.join("bot.txt"), "bot-token\n").unwrap();
    for user in ["alice", "bob"] {
        let d = dir.join("users").join(user);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("tok.txt"), format!("{user}-token\n")).unwrap();
    }
}

/// The identity header with a bearer token.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
