//! Logging in to Vault and keeping the Vault token alive.
//!
//! Methods: `token` (from an env var or a file, re-read at every login so a rotated
//! file is picked up), `approle` (role_id / secret_id from env vars) and `kubernetes`
//! (the pod's service-account JWT, re-read at every login, with a role).
//!
//! [`maintain`] runs in the background for the life of the store: it logs in (with
//! backoff while Vault is down, so start-up never fails on Vault), renews the token
//! at two thirds of its lease, logs in again when renewal fails or the lease hits its
//! max TTL, and probes Vault while it is marked unreachable so `/readyz` recovers
//! without traffic. A request that finds no valid login tries one itself
//! ([`VaultKv::ensure_login`]), at most once per [`MIN_LOGIN_INTERVAL`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio::time::Instant;
use vaultrs::client::Client;

use super::backend::KvError;
use super::vault::VaultKv;
use crate::config::VaultAuth;

/// A request never triggers logins more often than this.
const MIN_LOGIN_INTERVAL: Duration = Duration::from_millis(500);
/// Longest wait between login attempts while Vault is down.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often an unreachable Vault is probed, and the idle check interval.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const IDLE_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct LoginState {
    last_attempt: Option<Instant>,
    failures: u32,
    /// When to renew (or log in again); `None` for a token that never expires.
    renew_at: Option<Instant>,
    renewable: bool,
}

/// A login's outcome: how long the token lives and whether it can be renewed.
struct Lease {
    ttl: Duration,
    renewable: bool,
}

#[derive(Debug, thiserror::Error)]
enum LoginError {
    #[error("{0}")]
    Config(String),
    #[error("Vault refused the login (status {0})")]
    Refused(u16),
    #[error("{0}")]
    Unavailable(String),
}

impl VaultKv {
    /// Make sure a login is in force; try one now if none is and none was tried lately.
    pub(super) async fn ensure_login(&self) -> Result<(), KvError> {
        if self.logged_in.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut st = self.login.lock().await;
        if self.logged_in.load(Ordering::Relaxed) {
            return Ok(());
        }
        if st
            .last_attempt
            .is_some_and(|t| t.elapsed() < MIN_LOGIN_INTERVAL)
        {
            return Err(KvError::Unavailable("not logged in to Vault".into()));
        }
        self.login_locked(&mut st)
            .await
            .map_err(|e| KvError::Unavailable(format!("Vault login failed: {e}")))
    }

    async fn login_locked(&self, st: &mut LoginState) -> Result<(), LoginError> {
        st.last_attempt = Some(Instant::now());
        match self.login_once().await {
            Ok(lease) => {
                st.failures = 0;
                self.schedule(st, lease);
                self.logged_in.store(true, Ordering::Relaxed);
                self.reachable.store(true, Ordering::Relaxed);
                tracing::info!(method = self.method(), "logged in to Vault");
                Ok(())
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                self.logged_in.store(false, Ordering::Relaxed);
                if st.failures == 1 || st.failures.is_multiple_of(10) {
                    tracing::warn!(method = self.method(), error = %e, attempts = st.failures, "Vault login failed; retrying in the background");
                }
                Err(e)
            }
        }
    }

    fn schedule(&self, st: &mut LoginState, lease: Lease) {
        st.renewable = lease.renewable;
        st.renew_at = (!lease.ttl.is_zero()).then(|| Instant::now() + lease.ttl * 2 / 3);
    }

    fn method(&self) -> &'static str {
        match self.cfg.auth {
            VaultAuth::Token { .. } => "token",
            VaultAuth::AppRole { .. } => "approle",
            VaultAuth::Kubernetes { .. } => "kubernetes",
        }
    }

    async fn login_once(&self) -> Result<Lease, LoginError> {
        let token = match &self.cfg.auth {
            VaultAuth::Token { env, file } => static_token(env.as_deref(), file.as_deref()).await?,
            VaultAuth::AppRole {
                mount,
                role_id_env,
                secret_id_env,
            } => {
                let role_id = env_secret(role_id_env)?;
                let secret_id = env_secret(secret_id_env)?;
                let client = self.client.read().await;
                let r = vaultrs::auth::approle::login(
                    &*client,
                    mount,
                    role_id.expose_secret(),
                    secret_id.expose_secret(),
                )
                .await;
                drop(client);
                SecretString::from(self.login_result(r)?.client_token)
            }
            VaultAuth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => {
                let jwt = tokio::fs::read_to_string(jwt_file).await.map_err(|e| {
                    LoginError::Config(format!(
                        "cannot read service-account token {}: {}",
                        jwt_file.display(),
                        e.kind()
                    ))
                })?;
                let jwt = SecretString::from(jwt.trim().to_string());
                let client = self.client.read().await;
                let r =
                    vaultrs::auth::kubernetes::login(&*client, mount, role, jwt.expose_secret())
                        .await;
                drop(client);
                SecretString::from(self.login_result(r)?.client_token)
            }
        };
        self.client.write().await.set_token(token.expose_secret());
        // Learn the lease from Vault itself (the same call checks a static token).
        let client = self.client.read().await;
        let r = client.lookup().await;
        drop(client);
        let info = self.login_result(r)?;
        Ok(Lease {
            ttl: Duration::from_secs(info.ttl),
            renewable: info.renewable.unwrap_or(false),
        })
    }

    fn login_result<T>(&self, r: Result<T, vaultrs::error::ClientError>) -> Result<T, LoginError> {
        if let Err(vaultrs::error::ClientError::APIError {
            code: code @ 400..=499,
            ..
        }) = &r
        {
            self.reachable.store(true, Ordering::Relaxed);
            return Err(LoginError::Refused(*code));
        }
        self.classify(r).map_err(|e| match e {
            KvError::Forbidden => LoginError::Refused(403),
            KvError::NotFound => LoginError::Refused(404),
            KvError::CasMismatch => LoginError::Refused(400),
            KvError::Unavailable(m) => LoginError::Unavailable(m),
        })
    }

    /// One maintenance step; how long to wait before the next.
    async fn maintain_once(&self) -> Duration {
        let mut st = self.login.lock().await;
        if !self.logged_in.load(Ordering::Relaxed) {
            return match self.login_locked(&mut st).await {
                Ok(()) => self.next_wait(&st),
                Err(_) => backoff(st.failures),
            };
        }
        if st.renew_at.is_some_and(|t| Instant::now() >= t) {
            if st.renewable && self.renew(&mut st).await {
                return self.next_wait(&st);
            }
            if self.login_locked(&mut st).await.is_err() {
                return backoff(st.failures);
            }
            return self.next_wait(&st);
        }
        if !self.reachable.load(Ordering::Relaxed) {
            let client = self.client.read().await;
            let r = client.lookup().await;
            drop(client);
            if let Err(KvError::Forbidden) = self.classify(r) {
                self.logged_in.store(false, Ordering::Relaxed);
            }
        }
        self.next_wait(&st)
    }

    /// Renew the token; false when it must be replaced by a new login instead.
    async fn renew(&self, st: &mut LoginState) -> bool {
        let client = self.client.read().await;
        let r = client.renew(None).await;
        drop(client);
        match self.classify(r) {
            Ok(info) => {
                let ttl = Duration::from_secs(info.lease_duration);
                // Near the max TTL Vault renews for less each time: log in afresh.
                if ttl < Duration::from_secs(3) {
                    return false;
                }
                self.schedule(
                    st,
                    Lease {
                        ttl,
                        renewable: info.renewable,
                    },
                );
                tracing::debug!(ttl_secs = info.lease_duration, "renewed the Vault token");
                true
            }
            Err(e) => {
                tracing::info!(error = %e, "Vault token renewal failed; logging in again");
                false
            }
        }
    }

    fn next_wait(&self, st: &LoginState) -> Duration {
        let mut wait = IDLE_INTERVAL;
        if let Some(t) = st.renew_at {
            wait = wait.min(t.saturating_duration_since(Instant::now()));
        }
        if !self.reachable.load(Ordering::Relaxed) {
            wait = wait.min(PROBE_INTERVAL);
        }
        wait.max(Duration::from_millis(100))
    }
}

/// The background task: runs until the store is dropped.
pub async fn maintain(kv: Weak<VaultKv>, kick: Arc<Notify>) {
    loop {
        let Some(strong) = kv.upgrade() else { return };
        let wait = strong.maintain_once().await;
        drop(strong);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = kick.notified() => {}
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(5);
    (Duration::from_millis(500) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

fn env_secret(name: &str) -> Result<SecretString, LoginError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_string())),
        _ => Err(LoginError::Config(format!(
            "environment variable {name} is not set"
        ))),
    }
}

async fn static_token(
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<SecretString, LoginError> {
    if let Some(name) = env {
        if let Ok(t) = env_secret(name) {
            return Ok(t);
        }
        if file.is_none() {
            return Err(LoginError::Config(format!(
                "environment variable {name} is not set"
            )));
        }
    }
    let Some(path) = file else {
        return Err(LoginError::Config("no Vault token source".into()));
    };
    match tokio::fs::read_to_string(path).await {
        Ok(t) if !t.trim().is_empty() => Ok(SecretString::from(t.trim().to_string())),
        Ok(_) => Err(LoginError::Config(format!(
            "Vault token file {} is empty",
            path.display()
        ))),
        Err(e) => Err(LoginError::Config(format!(
            "cannot read Vault token file {}: {}",
            path.display(),
            e.kind()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }
}
