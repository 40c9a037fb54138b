//! Tokens with a lifecycle: `source: vault` secrets (read, and with `refresh:` the
//! RFC 6749 refresh_token grant written back to KV v2 with check-and-set), and
//! `source: oauth_client_credentials` tokens fetched from a token endpoint.
//!
//! Sidecars sharing one Vault never lose a rotation: the new tokens are written with
//! `cas` = the version that was read. A CAS conflict means another sidecar refreshed
//! first, so its stored tokens are re-read and used instead of refreshing again. A
//! refresh that fails with `invalid_grant` may mean the same thing (the other sidecar
//! used the refresh token a moment before us and has not written back yet): the
//! secret is re-read for a short while before the credential is declared expired.
//!
//! A grant found dead is quarantined (`quarantine.rs`): until the stored secret
//! changes, its lookups answer `Expired` without calling the token endpoint.
//!
//! Single-flight per (credential, user) is the store's job (`mod.rs`); this file runs
//! one lookup. `sidekey_token_refreshes_total{result}`: `success`, `conflict` (another
//! sidecar's tokens were used), `invalid_grant`, `error`, `write_error`.

use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use super::backend::{
    ClientCreds, Grant, Kv, KvError, MintEndpoint, OAuthError, SecretMap, TokenEndpoint,
};
use super::quarantine::Quarantine;
use super::secret_ref::SecretResolver;
use super::{CredError, EXPIRY_MARGIN, STALE_LIMIT, Token, format_expiry};
use crate::config::{CredentialSpec, OAuthClient};
use crate::metrics::Metrics;

/// Re-reads after `invalid_grant`, waiting for another sidecar's write-back.
const ROTATION_WAITS_MS: [u64; 5] = [50, 100, 200, 400, 800];

/// What a lookup needs from the store.
pub struct Ctx<'a> {
    pub kv: Option<&'a dyn Kv>,
    pub oauth: &'a dyn TokenEndpoint,
    pub mint: &'a dyn MintEndpoint,
    pub secrets: &'a SecretResolver,
    pub metrics: &'a Metrics,
    pub quarantine: &'a Quarantine,
}

/// Read a `source: vault` credential at `path`, refreshing it when it is near expiry
/// (or when `rejected` is the stored token: the upstream refused it).
pub async fn load_vault(
    ctx: &Ctx<'_>,
    spec: &CredentialSpec,
    path: &str,
    refresh: Option<&OAuthClient>,
    rejected: Option<&Token>,
) -> Result<Token, CredError> {
    let kv = ctx
        .kv
        .ok_or_else(|| CredError::Unavailable("no `vault:` block configured".into()))?;
    let (token, data) = read(kv, path).await?;
    let version = token.version.unwrap_or(0);
    if ctx.quarantine.holds(spec, path, version) {
        return Err(CredError::Expired);
    }
    let due = match rejected {
        Some(r) => same_token(&token, r),
        None => token
            .remaining(SystemTime::now())
            .is_some_and(|left| left <= EXPIRY_MARGIN),
    };
    if !due {
        return usable(token);
    }
    let forced = rejected.is_some();
    let (Some(client), Some(rt)) = (refresh, token.refresh_token.clone()) else {
        return if forced {
            Err(CredError::Expired)
        } else {
            usable(token)
        };
    };
    let creds = client_creds(ctx.secrets, client).await?;
    let name = &*spec.name;
    match ctx
        .oauth
        .request(client, creds, Grant::RefreshToken(&rt))
        .await
    {
        Ok(mut fresh) => match kv.write_cas(path, merged(data, &fresh), version).await {
            Ok(v) => {
                ctx.metrics.token_refresh(name, "success");
                tracing::info!(
                    credential = name,
                    "refreshed the OAuth token and wrote it back to Vault"
                );
                fresh.version = Some(v);
                Ok(fresh)
            }
            Err(KvError::CasMismatch) => {
                ctx.metrics.token_refresh(name, "conflict");
                tracing::info!(
                    credential = name,
                    "another sidecar wrote this credential first; using its tokens"
                );
                usable(read(kv, path).await?.0)
            }
            Err(e) => {
                ctx.metrics.token_refresh(name, "write_error");
                tracing::error!(credential = name, error = %e, "refreshed token could not be written back to Vault; serving it from memory");
                fresh.version = token.version;
                Ok(fresh)
            }
        },
        Err(OAuthError::InvalidGrant) => match wait_for_rotation(kv, path, version).await? {
            Some(t) => {
                ctx.metrics.token_refresh(name, "conflict");
                tracing::info!(
                    credential = name,
                    "refresh token was already rotated by another sidecar; using its tokens"
                );
                usable(t)
            }
            None => {
                ctx.metrics.token_refresh(name, "invalid_grant");
                ctx.quarantine.hold(spec, path, version, ctx.metrics);
                Err(CredError::Expired)
            }
        },
        Err(e) => {
            ctx.metrics.token_refresh(name, "error");
            tracing::warn!(credential = name, error = %e, "token refresh failed");
            let unavailable = CredError::Unavailable(format!("token refresh failed: {e}"));
            if forced {
                return Err(unavailable);
            }
            usable(token).map_err(|_| unavailable)
        }
    }
}

/// Fetch a `source: oauth_client_credentials` token.
pub async fn client_credentials(
    ctx: &Ctx<'_>,
    spec: &CredentialSpec,
    client: &OAuthClient,
) -> Result<Token, CredError> {
    let creds = client_creds(ctx.secrets, client).await?;
    let name = &*spec.name;
    match ctx
        .oauth
        .request(client, creds, Grant::ClientCredentials)
        .await
    {
        Ok(t) => {
            ctx.metrics.token_refresh(name, "success");
            tracing::debug!(credential = name, "fetched a client-credentials token");
            usable(t)
        }
        Err(e) => {
            ctx.metrics.token_refresh(name, "error");
            tracing::warn!(credential = name, error = %e, "client-credentials token request failed");
            Err(match e {
                OAuthError::Unavailable(m) => CredError::Unavailable(m),
                other => CredError::Invalid(other.to_string()),
            })
        }
    }
}

async fn read(kv: &dyn Kv, path: &str) -> Result<(Token, SecretMap), CredError> {
    let v = kv.read(path).await.map_err(|e| match e {
        KvError::NotFound => CredError::Missing,
        KvError::Forbidden => {
            CredError::Unavailable("Vault policy denies reading this credential (403)".into())
        }
        KvError::CasMismatch => CredError::Unavailable("unexpected Vault answer".into()),
        KvError::Unavailable(m) => CredError::Unavailable(m),
    })?;
    let mut token = Token::from_map(&v.data).map_err(CredError::Invalid)?;
    token.version = Some(v.version);
    Ok((token, v.data))
}

async fn wait_for_rotation(
    kv: &dyn Kv,
    path: &str,
    version: u64,
) -> Result<Option<Token>, CredError> {
    for ms in ROTATION_WAITS_MS {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let (t, _) = read(kv, path).await?;
        if t.version.is_some_and(|v| v > version) {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

pub(super) async fn client_creds(
    secrets: &SecretResolver,
    c: &OAuthClient,
) -> Result<ClientCreds, CredError> {
    let id = secrets.resolve(&c.client_id).await?;
    let secret = match &c.client_secret {
        Some(s) => Some(secrets.resolve(s).await?),
        None => None,
    };
    Ok(ClientCreds { id, secret })
}

/// A token that still has time left beyond [`STALE_LIMIT`], else `Expired`.
fn usable(t: Token) -> Result<Token, CredError> {
    match t.remaining(SystemTime::now()) {
        Some(left) if left <= STALE_LIMIT => Err(CredError::Expired),
        _ => Ok(t),
    }
}

pub fn same_token(a: &Token, b: &Token) -> bool {
    a.access_token.expose_secret() == b.access_token.expose_secret()
}

/// The stored map with the new tokens in place; other fields are kept as they were.
fn merged(mut data: SecretMap, t: &Token) -> SecretMap {
    use serde_json::Value;
    let s = |v: &SecretString| Value::String(v.expose_secret().to_string());
    data.insert("access_token".into(), s(&t.access_token));
    if let Some(r) = &t.refresh_token {
        data.insert("refresh_token".into(), s(r));
    }
    match t.expires_at {
        Some(e) => data.insert("expires_at".into(), Value::String(format_expiry(e))),
        None => data.remove("expires_at"),
    };
    if !t.scopes.is_empty() {
        data.insert(
            "scopes".into(),
            Value::Array(t.scopes.iter().cloned().map(Value::String).collect()),
        );
    }
    data
}
