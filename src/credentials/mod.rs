//! Credentials: from a [`CredentialSpec`] and a user to a [`Token`] to inject.
//!
//! One file per source (`env`, `file`, `vault`, `oauth`), and this file owns the cache
//! in front of them: moka, keyed by (credential, user), each entry living until its
//! token's `expires_at` minus [`EXPIRY_MARGIN`] (or the credential's `cache_ttl`).
//! Concurrent misses for one key share one lookup. Failures are never cached.

mod env;
mod file;
pub mod template;
mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::Expiry;
use moka::future::Cache;

pub use token::{Token, format_expiry, parse_expiry};

use crate::config::{CredentialSpec, SourceSpec};
use crate::metrics::Metrics;

/// A cached token is dropped this long before it expires, so none goes out stale.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Why no token could be had. Mapped to the contract's errors by the proxy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredError {
    #[error("no credential stored")]
    Missing,
    #[error("credential expired and could not be refreshed")]
    Expired,
    #[error("credential store unavailable: {0}")]
    Unavailable(String),
    #[error("stored credential is malformed: {0}")]
    Invalid(String),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    credential: Arc<str>,
    user: Option<Arc<str>>,
}

#[derive(Clone)]
struct Entry {
    token: Arc<Token>,
    ttl: Duration,
}

struct EntryExpiry;

impl Expiry<Key, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _k: &Key,
        v: &Entry,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

pub struct CredentialStore {
    cache: Cache<Key, Entry>,
    metrics: Arc<Metrics>,
}

impl CredentialStore {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder()
            .max_capacity(100_000)
            .expire_after(EntryExpiry)
            .build();
        CredentialStore { cache, metrics }
    }

    /// The token for `spec` (and `user`, for per-user credentials).
    pub async fn get(
        &self,
        spec: &Arc<CredentialSpec>,
        user: Option<&str>,
    ) -> Result<Arc<Token>, CredError> {
        let key = Key {
            credential: spec.name.clone(),
            user: if spec.per_user() {
                user.map(Arc::from)
            } else {
                None
            },
        };
        let result = self
            .cache
            .entry(key)
            .or_try_insert_with(self.fetch(spec, user))
            .await;
        let label = match &result {
            Ok(e) if e.is_fresh() => "miss",
            Ok(_) => "hit",
            Err(_) => "error",
        };
        self.metrics
            .credential_lookup(&spec.name, spec.source_name(), label);
        result
            .map(|e| e.into_value().token)
            .map_err(|e| (*e).clone())
    }

    /// Drop a cached token (after the upstream refused it).
    pub async fn invalidate(&self, spec: &CredentialSpec, user: Option<&str>) {
        let key = Key {
            credential: spec.name.clone(),
            user: if spec.per_user() {
                user.map(Arc::from)
            } else {
                None
            },
        };
        self.cache.invalidate(&key).await;
    }

    async fn fetch(&self, spec: &CredentialSpec, user: Option<&str>) -> Result<Entry, CredError> {
        let token = match &spec.source {
            SourceSpec::Env { var } => env::fetch(var)?,
            SourceSpec::File { template } => file::fetch(template, user).await?,
            SourceSpec::Vault { .. } | SourceSpec::ClientCredentials(_) => {
                return Err(CredError::Unavailable(format!(
                    "source `{}` is not available in this build",
                    spec.source_name()
                )));
            }
        };
        let ttl = match token.remaining(SystemTime::now()) {
            None => spec.cache_ttl,
            Some(left) if left <= EXPIRY_MARGIN => return Err(CredError::Expired),
            Some(left) => left - EXPIRY_MARGIN,
        };
        Ok(Entry {
            token: Arc::new(token),
            ttl,
        })
    }
}
