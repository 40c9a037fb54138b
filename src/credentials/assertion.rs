//! The one home of "a source that mints a token": `github_app`, `google_service_account`
//! and `token_exchange` each build their request (and, for the first two, an RS256
//! assertion signed here), and [`mint`] posts it, reads the token and its expiry, counts
//! it, and maps failures the same way for all three:
//!
//! * endpoint unreachable, 5xx, 408/429, timeout -> `Unavailable` (503
//!   `credential_store_unavailable`; a still-usable cached token keeps serving);
//! * a refusal (other 4xx) -> `Refused` for a claw credential (502 `upstream_error`),
//!   `Expired` for a per-user one (401 `credential_expired`).
//!
//! Caching and single-flight are the store's (`mod.rs`), keyed per credential and, for
//! per-user sources, per user (and identity token). Keys are resolved from their
//! [`SecretRef`](crate::config::SecretRef) at each mint into a [`SecretString`], parsed,
//! used and dropped; no key, assertion or minted token is ever logged or quoted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};

use super::backend::{MintError, MintRequest, SecretMap};
use super::refresh::Ctx;
use super::token::{non_empty_str, parse_expiry};
use super::{CredError, Token};
use crate::config::CredentialSpec;

/// Whether `pem` is an RSA private key jsonwebtoken can sign RS256 with (PKCS#1 or
/// PKCS#8). The error names the problem, never the key.
pub fn check_rsa_pem(pem: &str) -> Result<(), String> {
    EncodingKey::from_rsa_pem(pem.as_bytes())
        .map(|_| ())
        .map_err(|_| "not an RSA private key in PEM form (PKCS#1 or PKCS#8)".to_string())
}

/// Sign `claims` with RS256 (and `kid` in the header when given).
pub(super) fn sign_rs256(
    pem: &SecretString,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> Result<SecretString, CredError> {
    let key = EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes()).map_err(|_| {
        CredError::Invalid("signing key is not an RSA private key in PEM form".into())
    })?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key)
        .map(SecretString::from)
        .map_err(|_| CredError::Invalid("cannot sign the assertion".into()))
}

/// Seconds since the epoch (JWT `iat`/`exp`).
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How a source reads its endpoint's answer.
pub(super) struct Answer {
    /// The member holding the token (`token` for GitHub, `access_token` for OAuth).
    pub token: &'static str,
}

/// Post `req`, read the token from the answer, count and log the outcome, map errors.
pub(super) async fn mint(
    ctx: &Ctx<'_>,
    spec: &CredentialSpec,
    req: MintRequest,
    answer: Answer,
) -> Result<Token, CredError> {
    let name = &*spec.name;
    let source = spec.source_name();
    match ctx.mint.post(req).await {
        Ok(map) => match read_token(&map, &answer) {
            Some(t) => {
                ctx.metrics.token_refresh(name, "success");
                tracing::debug!(credential = name, source, "minted a token");
                Ok(t)
            }
            None => {
                ctx.metrics.token_refresh(name, "error");
                tracing::warn!(
                    credential = name,
                    source,
                    "token endpoint answer has no `{}`",
                    answer.token
                );
                Err(CredError::Unavailable(format!(
                    "the token endpoint's answer has no `{}`",
                    answer.token
                )))
            }
        },
        Err(MintError::Unavailable(why)) => {
            ctx.metrics.token_refresh(name, "error");
            tracing::warn!(credential = name, source, reason = %why, "token endpoint unavailable");
            Err(CredError::Unavailable(why))
        }
        Err(MintError::Refused(why)) => {
            ctx.metrics.token_refresh(name, "refused");
            tracing::warn!(credential = name, source, reason = %why, "token endpoint refused to mint a token");
            Err(if spec.per_user() {
                CredError::Expired
            } else {
                CredError::Refused(why)
            })
        }
    }
}

/// The token and its expiry: `expires_at` (RFC 3339 or unix seconds, GitHub) or
/// `expires_in` (seconds from now, OAuth).
fn read_token(map: &SecretMap, answer: &Answer) -> Option<Token> {
    let token = non_empty_str(map, answer.token)?;
    let expires_in = map.get("expires_in").and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    });
    let expires_at = match (map.get("expires_at").and_then(parse_expiry), expires_in) {
        (Some(at), _) => Some(at),
        (None, Some(secs)) => Some(SystemTime::now() + Duration::from_secs(secs)),
        (None, None) => None,
    };
    Some(Token {
        expires_at,
        ..Token::bare(token.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_either_expiry_form() {
        let gh = serde_json::json!({"token": "ghs_x", "expires_at": "2030-01-01T00:00:00Z"});
        let t = read_token(gh.as_object().unwrap(), &Answer { token: "token" }).unwrap();
        assert_eq!(
            t.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_893_456_000))
        );
        let oauth = serde_json::json!({"access_token": "ya29", "expires_in": "120"});
        let t = read_token(
            oauth.as_object().unwrap(),
            &Answer {
                token: "access_token",
            },
        )
        .unwrap();
        let left = t.remaining(SystemTime::now()).unwrap();
        assert!(left <= Duration::from_secs(120) && left > Duration::from_secs(100));
        assert!(read_token(oauth.as_object().unwrap(), &Answer { token: "token" }).is_none());
    }

    #[test]
    fn bad_keys_are_named_not_quoted() {
        let e = check_rsa_pem("-----BEGIN PRIVATE KEY-----\nnot-a-key-s3cret\n").unwrap_err();
        assert!(!e.contains("s3cret"));
    }
}
