//! JWT identity: the identity header carries a token signed by the end user's IdP.
//!
//! [`JwtVerifier::verify`] accepts `<jwt>` or `Bearer <jwt>` up to [`MAX_TOKEN_BYTES`],
//! refuses any header `alg` outside the configured allow-list before a key is even
//! looked up (so `none` and every HMAC algorithm, including HS256 "signed" with the
//! IdP's public key, never get near a verifier), finds the key by `kid` (see `keys.rs`
//! and `jwks.rs`), then lets `jsonwebtoken` check the signature and the claims with
//! its defaults tightened: `exp` required, `nbf` checked, explicit leeway, `iss` and
//! `aud` required whenever they are configured. A verified token is cached until its
//! `exp`, so repeat calls cost a hash, a lookup and a compare (see [`cache_key`]).
//! Every refusal is [`Reject`]: a short reason that never quotes the token.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use moka::Expiry;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::keys::Keys;
use super::{Identity, IdentityToken, claims};
use crate::config::{JwtConfig, Roots};
use crate::error::ProxyError;

/// Longest token accepted (after any `Bearer ` prefix).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Verified tokens remembered at once.
const CACHE_CAPACITY: u64 = 10_000;
/// Keys tried for a token without `kid`.
const MAX_KEYS_TRIED: usize = 4;

/// Why a token was refused, as the short reason the client and the logs see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("malformed")]
    Malformed,
    #[error("token too large")]
    TooLarge,
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("unknown key")]
    UnknownKey,
    #[error("key does not match the token algorithm")]
    KeyMismatch,
    #[error("signing keys unavailable")]
    KeysUnavailable,
    #[error("bad signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing exp claim")]
    MissingExp,
    #[error("missing iss claim")]
    MissingIss,
    #[error("missing aud claim")]
    MissingAud,
    #[error("missing user claim")]
    MissingUser,
    #[error("bad user claim")]
    BadUser,
    #[error("bad groups claim")]
    BadGroups,
}

impl From<Reject> for ProxyError {
    fn from(r: Reject) -> Self {
        ProxyError::IdentityInvalid(r.to_string())
    }
}

fn reject_for(e: &jsonwebtoken::errors::Error) -> Reject {
    match e.kind() {
        ErrorKind::InvalidSignature => Reject::BadSignature,
        ErrorKind::ExpiredSignature => Reject::Expired,
        ErrorKind::ImmatureSignature => Reject::NotYetValid,
        ErrorKind::InvalidIssuer => Reject::WrongIssuer,
        ErrorKind::InvalidAudience => Reject::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => Reject::MissingIss,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => Reject::MissingAud,
        ErrorKind::MissingRequiredClaim(_) => Reject::MissingExp,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Reject::AlgorithmNotAllowed,
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => Reject::KeyMismatch,
        _ => Reject::Malformed,
    }
}

/// The header fields looked at before any key is.
#[derive(Deserialize)]
struct Peek {
    alg: String,
    kid: Option<String>,
    crit: Option<IgnoredAny>,
}

struct Verified {
    identity: Identity,
    exp: u64,
}

/// A cached verification: the identity, its `exp`, and the signed part of the token
/// (`header.payload`, public without the signature) that the cache key does not cover.
struct Entry {
    verified: Verified,
    signed: Box<[u8]>,
}

/// The cache key of a token and the part of it the key leaves to an exact compare.
///
/// The key is the SHA-256 of the signature segment, the only part of a JWT that is a
/// secret; `header.payload` is stored in the entry and compared byte for byte. A hit
/// therefore means the very same token was verified before, exactly as a SHA-256 of
/// the whole token would, while hashing a third (RS256) to a sixth (ES256) of the
/// bytes: the SHA-256 of a whole token alone costs about 1 µs, which is the budget
/// for the cached path. No token is kept: its signature only as a hash.
fn cache_key(token: &str) -> Option<([u8; 32], &[u8])> {
    let (signed, signature) = token.rsplit_once('.')?;
    Some((
        Sha256::digest(signature.as_bytes()).into(),
        signed.as_bytes(),
    ))
}

/// Cache entries live until the token's `exp`.
struct UntilExp;

impl Expiry<[u8; 32], Arc<Entry>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        entry: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            entry.verified.exp.saturating_sub(now_secs()),
        ))
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub struct JwtVerifier {
    keys: Keys,
    /// The allowed algorithms by header name, each with its prepared validation.
    allowed: Vec<(String, Algorithm, Validation)>,
    user_claim: String,
    groups_claim: Option<String>,
    cache: moka::sync::Cache<[u8; 32], Arc<Entry>>,
}

impl JwtVerifier {
    /// Build the verifier and load the keys once; an unreachable IdP is logged, not fatal.
    pub async fn new(cfg: &JwtConfig, roots: &Roots) -> anyhow::Result<Self> {
        let mut allowed = Vec::new();
        for name in &cfg.algorithms {
            let alg: Algorithm = name
                .parse()
                .map_err(|_| anyhow::anyhow!("identity.jwt.algorithms: unknown `{name}`"))?;
            if alg.family() == jsonwebtoken::AlgorithmFamily::Hmac {
                anyhow::bail!("identity.jwt.algorithms: HMAC algorithms are never allowed");
            }
            allowed.push((name.clone(), alg, validation(cfg, alg)));
        }
        if cfg.issuer.is_none() {
            tracing::warn!(
                "identity.jwt.issuer is not set: tokens from any issuer the keys sign for are accepted"
            );
        }
        if cfg.audiences.is_empty() {
            tracing::warn!(
                "identity.jwt.audiences is empty: tokens minted for any audience are accepted"
            );
        }
        Ok(JwtVerifier {
            keys: Keys::new(cfg, roots).await?,
            allowed,
            user_claim: cfg.user_claim.clone(),
            groups_claim: cfg.groups_claim.clone(),
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(UntilExp)
                .build(),
        })
    }

    /// Verify the identity header value, from the cache when this exact token was
    /// verified before and has not expired.
    pub async fn verify(&self, value: &str) -> Result<Identity, ProxyError> {
        let token = bare_token(value)?;
        let key = cache_key(token);
        if let Some((digest, signed)) = key
            && let Some(e) = self.cache.get(&digest)
            && *e.signed == *signed
            && e.verified.exp > now_secs()
        {
            return Ok(with_token(
                e.verified.identity.clone(),
                token,
                e.verified.exp,
            ));
        }
        let verified = self.check(token).await?;
        let identity = with_token(verified.identity.clone(), token, verified.exp);
        if let Some((digest, signed)) = key {
            let signed = signed.into();
            self.cache
                .insert(digest, Arc::new(Entry { verified, signed }));
        }
        Ok(identity)
    }

    /// Verify without the cache (benchmarks, and to compare the two paths).
    pub async fn verify_uncached(&self, value: &str) -> Result<Identity, ProxyError> {
        let token = bare_token(value)?;
        let v = self.check(token).await?;
        Ok(with_token(v.identity, token, v.exp))
    }

    async fn check(&self, token: &str) -> Result<Verified, Reject> {
        let peek = peek_header(token)?;
        let Some((_, alg, validation)) = self.allowed.iter().find(|(n, ..)| *n == peek.alg) else {
            return Err(Reject::AlgorithmNotAllowed);
        };
        let kid = peek.kid.as_deref();
        let mut set = self.keys.current();
        let lacking = match (&set, kid) {
            (None, _) => true,
            (Some(s), Some(kid)) => !s.has_kid(kid),
            (Some(s), None) => s.candidates(None, *alg).next().is_none(),
        };
        if lacking {
            set = self.keys.refresh(set.as_ref()).await;
        }
        let set = set.ok_or(Reject::KeysUnavailable)?;
        let mut outcome = match kid {
            Some(kid) if set.has_kid(kid) => Reject::KeyMismatch,
            _ => Reject::UnknownKey,
        };
        for key in set.candidates(kid, *alg).take(MAX_KEYS_TRIED) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return self.verified(&data.claims),
                // Without a kid another key may still match; any other failure is final.
                Err(e) => match reject_for(&e) {
                    Reject::BadSignature => outcome = Reject::BadSignature,
                    other => return Err(other),
                },
            }
        }
        Err(outcome)
    }

    fn verified(&self, c: &Map<String, Value>) -> Result<Verified, Reject> {
        let exp = c.get("exp").and_then(exp_secs).ok_or(Reject::MissingExp)?;
        Ok(Verified {
            identity: Identity {
                user: claims::user(c, &self.user_claim)?,
                groups: Some(claims::groups(c, self.groups_claim.as_deref())?),
                token: None,
            },
            exp,
        })
    }
}

/// The identity with the verified token attached (the cache keeps none).
fn with_token(mut identity: Identity, token: &str, exp: u64) -> Identity {
    identity.token = Some(IdentityToken::new(token, exp));
    identity
}

fn exp_secs(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// `jsonwebtoken`'s defaults, tightened: exp required and checked, nbf checked,
/// explicit leeway, iss/aud required whenever configured.
fn validation(cfg: &JwtConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = cfg.leeway_seconds;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.reject_tokens_expiring_in_less_than = 0;
    let mut required = vec!["exp"];
    if let Some(iss) = &cfg.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    if cfg.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&cfg.audiences);
        v.validate_aud = true;
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

/// The token itself: optional `Bearer ` prefix removed, size bounded.
fn bare_token(value: &str) -> Result<&str, Reject> {
    let value = value.trim();
    let token = match value.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => value[7..].trim_start(),
        _ => value,
    };
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Reject::TooLarge);
    }
    if token.is_empty() {
        return Err(Reject::Malformed);
    }
    Ok(token)
}

/// The JOSE header, read before any key is chosen. `crit` extensions are not
/// understood, so tokens carrying them are refused (RFC 7515 section 4.1.11).
fn peek_header(token: &str) -> Result<Peek, Reject> {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| Reject::Malformed)?;
    let peek: Peek = serde_json::from_slice(&json).map_err(|_| Reject::Malformed)?;
    if peek.crit.is_some() {
        return Err(Reject::Malformed);
    }
    Ok(peek)
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
