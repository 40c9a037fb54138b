//! In-memory fakes of the store's backends (a KV v2 store and a token endpoint that
//! rotates refresh tokens and rejects used ones), for unit tests under a paused clock.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

use super::Token;
use super::backend::{
    ClientCreds, Grant, Kv, KvError, OAuthError, SecretMap, TokenEndpoint, Versioned,
};
use crate::config::OAuthClient;

#[derive(Default)]
pub struct MemKv {
    data: Mutex<HashMap<String, (SecretMap, u64)>>,
    pub down: AtomicBool,
    pub reads: AtomicUsize,
    pub writes: AtomicUsize,
    /// Simulated latency of each call (on tokio's clock).
    pub delay_ms: std::sync::atomic::AtomicU64,
}

impl MemKv {
    pub fn put(&self, path: &str, v: serde_json::Value) -> u64 {
        let mut d = self.data.lock().unwrap();
        let version = d.get(path).map(|e| e.1).unwrap_or(0) + 1;
        d.insert(
            path.into(),
            (v.as_object().cloned().unwrap_or_default(), version),
        );
        version
    }

    pub fn field(&self, path: &str, field: &str) -> Option<String> {
        let d = self.data.lock().unwrap();
        d.get(path)?.0.get(field)?.as_str().map(String::from)
    }

    pub fn version(&self, path: &str) -> u64 {
        self.data
            .lock()
            .unwrap()
            .get(path)
            .map(|e| e.1)
            .unwrap_or(0)
    }

    async fn latency(&self) -> Result<(), KvError> {
        let ms = self.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if self.down.load(Ordering::Relaxed) {
            return Err(KvError::Unavailable("cannot reach Vault".into()));
        }
        Ok(())
    }
}

impl Kv for MemKv {
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Versioned, KvError>> {
        Box::pin(async move {
            self.latency().await?;
            self.reads.fetch_add(1, Ordering::SeqCst);
            let d = self.data.lock().unwrap();
            let (data, version) = d.get(path).cloned().ok_or(KvError::NotFound)?;
            Ok(Versioned { data, version })
        })
    }

    fn write_cas<'a>(
        &'a self,
        path: &'a str,
        data: SecretMap,
        cas: u64,
    ) -> BoxFuture<'a, Result<u64, KvError>> {
        Box::pin(async move {
            self.latency().await?;
            self.writes.fetch_add(1, Ordering::SeqCst);
            let mut d = self.data.lock().unwrap();
            let current = d.get(path).map(|e| e.1).unwrap_or(0);
            if current != cas {
                return Err(KvError::CasMismatch);
            }
            d.insert(path.into(), (data, current + 1));
            Ok(current + 1)
        })
    }

    fn health(&self) -> Result<(), String> {
        if self.down.load(Ordering::Relaxed) {
            Err("Vault unreachable".into())
        } else {
            Ok(())
        }
    }
}

/// Issues `at-N` / `rt-N`; each refresh token works once.
pub struct FakeOAuth {
    pub calls: AtomicUsize,
    pub down: AtomicBool,
    pub expires_in: u64,
    pub delay_ms: u64,
    valid: Mutex<(HashSet<String>, u64)>,
}

impl FakeOAuth {
    pub fn new(expires_in: u64, valid_refresh: &[&str]) -> Self {
        FakeOAuth {
            calls: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            expires_in,
            delay_ms: 5,
            valid: Mutex::new((valid_refresh.iter().map(|s| s.to_string()).collect(), 0)),
        }
    }

    pub fn is_valid(&self, rt: &str) -> bool {
        self.valid.lock().unwrap().0.contains(rt)
    }
}

impl TokenEndpoint for FakeOAuth {
    fn request<'a>(
        &'a self,
        _c: &'a OAuthClient,
        creds: ClientCreds,
        grant: Grant<'a>,
    ) -> BoxFuture<'a, Result<Token, OAuthError>> {
        Box::pin(async move {
            assert!(!creds.id.expose_secret().is_empty());
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
            if self.down.load(Ordering::Relaxed) {
                return Err(OAuthError::Unavailable(
                    "cannot reach the token endpoint".into(),
                ));
            }
            let mut v = self.valid.lock().unwrap();
            if let Grant::RefreshToken(rt) = grant
                && !v.0.remove(rt.expose_secret())
            {
                return Err(OAuthError::InvalidGrant);
            }
            v.1 += 1;
            let n = v.1;
            let refresh = matches!(grant, Grant::RefreshToken(_)).then(|| format!("rt-{n}"));
            if let Some(r) = &refresh {
                v.0.insert(r.clone());
            }
            Ok(Token {
                refresh_token: refresh.map(SecretString::from),
                expires_at: Some(SystemTime::now() + Duration::from_secs(self.expires_in)),
                ..Token::bare(format!("at-{n}"))
            })
        })
    }
}

/// What [`FakeMint`] was asked, with every secret exposed for the test to verify.
#[derive(Debug, Clone)]
pub struct Seen {
    pub url: String,
    pub bearer: Option<String>,
    /// OAuth client id and secret, however they are to be sent.
    pub client: Option<(String, Option<String>)>,
    pub form: Vec<(String, String)>,
    pub json: Option<serde_json::Value>,
}

impl Seen {
    pub fn form(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A minting endpoint issuing `minted-N`, valid for `expires_in` seconds; it can be
/// down (`Unavailable`) or refuse (`Refused`).
pub struct FakeMint {
    pub down: AtomicBool,
    pub refuse: AtomicBool,
    pub expires_in: u64,
    pub seen: Mutex<Vec<Seen>>,
}

impl FakeMint {
    pub fn new(expires_in: u64) -> Self {
        FakeMint {
            down: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            expires_in,
            seen: Mutex::new(Vec::new()),
        }
    }

    pub fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no mint yet")
    }
}

impl super::MintEndpoint for FakeMint {
    fn post(
        &self,
        req: super::backend::MintRequest,
    ) -> BoxFuture<'_, Result<SecretMap, super::backend::MintError>> {
        use super::backend::{MintAuth, MintBody, MintError};
        Box::pin(async move {
            let (bearer, client) = match &req.auth {
                MintAuth::Bearer(t) => (Some(t.expose_secret().to_string()), None),
                MintAuth::Client(c, _) => (
                    None,
                    Some((
                        c.id.expose_secret().to_string(),
                        c.secret.as_ref().map(|s| s.expose_secret().to_string()),
                    )),
                ),
                MintAuth::None => (None, None),
            };
            let (form, json) = match &req.body {
                MintBody::Form(f) => (
                    f.iter()
                        .map(|(k, v)| (k.to_string(), v.expose_secret().to_string()))
                        .collect(),
                    None,
                ),
                MintBody::Json(j) => (vec![], Some(j.clone())),
            };
            let n = {
                let mut seen = self.seen.lock().unwrap();
                seen.push(Seen {
                    url: req.url.clone(),
                    bearer,
                    client,
                    form,
                    json,
                });
                seen.len()
            };
            tokio::time::sleep(Duration::from_millis(5)).await;
            if self.down.load(Ordering::Relaxed) {
                return Err(MintError::Unavailable(
                    "cannot reach the token endpoint".into(),
                ));
            }
            if self.refuse.load(Ordering::Relaxed) {
                return Err(MintError::Refused("401 Unauthorized".into()));
            }
            let v = serde_json::json!({
                "token": format!("minted-{n}"),
                "access_token": format!("minted-{n}"),
                "expires_in": self.expires_in,
            });
            Ok(v.as_object().cloned().unwrap_or_default())
        })
    }
}
