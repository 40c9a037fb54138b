//! `verify_user`: before the provider, the browser user signs in at the IdP (OpenID
//! Connect authorization code + PKCE + nonce) and must be the user the link was made
//! for. This is what stops a leaked connect link from letting someone else attach
//! their own account to the victim's slot.
//!
//! The IdP is found by OpenID discovery (`{issuer}/.well-known/openid-configuration`,
//! whose `issuer` must be exactly the configured one), on first use and again when the
//! config names another issuer. The ID token is verified by identity's own
//! [`JwtVerifier`] against the discovered `jwks_uri` (signature with asymmetric
//! algorithms only, `iss`, `aud` = our client id, `exp`/`nbf`), then its `nonce` must
//! be the one this flow sent.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::config::{ClientAuth, JwtConfig, OAuthClient, Roots, VerifyUser};
use crate::credentials::HttpTokenEndpoint;
use crate::identity::jwt::JwtVerifier;

/// One discovered IdP, ready to send users to and verify their ID tokens.
pub struct Idp {
    pub authorization_endpoint: String,
    /// The token endpoint and our client there (scope `openid`).
    pub client: OAuthClient,
    verifier: JwtVerifier,
    key: (String, String),
}

/// Why a sign-in at the IdP did not prove who the user is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("the identity provider cannot be reached: {0}")]
    Unavailable(String),
    #[error("the identity provider returned no ID token")]
    NoIdToken,
    #[error("the ID token was not accepted: {0}")]
    Invalid(String),
    #[error("the ID token does not answer this sign-in (nonce mismatch)")]
    Nonce,
}

/// The IdP of the config in force, discovered once per (issuer, client id).
#[derive(Default)]
pub struct IdpCache {
    current: Mutex<Option<Arc<Idp>>>,
}

impl IdpCache {
    pub async fn get(
        &self,
        http: &HttpTokenEndpoint,
        vu: &VerifyUser,
        client_id: &str,
        roots: &Roots,
    ) -> Result<Arc<Idp>, LoginError> {
        let key = (vu.issuer.clone(), client_id.to_string());
        let mut cur = self.current.lock().await;
        if let Some(idp) = cur.as_ref().filter(|i| i.key == key) {
            return Ok(idp.clone());
        }
        let idp = Arc::new(discover(http, vu, key, roots).await?);
        *cur = Some(idp.clone());
        Ok(idp)
    }
}

async fn discover(
    http: &HttpTokenEndpoint,
    vu: &VerifyUser,
    key: (String, String),
    roots: &Roots,
) -> Result<Idp, LoginError> {
    let url = format!("{}/.well-known/openid-configuration", vu.issuer);
    let doc = http.get_json(&url).await.map_err(LoginError::Unavailable)?;
    let field = |k: &str| {
        doc.get(k)
            .and_then(|v| v.as_str())
            .map(String::from)
            .ok_or_else(|| LoginError::Unavailable(format!("discovery document has no `{k}`")))
    };
    let issuer = field("issuer")?;
    if issuer.trim_end_matches('/') != vu.issuer {
        return Err(LoginError::Unavailable(format!(
            "discovery names issuer `{issuer}`, not the configured `{}`",
            vu.issuer
        )));
    }
    let jwt = JwtConfig {
        jwks_url: Some(field("jwks_uri")?),
        jwks_file: None,
        issuer: Some(issuer),
        audiences: vec![key.1.clone()],
        user_claim: vu.user_claim.clone(),
        groups_claim: None,
        leeway_seconds: 30,
        algorithms: ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
            .map(String::from)
            .to_vec(),
        refresh_interval: std::time::Duration::from_secs(300),
    };
    let verifier = JwtVerifier::new(&jwt, roots)
        .await
        .map_err(|e| LoginError::Unavailable(e.to_string()))?;
    Ok(Idp {
        authorization_endpoint: field("authorization_endpoint")?,
        client: OAuthClient {
            token_url: field("token_endpoint")?,
            client_id: vu.client_id.clone(),
            client_secret: vu.client_secret.clone(),
            scopes: vec!["openid".into()],
            client_auth: ClientAuth::Basic,
        },
        verifier,
        key,
    })
}

impl Idp {
    /// The user an ID token proves, if it is valid and answers `nonce`.
    pub async fn user(
        &self,
        id_token: Option<&SecretString>,
        nonce: Option<&SecretString>,
    ) -> Result<String, LoginError> {
        let token = id_token.ok_or(LoginError::NoIdToken)?.expose_secret();
        let identity = self
            .verifier
            .verify_uncached(token)
            .await
            .map_err(|e| LoginError::Invalid(e.to_string()))?;
        // The signature is verified: the payload can be read as it is.
        let claims: Option<serde_json::Value> = token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let got = claims
            .as_ref()
            .and_then(|c| c.get("nonce"))
            .and_then(|n| n.as_str());
        match (got, nonce) {
            (Some(g), Some(n)) if g == n.expose_secret() => Ok(identity.user.to_string()),
            _ => Err(LoginError::Nonce),
        }
    }
}
