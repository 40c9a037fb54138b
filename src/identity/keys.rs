//! Where the JWKS comes from and when it is read again.
//!
//! [`Keys`] holds the last good [`KeySet`] and reloads it from `jwks_file` or
//! `jwks_url`: once at start (a failure there is logged, never fatal: the IdP may be
//! down while sidekey starts), then only when a token names a key the set lacks, at
//! most once per `refresh_interval` after a success (sooner after a failure, so a
//! restarted IdP is picked up quickly). Refreshes are single-flight; a failed one keeps
//! serving the last good set. URLs are fetched with the hyper-util legacy client over
//! rustls with the configured upstream roots.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

use super::jwks::KeySet;
use crate::config::{JwtConfig, Roots};

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Whole fetch (connect, headers, body) deadline.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait before retrying after a failed load.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

enum Source {
    File(PathBuf),
    Url { uri: Uri, client: Box<HttpClient> },
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Url { uri, .. } => uri.to_string(),
        }
    }

    async fn load(&self) -> Result<KeySet, String> {
        let bytes = match self {
            Source::File(p) => tokio::fs::read(p).await.map_err(|e| e.to_string())?,
            Source::Url { uri, client } => tokio::time::timeout(FETCH_TIMEOUT, fetch(client, uri))
                .await
                .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))??,
        };
        KeySet::parse(&bytes).map_err(|e| e.to_string())
    }
}

async fn fetch(client: &HttpClient, uri: &Uri) -> Result<Vec<u8>, String> {
    let req = Request::get(uri.clone())
        .header(header::ACCEPT, "application/json, application/jwk-set+json")
        .header(
            header::USER_AGENT,
            concat!("sidekey/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| {
        let mut msg = e.to_string();
        if let Some(src) = std::error::Error::source(&e) {
            msg = format!("{msg}: {src}");
        }
        msg
    })?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(body.to_bytes().to_vec())
}

/// The outcome of the last load attempt, for throttling.
struct Attempt {
    at: Instant,
    ok: bool,
}

pub struct Keys {
    source: Source,
    current: ArcSwapOption<KeySet>,
    last: Mutex<Option<Attempt>>,
    interval: Duration,
}

impl Keys {
    /// Build the source and try a first load; only a broken `jwks_url` or TLS roots
    /// setup is an error, an unreachable IdP is not.
    pub async fn new(cfg: &JwtConfig, roots: &Roots) -> anyhow::Result<Keys> {
        let source = match (&cfg.jwks_file, &cfg.jwks_url) {
            (Some(f), _) => Source::File(f.clone()),
            (None, Some(url)) => Source::Url {
                uri: url.parse()?,
                client: Box::new(client(roots)?),
            },
            (None, None) => anyhow::bail!("identity.jwt needs jwks_url or jwks_file"),
        };
        let keys = Keys {
            source,
            current: ArcSwapOption::empty(),
            last: Mutex::new(None),
            interval: cfg.refresh_interval,
        };
        keys.refresh(None).await;
        Ok(keys)
    }

    /// The last good key set, if one was ever loaded.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Load the keys again unless that was done too recently. `seen` is the set the
    /// caller found lacking: if another task replaced it meanwhile, that set is
    /// returned without a new load. Returns the set in force afterwards.
    pub async fn refresh(&self, seen: Option<&Arc<KeySet>>) -> Option<Arc<KeySet>> {
        let mut last = self.last.lock().await;
        let now = self.current();
        let replaced = match (&now, seen) {
            (Some(now), Some(seen)) => !Arc::ptr_eq(now, seen),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if replaced && last.is_some() {
            return now;
        }
        if let Some(a) = last.as_ref() {
            let wait = if a.ok {
                self.interval
            } else {
                self.interval.min(RETRY_AFTER_FAILURE)
            };
            if a.at.elapsed() < wait {
                return now;
            }
        }
        let result = self.source.load().await;
        *last = Some(Attempt {
            at: Instant::now(),
            ok: result.is_ok(),
        });
        match result {
            Ok(set) => {
                tracing::info!(source = %self.source.describe(), keys = set.len(), "JWKS loaded");
                let set = Arc::new(set);
                self.current.store(Some(set.clone()));
                Some(set)
            }
            Err(why) => {
                tracing::warn!(
                    source = %self.source.describe(),
                    error = %why,
                    serving_last_good = now.is_some(),
                    "JWKS load failed; will retry on use"
                );
                now
            }
        }
    }
}

fn client(roots: &Roots) -> anyhow::Result<HttpClient> {
    let mut tls = (*crate::tls::client_config(roots.system, &roots.bundles)?).clone();
    tls.alpn_protocols.clear(); // the connector sets ALPN itself
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwks_doc() -> String {
        use base64::Engine;
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(kp.public_key_raw());
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": x}]})
            .to_string()
    }

    fn cfg(file: PathBuf, interval: Duration) -> JwtConfig {
        JwtConfig {
            jwks_url: None,
            jwks_file: Some(file),
            issuer: None,
            audiences: vec![],
            user_claim: "sub".into(),
            groups_claim: None,
            leeway_seconds: 0,
            algorithms: vec!["EdDSA".into()],
            refresh_interval: interval,
        }
    }

    #[tokio::test]
    async fn missing_source_at_start_is_not_fatal_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        let keys = Keys::new(
            &cfg(file.clone(), Duration::from_millis(50)),
            &Roots::default(),
        )
        .await
        .unwrap();
        assert!(keys.current().is_none());
        std::fs::write(&file, jwks_doc()).unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let set = keys.refresh(None).await.expect("loaded on retry");
        assert!(set.has_kid("k1"));
    }

    #[tokio::test]
    async fn refresh_is_throttled_and_a_bad_document_keeps_the_last_good_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        std::fs::write(&file, jwks_doc()).unwrap();
        let keys = Keys::new(
            &cfg(file.clone(), Duration::from_secs(3600)),
            &Roots::default(),
        )
        .await
        .unwrap();
        let first = keys.current().unwrap();
        std::fs::write(&file, jwks_doc()).unwrap();
        // Within the interval: no reload, same set.
        let again = keys.refresh(Some(&first)).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // After the interval a broken document keeps the good set.
        *keys.last.lock().await = None;
        std::fs::write(&file, "{oops").unwrap();
        let kept = keys.refresh(Some(&first)).await.unwrap();
        assert!(Arc::ptr_eq(&first, &kept));
    }
}
