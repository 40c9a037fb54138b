//! The two outside services the credential store talks to, as traits: a KV v2 secret
//! store ([`Kv`]: Vault or OpenBao, see `vault.rs`) and an OAuth 2.0 token endpoint
//! ([`TokenEndpoint`], see `oauth.rs`). The store and the refresh logic only see these
//! traits, so unit tests run them against in-memory fakes under a paused clock.
//!
//! Errors here are descriptions sidekey wrote itself: never a response body, never a
//! secret value.

use std::fmt;

use futures_util::future::BoxFuture;
use secrecy::SecretString;

use super::Token;
use crate::config::OAuthClient;

/// A KV v2 secret's data map. Holds secret values: never log or `Debug` it.
pub type SecretMap = serde_json::Map<String, serde_json::Value>;

/// A KV v2 secret as read: its data and the version it was read at.
pub struct Versioned {
    pub data: SecretMap,
    pub version: u64,
}

impl fmt::Debug for Versioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&String> = self.data.keys().collect();
        f.debug_struct("Versioned")
            .field("keys", &keys)
            .field("version", &self.version)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("no secret at this path")]
    NotFound,
    #[error("permission denied by the Vault policy")]
    Forbidden,
    #[error("check-and-set version mismatch")]
    CasMismatch,
    #[error("{0}")]
    Unavailable(String),
}

/// A KV v2 store; paths are relative to the configured mount.
pub trait Kv: Send + Sync + 'static {
    fn read<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Versioned, KvError>>;
    /// Write `data` only if the secret is still at version `cas`; the new version.
    fn write_cas<'a>(
        &'a self,
        path: &'a str,
        data: SecretMap,
        cas: u64,
    ) -> BoxFuture<'a, Result<u64, KvError>>;
    /// Whether the store is logged in and was reachable at the last contact.
    fn health(&self) -> Result<(), String>;
}

/// The client's identity at the token endpoint, already resolved.
pub struct ClientCreds {
    pub id: SecretString,
    pub secret: Option<SecretString>,
}

/// Which OAuth grant to ask for.
pub enum Grant<'a> {
    ClientCredentials,
    RefreshToken(&'a SecretString),
    /// RFC 6749 4.1.3 with PKCE (RFC 7636): the connect flow's code exchange.
    AuthorizationCode {
        code: &'a SecretString,
        redirect_uri: &'a str,
        verifier: &'a SecretString,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The grant is dead (RFC 6749 `invalid_grant`): a revoked or already-used refresh token.
    #[error("the authorization server rejected the grant (invalid_grant)")]
    InvalidGrant,
    /// Any other refusal (`invalid_client`, `unauthorized_client`, ...).
    #[error("the token endpoint refused the request: {0}")]
    Rejected(String),
    #[error("{0}")]
    Unavailable(String),
}

/// An OAuth 2.0 token endpoint (RFC 6749 section 3.2).
pub trait TokenEndpoint: Send + Sync + 'static {
    fn request<'a>(
        &'a self,
        client: &'a OAuthClient,
        creds: ClientCreds,
        grant: Grant<'a>,
    ) -> BoxFuture<'a, Result<Token, OAuthError>>;
}
