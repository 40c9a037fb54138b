//! Local HTTP servers for the Vault tests, both the one recording `support::Upstream`
//! with a responder: an OAuth token endpoint that rotates refresh tokens and rejects
//! used ones, and an upstream that records each request's `Authorization`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http::Response;

use crate::support::{self, Recorded, Responder, ResponseFuture, json_response};

fn json(status: u16, v: serde_json::Value) -> Response<bytes::Bytes> {
    json_response(status, &v)
}

fn form_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[derive(Default)]
pub struct TokenState {
    pub valid_refresh: HashSet<String>,
    pub issued: Vec<String>,
    pub refresh_hits: usize,
    pub cc_hits: usize,
    pub rejected: usize,
    n: u64,
}

/// `POST /token`: `refresh_token` and `client_credentials` grants for one client.
pub struct TokenServer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<TokenState>>,
    _server: support::Upstream,
}

/// The token endpoint's answer to one recorded request.
fn token_answer(
    st: &Mutex<TokenState>,
    id: &str,
    secret: &str,
    expires_in: u64,
    req: &Recorded,
) -> Response<bytes::Bytes> {
    let form: HashMap<String, String> = String::from_utf8_lossy(&req.body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect();
    let (cid, csec) = match req
        .header("authorization")
        .and_then(|b| b.strip_prefix("Basic "))
    {
        Some(b64) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            let raw = String::from_utf8_lossy(&raw).into_owned();
            let (a, b) = raw.split_once(':').unwrap_or((&raw, ""));
            (form_decode(a), form_decode(b))
        }
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if cid != id || csec != secret {
        return json(401, serde_json::json!({"error": "invalid_client"}));
    }
    let mut s = st.lock().unwrap();
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let refresh = match grant.as_str() {
        "refresh_token" => {
            s.refresh_hits += 1;
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            if !s.valid_refresh.remove(&rt) {
                s.rejected += 1;
                return json(400, serde_json::json!({"error": "invalid_grant"}));
            }
            true
        }
        "client_credentials" => {
            s.cc_hits += 1;
            false
        }
        _ => return json(400, serde_json::json!({"error": "unsupported_grant_type"})),
    };
    s.n += 1;
    let at = super::random_token(&format!("at{}", s.n));
    s.issued.push(at.clone());
    let mut body =
        serde_json::json!({"access_token": at, "token_type": "Bearer", "expires_in": expires_in});
    if refresh {
        let rt = super::random_token(&format!("rt{}", s.n));
        s.valid_refresh.insert(rt.clone());
        s.issued.push(rt.clone());
        body["refresh_token"] = serde_json::Value::String(rt);
    }
    json(200, body)
}

impl TokenServer {
    /// Tokens live `expires_in` seconds; each answer is delayed by `delay` (widens races).
    pub async fn start(
        client_id: &str,
        client_secret: &str,
        expires_in: u64,
        delay: Duration,
    ) -> Self {
        let state = Arc::new(Mutex::new(TokenState::default()));
        let (st, id, secret) = (
            state.clone(),
            client_id.to_string(),
            client_secret.to_string(),
        );
        let respond: Responder = Arc::new(move |req: Recorded| {
            let (st, id, secret) = (st.clone(), id.clone(), secret.clone());
            let fut: ResponseFuture = Box::pin(async move {
                tokio::time::sleep(delay).await;
                Some(token_answer(&st, &id, &secret, expires_in, &req))
            });
            fut
        });
        let server = support::Upstream::builder().responder(respond).start();
        TokenServer {
            addr: server.addr,
            state,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// A refresh token the server will accept once.
    pub fn grant(&self) -> String {
        let rt = super::random_token("rt0");
        let mut s = self.state.lock().unwrap();
        s.valid_refresh.insert(rt.clone());
        s.issued.push(rt.clone());
        rt
    }

    pub fn is_valid(&self, rt: &str) -> bool {
        self.state.lock().unwrap().valid_refresh.contains(rt)
    }

    pub fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }

    pub fn hits(&self) -> (usize, usize, usize) {
        let s = self.state.lock().unwrap();
        (s.refresh_hits, s.cc_hits, s.rejected)
    }
}

/// Answers 200 to everything and records each request's `Authorization` header.
pub struct Upstream {
    pub addr: SocketAddr,
    server: support::Upstream,
}

impl Upstream {
    pub async fn start() -> Self {
        Self::start_refusing(|_| false).await
    }

    /// Answers 401 to requests whose `Authorization` value `refuse` picks, 200 otherwise.
    pub async fn start_refusing(refuse: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        let server = support::Upstream::builder()
            .responder(support::responder(move |req| {
                Some(if refuse(req.header("authorization").unwrap_or("")) {
                    json(
                        401,
                        serde_json::json!({"ok": false, "error": "invalid_token"}),
                    )
                } else {
                    json(200, serde_json::json!({"ok": true}))
                })
            }))
            .start();
        Upstream {
            addr: server.addr,
            server,
        }
    }

    /// The `Authorization` header of every request so far, in order.
    pub fn auths(&self) -> Vec<Option<String>> {
        self.server
            .requests()
            .iter()
            .map(|r| r.header("authorization").map(str::to_string))
            .collect()
    }

    pub fn last_auth(&self) -> Option<String> {
        self.auths().pop().flatten()
    }
}
