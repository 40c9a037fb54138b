//! The validated shapes of the minted credential sources (`github_app`,
//! `google_service_account`, `token_exchange`) and of `inject: {aws_sigv4: ...}`.
//!
//! Nothing here holds a secret value: keys and client secrets are [`SecretRef`]s,
//! resolved when a token is minted (so a rotated key is picked up at the next mint).

use super::{ClientAuth, SecretRef};

/// `source: github_app`: installation tokens minted with an RS256 app JWT.
#[derive(Debug, Clone)]
pub struct GithubApp {
    pub app_id: u64,
    pub installation_id: u64,
    /// The app's RS256 private key (PEM).
    pub private_key: SecretRef,
    /// `https://api.github.com` unless set; no trailing slash.
    pub api_url: String,
    /// Down-scoping, sent as given (`{issues: write}`).
    pub permissions: Option<serde_json::Map<String, serde_json::Value>>,
    /// Repository names the token is limited to.
    pub repositories: Option<Vec<String>>,
}

/// `source: google_service_account`: the RFC 7523 JWT-bearer grant.
#[derive(Debug, Clone)]
pub struct GoogleServiceAccount {
    /// The service account's JSON key (`client_email`, `private_key`, `token_uri`).
    pub key: SecretRef,
    pub scopes: Vec<String>,
    /// `sub` of the assertion; `{user}` is the end user (domain-wide delegation).
    pub subject: Option<String>,
}

/// `source: token_exchange`: RFC 8693 exchange of the request's identity JWT.
#[derive(Debug, Clone)]
pub struct TokenExchange {
    pub token_url: String,
    pub client_id: Option<SecretRef>,
    pub client_secret: Option<SecretRef>,
    pub client_auth: ClientAuth,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub scopes: Vec<String>,
    /// Sent only when set.
    pub requested_token_type: Option<String>,
}

/// `inject: {aws_sigv4: {region, service}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4 {
    pub region: String,
    pub service: String,
}

/// The GitHub REST API, unless `api_url` says otherwise.
pub const GITHUB_API: &str = "https://api.github.com";
