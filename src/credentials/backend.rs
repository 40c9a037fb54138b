//! The outside services the credential store talks to, as traits: a KV v2 secret
//! store ([`Kv`]: Vault or OpenBao, see `vault.rs`), an OAuth 2.0 token endpoint
//! ([`TokenEndpoint`], see `oauth.rs`) and an endpoint that mints a token from a signed
//! assertion or an exchanged token ([`MintEndpoint`], same client; see `assertion.rs`).
//! The store and the refresh logic only see these traits, so unit tests run them
//! against in-memory fakes under a paused clock.
//!
//! Errors here are descriptions sidekey wrote itself: never a response body, never a
//! secret value.

use std::fmt;

use futures_util::future::BoxFuture;
use secrecy::SecretString;

use super::Token;
use crate::config::{ClientAuth, OAuthClient};

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

/// A POST to an endpoint that mints tokens (GitHub's installation tokens, an OAuth
/// JWT-bearer or token-exchange grant). Every value is a secret or may be one.
pub struct MintRequest {
    pub url: String,
    pub auth: MintAuth,
    pub body: MintBody,
    /// Extra request headers (API version pins, media types).
    pub headers: Vec<(&'static str, &'static str)>,
}

pub enum MintAuth {
    None,
    /// `Authorization: Bearer` (GitHub's app JWT).
    Bearer(SecretString),
    /// OAuth client authentication: HTTP Basic, or `client_id`/`client_secret` in the form.
    Client(ClientCreds, ClientAuth),
}

pub enum MintBody {
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(&'static str, SecretString)>),
    /// `application/json`.
    Json(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The endpoint answered and said no (a 4xx: bad key, unknown installation, ...).
    #[error("the token endpoint refused the request: {0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
}

/// An endpoint answering a [`MintRequest`] with a JSON object (the minted token).
pub trait MintEndpoint: Send + Sync + 'static {
    fn post(&self, req: MintRequest) -> BoxFuture<'_, Result<SecretMap, MintError>>;
}

/// The minter of a store built without one: every mint is `Unavailable`.
pub struct NoMintEndpoint;

impl MintEndpoint for NoMintEndpoint {
    fn post(&self, _req: MintRequest) -> BoxFuture<'_, Result<SecretMap, MintError>> {
        Box::pin(async { Err(MintError::Unavailable("no token endpoint client".into())) })
    }
}
