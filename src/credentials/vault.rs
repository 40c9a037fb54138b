//! Vault / OpenBao as the credential store: the `vaultrs` client, KV v2 reads and
//! check-and-set writes under `vault.kv_mount`, and what Vault's answers mean
//! (404 missing, 403 policy, 400 check-and-set conflict, anything else unavailable).
//! Logging in and keeping the Vault token alive is `vault_auth.rs`.
//!
//! Paths: the logical key sidekey reads is the template with `{user}` escaped by
//! `template::fill` (so `a/b` is the one key `a%2Fb`). vaultrs percent-encodes each
//! segment again on the wire (`%` -> `%25`), and Vault decodes once, so the key Vault
//! sees is exactly the escaped one: no identity can name another path.
//!
//! vaultrs errors can carry response bodies; they are classified here and never
//! formatted into logs or messages. The Vault token lives inside the vaultrs client
//! only; `VaultClient`/settings are never `Debug`-printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::BoxFuture;
use tokio::sync::{Mutex, Notify, RwLock};
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequest, SetSecretRequestOptions};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::backend::{Kv, KvError, SecretMap, Versioned};
use super::vault_auth::LoginState;
use crate::config::VaultConfig;

pub struct VaultKv {
    pub(super) cfg: VaultConfig,
    pub(super) client: RwLock<VaultClient>,
    pub(super) logged_in: AtomicBool,
    pub(super) reachable: AtomicBool,
    pub(super) login: Mutex<LoginState>,
    pub(super) kick: Arc<Notify>,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultSetupError {
    #[error("vault.address `{0}` is not a valid URL")]
    Address(String),
    #[error("cannot build the Vault client (check vault.ca_cert): {0}")]
    Client(String),
}

impl VaultKv {
    /// Build the client and start logging in in the background. Never waits for Vault:
    /// sidekey starts (and reports not ready) while Vault is down.
    pub fn start(cfg: &VaultConfig) -> Result<Arc<Self>, VaultSetupError> {
        let uri: http::Uri = cfg
            .address
            .parse()
            .map_err(|_| VaultSetupError::Address(cfg.address.clone()))?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(VaultSetupError::Address(cfg.address.clone()));
        }
        let mut b = VaultClientSettingsBuilder::default();
        b.address(&cfg.address)
            .token(String::new())
            .ca_certs(
                cfg.ca_cert
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
            )
            .identity(None)
            .verify(true)
            .timeout(Some(cfg.timeout))
            .namespace(cfg.namespace.clone());
        let settings = b
            .build()
            .map_err(|e| VaultSetupError::Client(e.to_string()))?;
        let client =
            VaultClient::new(settings).map_err(|e| VaultSetupError::Client(setup_error(&e)))?;
        let kv = Arc::new(VaultKv {
            cfg: cfg.clone(),
            client: RwLock::new(client),
            logged_in: AtomicBool::new(false),
            reachable: AtomicBool::new(false),
            login: Mutex::new(LoginState::default()),
            kick: Arc::new(Notify::new()),
        });
        tokio::spawn(super::vault_auth::maintain(
            Arc::downgrade(&kv),
            kv.kick.clone(),
        ));
        Ok(kv)
    }

    async fn read_once(&self, path: &str) -> Result<Versioned, KvError> {
        let ep = ReadSecretRequest::builder()
            .mount(self.cfg.kv_mount.as_str())
            .path(path)
            .build()
            .map_err(|_| KvError::Unavailable("cannot build a Vault read request".into()))?;
        let client = self.client.read().await;
        let resp = vaultrs::api::exec_with_result(&*client, ep).await;
        drop(client);
        let resp = self.classify(resp)?;
        match resp.data {
            serde_json::Value::Object(data) => Ok(Versioned {
                data,
                version: resp.metadata.version,
            }),
            // A deleted or destroyed version reads as data: null.
            _ => Err(KvError::NotFound),
        }
    }

    async fn write_once(&self, path: &str, data: &SecretMap, cas: u64) -> Result<u64, KvError> {
        let cas = u32::try_from(cas)
            .map_err(|_| KvError::Unavailable("KV version out of range".into()))?;
        let ep = SetSecretRequest::builder()
            .mount(self.cfg.kv_mount.as_str())
            .path(path)
            .data(serde_json::Value::Object(data.clone()))
            .options(SetSecretRequestOptions { cas })
            .build()
            .map_err(|_| KvError::Unavailable("cannot build a Vault write request".into()))?;
        let client = self.client.read().await;
        let resp = vaultrs::api::exec_with_result(&*client, ep).await;
        drop(client);
        Ok(self.classify(resp)?.version)
    }

    /// Run `op`; on a 403 check whether our Vault token is still good: if not, log in
    /// again and retry once; if it is, the policy denies this path.
    async fn with_relogin<'a, T, F>(&'a self, path: &str, op: F) -> Result<T, KvError>
    where
        F: Fn() -> BoxFuture<'a, Result<T, KvError>>,
    {
        self.ensure_login().await?;
        match op().await {
            Err(KvError::Forbidden) => {
                if self.token_still_valid().await {
                    tracing::warn!(path = %path, mount = %self.cfg.kv_mount, "Vault policy denies access to this secret path (403)");
                    return Err(KvError::Forbidden);
                }
                tracing::info!("Vault token no longer valid; logging in again");
                self.logged_in.store(false, Ordering::Relaxed);
                self.ensure_login().await?;
                let r = op().await;
                if matches!(r, Err(KvError::Forbidden)) {
                    tracing::warn!(path = %path, mount = %self.cfg.kv_mount, "Vault policy denies access to this secret path (403)");
                }
                r
            }
            other => other,
        }
    }

    async fn token_still_valid(&self) -> bool {
        let client = self.client.read().await;
        let r = vaultrs::token::lookup_self(&*client).await;
        drop(client);
        self.classify(r).is_ok()
    }

    /// Map a vaultrs result to a [`KvError`], recording reachability. Never formats
    /// the vaultrs error itself (it may hold a response body).
    pub(super) fn classify<T>(&self, r: Result<T, ClientError>) -> Result<T, KvError> {
        let e = match r {
            Ok(v) => {
                self.reachable.store(true, Ordering::Relaxed);
                return Ok(v);
            }
            Err(e) => e,
        };
        let answered = |code: u16| {
            self.reachable.store(code < 500, Ordering::Relaxed);
        };
        match e {
            ClientError::APIError { code: 404, .. } => {
                answered(404);
                Err(KvError::NotFound)
            }
            ClientError::APIError { code: 403, .. } => {
                answered(403);
                Err(KvError::Forbidden)
            }
            ClientError::APIError { code: 400, errors }
                if errors.iter().any(|m| m.contains("check-and-set")) =>
            {
                answered(400);
                Err(KvError::CasMismatch)
            }
            ClientError::APIError { code, .. } => {
                answered(code);
                Err(KvError::Unavailable(format!(
                    "Vault answered status {code}"
                )))
            }
            ClientError::RestClientError { .. } => {
                self.reachable.store(false, Ordering::Relaxed);
                Err(KvError::Unavailable("cannot reach Vault".into()))
            }
            _ => {
                self.reachable.store(true, Ordering::Relaxed);
                Err(KvError::Unavailable("unexpected Vault response".into()))
            }
        }
    }
}

impl Kv for VaultKv {
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Versioned, KvError>> {
        Box::pin(self.with_relogin(path, move || Box::pin(self.read_once(path))))
    }

    fn write_cas<'a>(
        &'a self,
        path: &'a str,
        data: SecretMap,
        cas: u64,
    ) -> BoxFuture<'a, Result<u64, KvError>> {
        Box::pin(async move {
            let data = &data;
            self.with_relogin(path, move || Box::pin(self.write_once(path, data, cas)))
                .await
        })
    }

    fn health(&self) -> Result<(), String> {
        if !self.logged_in.load(Ordering::Relaxed) {
            return Err("not logged in to Vault".into());
        }
        if !self.reachable.load(Ordering::Relaxed) {
            return Err("Vault unreachable".into());
        }
        Ok(())
    }
}

/// A client-construction error as text, without any payload it may carry.
fn setup_error(e: &ClientError) -> String {
    match e {
        ClientError::FileReadError { path, source } => {
            format!("cannot read {path}: {}", source.kind())
        }
        ClientError::ParseCertificateError { path, .. } => {
            format!("{path} is not a PEM certificate bundle")
        }
        other => other.to_string(),
    }
}
