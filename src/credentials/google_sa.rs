//! `source: google_service_account`: OAuth 2.0 access tokens for a Google service
//! account, by the JWT-bearer grant (RFC 7523).
//!
//! The assertion is signed with the key file's `private_key` (RS256, `kid` =
//! `private_key_id`): `iss` = `client_email`, `scope` = the scopes space-separated,
//! `aud` = the key's `token_uri`, `iat` = now, `exp` = now + 1 h, and `sub` = `subject`
//! with `{user}` filled in when set (domain-wide delegation: the token acts as that
//! user, limited to the scopes the Workspace admin granted the service account). The
//! store caches one token per subject.

use secrecy::{ExposeSecret, SecretString};

use super::assertion::{self, Answer, check_rsa_pem, now_secs};
use super::backend::{MintAuth, MintBody, MintRequest};
use super::refresh::Ctx;
use super::{CredError, Token};
use crate::config::{CredentialSpec, GoogleServiceAccount};

/// Lifetime of the assertion; Google accepts at most one hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The parts of a service-account JSON key that minting uses (`Debug` redacts the key).
#[derive(Debug)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: SecretString,
    pub private_key_id: Option<String>,
    pub token_uri: String,
}

impl ServiceAccountKey {
    /// Parse a JSON key; the error names the missing or bad member, never a value.
    pub fn parse(json: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|_| "not a service-account JSON key (not JSON)".to_string())?;
        let text = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| format!("the service-account key has no `{k}`"))
        };
        if v.get("type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t != "service_account")
        {
            return Err("the JSON key's `type` is not `service_account`".into());
        }
        let private_key = SecretString::from(text("private_key")?.to_string());
        check_rsa_pem(private_key.expose_secret())
            .map_err(|why| format!("the key's `private_key` is {why}"))?;
        let token_uri = text("token_uri")?.to_string();
        if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
            return Err("the key's `token_uri` is not an http(s) URL".into());
        }
        Ok(ServiceAccountKey {
            client_email: text("client_email")?.to_string(),
            private_key,
            private_key_id: v
                .get("private_key_id")
                .and_then(|x| x.as_str())
                .map(str::to_string),
            token_uri,
        })
    }
}

pub(super) async fn fetch(
    ctx: &Ctx<'_>,
    spec: &CredentialSpec,
    sa: &GoogleServiceAccount,
    user: Option<&str>,
) -> Result<Token, CredError> {
    let subject = match sa.subject.as_deref() {
        None => None,
        Some(s) if s.contains("{user}") => match user {
            Some(u) => Some(s.replace("{user}", u)),
            None => return Err(CredError::Missing),
        },
        Some(s) => Some(s.to_string()),
    };
    let json = ctx.secrets.resolve(&sa.key).await?;
    let key = ServiceAccountKey::parse(json.expose_secret()).map_err(CredError::Invalid)?;
    let now = now_secs();
    let mut claims = serde_json::json!({
        "iss": key.client_email,
        "scope": sa.scopes.join(" "),
        "aud": key.token_uri,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    });
    if let Some(sub) = subject {
        claims["sub"] = serde_json::Value::String(sub);
    }
    let assertion =
        assertion::sign_rs256(&key.private_key, key.private_key_id.as_deref(), &claims)?;
    let req = MintRequest {
        url: key.token_uri.clone(),
        auth: MintAuth::None,
        body: MintBody::Form(vec![
            ("grant_type", SecretString::from(JWT_BEARER)),
            ("assertion", assertion),
        ]),
        headers: vec![],
    };
    assertion::mint(
        ctx,
        spec,
        req,
        Answer {
            token: "access_token",
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_problems_are_named() {
        assert!(
            ServiceAccountKey::parse("nope")
                .unwrap_err()
                .contains("not JSON")
        );
        let no_email = serde_json::json!({"type": "service_account", "private_key": "x", "token_uri": "https://t"});
        let e = ServiceAccountKey::parse(&no_email.to_string()).unwrap_err();
        assert!(e.contains("private_key"), "{e}");
        let wrong = serde_json::json!({"type": "authorized_user"});
        assert!(
            ServiceAccountKey::parse(&wrong.to_string())
                .unwrap_err()
                .contains("type")
        );
    }
}
