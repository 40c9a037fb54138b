//! The signing keys JWT identity trusts: a JWKS parsed into ready-to-use keys.
//!
//! [`KeySet::parse`] turns a JWKS document into [`VerifyKey`]s, dropping every key that
//! must never verify a token (symmetric `oct` keys, encryption keys, RSA below 2048
//! bits, curves sidekey does not support), so no later check can be talked into an
//! HMAC-with-the-public-key confusion. [`VerifyKey::fits`] is the one place that says
//! whether a key may verify a given header `alg`: its `kty`/`crv` family must agree,
//! and its own `alg`, when the JWKS names one, must be exactly the header's.
//! Where the document comes from, and when it is fetched again, is `keys.rs`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// Most keys taken from one document; a JWKS has a handful.
const MAX_KEYS: usize = 64;

/// Why a JWKS document could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS document: {0}")]
    Malformed(String),
    #[error("the JWKS holds no usable signing key")]
    NoUsableKey,
}

/// The key family, with the curve where it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One public key that may verify signatures.
pub struct VerifyKey {
    pub kid: Option<String>,
    /// The JWKS `alg`, when the key is pinned to one.
    alg: Option<Algorithm>,
    kind: Kind,
    pub key: DecodingKey,
}

impl VerifyKey {
    /// Whether this key may verify a token whose header says `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|pinned| pinned != alg) {
            return false;
        }
        use Algorithm::*;
        matches!(
            (self.kind, alg),
            (Kind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (Kind::P256, ES256)
                | (Kind::P384, ES384)
                | (Kind::Ed25519, EdDSA)
        )
    }
}

/// A parsed JWKS: the usable signing keys, in document order.
pub struct KeySet {
    keys: Vec<VerifyKey>,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// Parse a JWKS document. Unusable keys are skipped (and logged at debug level);
    /// a document with none left is an error, so a bad fetch never replaces a good set.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
        let doc: Document =
            serde_json::from_slice(bytes).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let mut keys = Vec::new();
        for (i, value) in doc.keys.into_iter().enumerate().take(MAX_KEYS) {
            match parse_key(value) {
                Ok(k) => keys.push(k),
                Err(why) => tracing::debug!(index = i, why, "JWKS key skipped"),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(KeySet { keys })
    }

    /// How many usable keys the set holds (never zero).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether any key carries this `kid` (whatever its algorithm).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Keys that may verify a token with this `kid` (or any kid, when the token has
    /// none) and header `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .filter(move |k| k.fits(alg))
    }
}

fn parse_key(value: serde_json::Value) -> Result<VerifyKey, &'static str> {
    // Keys for encryption never verify a signature.
    match value.get("use") {
        None => {}
        Some(u) if u == "sig" => {}
        Some(_) => return Err("`use` is not `sig`"),
    }
    if let Some(ops) = value.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o == "verify"));
        if !verifies {
            return Err("`key_ops` lacks `verify`");
        }
    }
    let jwk: Jwk = serde_json::from_value(value).map_err(|_| "malformed key")?;
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(Algorithm::try_from(a).map_err(|_| "unsupported `alg`")?),
    };
    let (kind, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = URL_SAFE_NO_PAD
                .decode(p.n.trim_end_matches('='))
                .map_err(|_| "bad RSA modulus")?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err("RSA key shorter than 2048 bits");
            }
            let key = DecodingKey::from_rsa_components(&p.n, &p.e).map_err(|_| "bad RSA key")?;
            (Kind::Rsa, key)
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let kind = match p.curve {
                EllipticCurve::P256 => Kind::P256,
                EllipticCurve::P384 => Kind::P384,
                _ => return Err("unsupported curve"),
            };
            let key = DecodingKey::from_ec_components(&p.x, &p.y).map_err(|_| "bad EC key")?;
            (kind, key)
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err("unsupported OKP curve");
            }
            let key = DecodingKey::from_ed_components(&p.x).map_err(|_| "bad Ed25519 key")?;
            (Kind::Ed25519, key)
        }
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are never trusted"),
        _ => return Err("unsupported key type"),
    };
    let key = VerifyKey {
        kid: jwk.common.key_id,
        alg,
        kind,
        key,
    };
    // A key pinned to an algorithm of another family (an RSA key marked HS256, say)
    // could never verify anything: drop it rather than keep a trap.
    if let Some(a) = key.alg
        && !key.fits(a)
    {
        return Err("`alg` disagrees with `kty`");
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ec_key(kid: &str) -> serde_json::Value {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw();
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
               "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..])})
    }

    #[test]
    fn symmetric_encryption_and_weak_keys_are_dropped() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB", "kid": "rsa1024"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 256]), "e": "AQAB", "kid": "enc", "use": "enc"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 256]), "e": "AQAB", "kid": "oaep", "alg": "RSA-OAEP"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 256]), "e": "AQAB", "kid": "hs", "alg": "HS256"},
            {"kty": "weird"},
            ec_key("ec1"),
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.has_kid("ec1"));
        assert!(!set.has_kid("hmac"));
        assert_eq!(set.candidates(Some("ec1"), Algorithm::ES256).count(), 1);
        assert_eq!(set.candidates(None, Algorithm::ES256).count(), 1);
        assert_eq!(set.candidates(Some("ec1"), Algorithm::ES384).count(), 0);
        assert_eq!(set.candidates(Some("ec1"), Algorithm::HS256).count(), 0);
        assert_eq!(set.candidates(Some("ec1"), Algorithm::RS256).count(), 0);
    }

    #[test]
    fn pinned_alg_must_equal_the_header_alg() {
        let doc = json!({"keys": [
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 256]), "e": "AQAB", "kid": "r", "alg": "RS256"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 256]), "e": "AQAB", "kid": "any"},
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.candidates(Some("r"), Algorithm::RS256).count(), 1);
        assert_eq!(set.candidates(Some("r"), Algorithm::PS256).count(), 0);
        assert_eq!(set.candidates(Some("any"), Algorithm::PS256).count(), 1);
    }

    #[test]
    fn documents_without_usable_keys_are_errors() {
        assert!(matches!(
            KeySet::parse(b"not json"),
            Err(JwksError::Malformed(_))
        ));
        assert!(matches!(
            KeySet::parse(b"{\"keys\": []}"),
            Err(JwksError::NoUsableKey)
        ));
        let only_hmac = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
        assert!(matches!(
            KeySet::parse(only_hmac.as_bytes()),
            Err(JwksError::NoUsableKey)
        ));
    }
}
