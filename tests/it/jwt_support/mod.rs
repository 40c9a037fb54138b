//! Harness for the JWT identity integration tests, a thin layer over `support`: the
//! sidekey launcher (with this area's config head and a `prepare` hook for key and
//! secret files), sync requests through the tests' one HTTP client, a recording
//! upstream / JWKS server (`server.rs`), an OpenBao IdP (`openbao.rs`). Signing keys
//! live in `keys.rs`.
#![allow(dead_code)]

pub mod keys;
pub mod openbao;
mod server;

pub use server::TestServer;

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support;
pub use crate::support::free_port;

/// A running sidekey process. Killed on drop; `Deref`s to [`support::Sidekey`].
pub struct Sidekey {
    inner: support::Sidekey,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

impl Deref for Sidekey {
    type Target = support::Sidekey;

    fn deref(&self) -> &support::Sidekey {
        &self.inner
    }
}

impl Sidekey {
    /// Start sidekey on `body` (everything after `version`, `agent`, `listen` and
    /// `admin_listen`). `prepare` may write files (keys, secrets) into the config dir.
    pub fn start(body: &str, prepare: impl FnOnce(&Path)) -> Sidekey {
        let text = format!("{}{body}", support::yaml_head("jwt-test-agent"));
        let inner = support::Sidekey::builder(&text).prepare(prepare).start();
        Sidekey {
            proxy: inner.proxy_addr,
            admin: inner.admin_addr,
            inner,
        }
    }

    /// Send `GET http://{host}{path}` through the proxy with extra headers.
    pub fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let url = format!("http://{host}{path}");
        support::block_on(support::proxy_get(self.proxy, &url, headers)).into()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.inner.dir.path().join(name)
    }
}

/// A response read whole: status, headers (names lower-case), body as text.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl From<support::Resp> for Response {
    fn from(r: support::Resp) -> Response {
        Response {
            status: r.status,
            headers: r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: r.text(),
        }
    }
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

/// A plain request to a local HTTP API (OpenBao), JSON body optional; `path` is the
/// whole request path (`/v1/...`).
pub fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let path = path.strip_prefix("/v1/").unwrap_or(path);
    let r = support::block_on(crate::openbao::bao_api(addr, method, path, body, token))
        .unwrap_or_else(|e| panic!("{method} /v1/{path} on {addr}: {e}"));
    Response {
        status: r.status,
        headers: r
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: r.body,
    }
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
