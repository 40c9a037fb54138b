//! Credentials: from a [`CredentialSpec`] and a user to a [`Token`] to inject.
//!
//! One file per source or service (`env`, `file`, `vault` + `vault_auth`, `oauth`,
//! `refresh`, `secret_ref`; the minted `github_app`, `google_sa` and `token_exchange`
//! sharing `assertion`), and this file owns the cache in front of them: moka, keyed by
//! (credential, user, and for a token exchange the identity token's hash), bounded. An entry is *fresh* until its token's
//! `expires_at` minus [`EXPIRY_MARGIN`] (or the credential's `cache_ttl` without an
//! expiry) and *usable* until `expires_at` minus [`STALE_LIMIT`]. A fresh entry is
//! served as is; a stale one is looked up again, and when the store is unreachable a
//! still-usable entry keeps serving. Lookups for one key are single-flight: concurrent
//! misses (and refreshes) make one read. Failures are never cached.
//!
//! Freshness is measured on tokio's clock so tests can pause and advance it; moka's own
//! (real-time) expiry only evicts entries that are no longer usable.

mod assertion;
mod backend;
mod env;
mod file;
mod flights;
mod github_app;
mod google_sa;
mod key;
mod mint_http;
mod oauth;
mod quarantine;
mod refresh;
mod secret_ref;
pub(crate) mod template;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_minted;
mod token;
mod token_exchange;
mod vault;
mod vault_auth;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::Expiry;
use moka::future::Cache;
use tokio::time::Instant;

pub use assertion::check_rsa_pem;
pub use backend::{ClientCreds, Kv, KvError, MintEndpoint, OAuthError, SecretMap, TokenEndpoint};
pub use google_sa::ServiceAccountKey;
pub(crate) use oauth::HttpTokenEndpoint;
pub use token::{AwsKeys, Token, format_expiry};

use secrecy::SecretString;

use crate::config::{Config, CredentialSpec, OAuthClient, SecretRef, SourceSpec};
use crate::metrics::Metrics;
use flights::Flights;
use key::Key;
pub use key::Subject;
use quarantine::Quarantine;
use refresh::Ctx;
use secret_ref::SecretResolver;

/// A cached token is looked up again (or refreshed) this long before it expires.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// A token with less than this left is never served.
pub const STALE_LIMIT: Duration = Duration::from_secs(5);
/// A token near expiry that could not be refreshed is retried at most this often.
const RETRY_FRESH: Duration = Duration::from_secs(5);
/// How long past `cache_ttl` a secret without expiry may serve while Vault is down.
const STALE_GRACE: Duration = Duration::from_secs(3600);
/// Most (credential, user) entries kept.
const MAX_ENTRIES: u64 = 100_000;

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
    /// A token endpoint refused to mint a claw's token (502 `upstream_error`).
    #[error("the token endpoint refused: {0}")]
    Refused(String),
}

#[derive(Clone)]
struct Entry {
    token: Arc<Token>,
    fresh_until: Instant,
    usable_until: Instant,
    /// For moka: how long after insertion the entry is no longer usable.
    ttl: Duration,
    from_vault: bool,
}

impl Entry {
    fn new(token: Token, spec: &CredentialSpec) -> Self {
        let (fresh, usable) = match token.remaining(SystemTime::now()) {
            None => (spec.cache_ttl, spec.cache_ttl + STALE_GRACE),
            Some(left) => {
                let usable = left.saturating_sub(STALE_LIMIT);
                (
                    left.saturating_sub(EXPIRY_MARGIN)
                        .max(RETRY_FRESH)
                        .min(usable),
                    usable,
                )
            }
        };
        let now = Instant::now();
        Entry {
            token: Arc::new(token),
            fresh_until: now + fresh,
            usable_until: now + usable,
            ttl: usable,
            from_vault: matches!(spec.source, SourceSpec::Vault { .. }),
        }
    }
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
    flights: Flights<Key>,
    metrics: Arc<Metrics>,
    kv: Option<Arc<dyn Kv>>,
    oauth: Arc<dyn TokenEndpoint>,
    mint: Arc<dyn MintEndpoint>,
    secrets: SecretResolver,
    quarantine: Quarantine,
}

impl CredentialStore {
    /// The store for a config: connects to `vault:` (in the background: never fails
    /// because Vault is down) and builds the token endpoint client. Kept across reloads.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let kv: Option<Arc<dyn Kv>> = match &config.vault {
            Some(v) => Some(vault::VaultKv::start(v)?),
            None => None,
        };
        let http = Arc::new(oauth::HttpTokenEndpoint::new(&config.upstream_roots)?);
        Ok(Self::with_backends(kv, http.clone(), metrics).with_minter(http))
    }

    /// The endpoint client minted sources post to (tests use an in-memory one).
    pub fn with_minter(mut self, mint: Arc<dyn MintEndpoint>) -> Self {
        self.mint = mint;
        self
    }

    /// A store over given backends (tests use in-memory ones); minted sources answer
    /// `Unavailable` until [`with_minter`](Self::with_minter) gives them an endpoint.
    pub fn with_backends(
        kv: Option<Arc<dyn Kv>>,
        oauth: Arc<dyn TokenEndpoint>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(MAX_ENTRIES)
            .expire_after(EntryExpiry)
            .build();
        CredentialStore {
            cache,
            flights: Flights::default(),
            metrics,
            secrets: SecretResolver::new(kv.clone()),
            kv,
            oauth,
            mint: Arc::new(backend::NoMintEndpoint),
            quarantine: Quarantine::new(),
        }
    }

    /// The token for `spec` (and `user`, for per-user credentials).
    #[cfg(test)]
    pub(crate) async fn get(
        &self,
        spec: &Arc<CredentialSpec>,
        user: Option<&str>,
    ) -> Result<Arc<Token>, CredError> {
        self.get_for(spec, Subject::user(user)).await
    }

    /// The token for `spec` and who the request acts for (user, identity token).
    pub async fn get_for(
        &self,
        spec: &Arc<CredentialSpec>,
        who: Subject<'_>,
    ) -> Result<Arc<Token>, CredError> {
        let key = Key::new(spec, who);
        if let Some(e) = self.fresh(&key).await {
            self.count(spec, "hit");
            return Ok(e.token);
        }
        let _flight = self.flights.lock(&key).await;
        let current = self.cache.get(&key).await;
        if let Some(e) = current.as_ref().filter(|e| Instant::now() < e.fresh_until) {
            self.count(spec, "hit");
            return Ok(e.token.clone());
        }
        self.load(spec, who, &key, current, None).await
    }

    /// The upstream refused `rejected`: drop it and return a different token — the one
    /// stored now if someone else already replaced it, else a forced refresh (one for
    /// all callers). `Expired` when the credential cannot be refreshed.
    #[cfg(test)]
    pub(crate) async fn reject(
        &self,
        spec: &Arc<CredentialSpec>,
        user: Option<&str>,
        rejected: &Token,
    ) -> Result<Arc<Token>, CredError> {
        self.reject_for(spec, Subject::user(user), rejected).await
    }

    /// The upstream refused `rejected`: drop it and return a different token — the one
    /// stored now if someone else already replaced it, else a forced refresh (one for
    /// all callers), for a request's [`Subject`]. `Expired` when the credential cannot
    /// be refreshed.
    pub async fn reject_for(
        &self,
        spec: &Arc<CredentialSpec>,
        who: Subject<'_>,
        rejected: &Token,
    ) -> Result<Arc<Token>, CredError> {
        let key = Key::new(spec, who);
        let _flight = self.flights.lock(&key).await;
        if let Some(e) = self.cache.get(&key).await
            && !refresh::same_token(&e.token, rejected)
            && Instant::now() < e.usable_until
        {
            return Ok(e.token);
        }
        self.cache.invalidate(&key).await;
        self.load(spec, who, &key, None, Some(rejected)).await
    }

    /// The KV v2 store (Vault / OpenBao), when `vault:` is configured.
    pub fn kv(&self) -> Option<&Arc<dyn Kv>> {
        self.kv.as_ref()
    }

    /// Resolve a secret reference (`{env}`, `{file}`, `{vault, field}`) now.
    pub async fn resolve_secret(&self, r: &SecretRef) -> Result<SecretString, CredError> {
        self.secrets.resolve(r).await
    }

    /// An OAuth client's id and secret, resolved now.
    pub async fn client_creds(&self, c: &OAuthClient) -> Result<ClientCreds, CredError> {
        refresh::client_creds(&self.secrets, c).await
    }

    /// Drop a cached token (and any quarantine): the next lookup reads the store. A
    /// completed connect calls this for the user it stored a credential for.
    pub async fn invalidate(&self, spec: &CredentialSpec, user: Option<&str>) {
        self.quarantine.release(spec, user);
        self.cache
            .invalidate(&Key::new(spec, Subject::user(user)))
            .await;
    }

    /// For `/readyz`: Vault logged in and reachable, or a usable Vault credential cached.
    pub fn readiness(&self) -> Result<(), String> {
        let Some(kv) = &self.kv else { return Ok(()) };
        match kv.health() {
            Ok(()) => Ok(()),
            Err(_) if self.warm() => Ok(()),
            Err(why) => Err(format!("credential store: {why}")),
        }
    }

    fn warm(&self) -> bool {
        let now = Instant::now();
        self.cache
            .iter()
            .any(|(_, e)| e.from_vault && now < e.usable_until)
    }

    async fn fresh(&self, key: &Key) -> Option<Entry> {
        self.cache
            .get(key)
            .await
            .filter(|e| Instant::now() < e.fresh_until)
    }

    /// Look up (under the key's flight lock) and cache; on an outage keep serving
    /// `current` while it is usable.
    async fn load(
        &self,
        spec: &CredentialSpec,
        who: Subject<'_>,
        key: &Key,
        current: Option<Entry>,
        rejected: Option<&Token>,
    ) -> Result<Arc<Token>, CredError> {
        match self.fetch(spec, who, rejected).await {
            Ok(token) => {
                let entry = Entry::new(token, spec);
                let token = entry.token.clone();
                self.cache.insert(key.clone(), entry).await;
                self.count(spec, "miss");
                Ok(token)
            }
            Err(CredError::Unavailable(why))
                if current
                    .as_ref()
                    .is_some_and(|e| Instant::now() < e.usable_until) =>
            {
                tracing::warn!(credential = %spec.name, reason = %why, "credential store unavailable; serving the cached credential");
                self.count(spec, "hit");
                current.map(|e| e.token).ok_or(CredError::Missing)
            }
            Err(e) => {
                if !matches!(e, CredError::Unavailable(_)) {
                    self.cache.invalidate(key).await;
                }
                self.count(spec, "error");
                Err(e)
            }
        }
    }

    async fn fetch(
        &self,
        spec: &CredentialSpec,
        who: Subject<'_>,
        rejected: Option<&Token>,
    ) -> Result<Token, CredError> {
        let user = who.user;
        let ctx = Ctx {
            kv: self.kv.as_deref(),
            oauth: &*self.oauth,
            mint: &*self.mint,
            secrets: &self.secrets,
            metrics: &self.metrics,
            quarantine: &self.quarantine,
        };
        let token = match &spec.source {
            SourceSpec::Env { var } => env::fetch(var)?,
            SourceSpec::File { template } => file::fetch(template, user).await?,
            SourceSpec::Vault { path, refresh } => {
                let Some(path) = template::fill(path, user) else {
                    return Err(CredError::Missing);
                };
                return refresh::load_vault(&ctx, spec, &path, refresh.as_ref(), rejected).await;
            }
            SourceSpec::ClientCredentials(client) => {
                return refresh::client_credentials(&ctx, spec, client).await;
            }
            // Minted: every mint is a new token, so a rejected one is never minted again.
            SourceSpec::GithubApp(app) => return github_app::fetch(&ctx, spec, app).await,
            SourceSpec::GoogleServiceAccount(sa) => {
                return google_sa::fetch(&ctx, spec, sa, user).await;
            }
            SourceSpec::TokenExchange(te) => {
                return token_exchange::fetch(&ctx, spec, te, who.token).await;
            }
        };
        match rejected {
            Some(r) if refresh::same_token(&token, r) => Err(CredError::Expired),
            _ if token
                .remaining(SystemTime::now())
                .is_some_and(|l| l <= STALE_LIMIT) =>
            {
                Err(CredError::Expired)
            }
            _ => Ok(token),
        }
    }

    fn count(&self, spec: &CredentialSpec, result: &str) {
        self.metrics
            .credential_lookup(&spec.name, spec.source_name(), result);
    }
}
