//! Locally generated signing keys (RS256 via `rsa`, ES256 via `rcgen`), their JWKS,
//! and tokens signed (or forged) with them.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://idp.example.test";
pub const AUDIENCE: &str = "sidekey-tests";

pub struct Signer {
    pub kid: String,
    pub alg: Algorithm,
    key: EncodingKey,
    pub jwk: Value,
    /// The public key as PEM, for key-confusion forgeries.
    pub public_pem: String,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// One 2048-bit RSA key per test binary (generation is the slow part).
fn rsa_key() -> &'static rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa key"))
}

pub fn rs256(kid: &str) -> Signer {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let k = rsa_key();
    Signer {
        kid: kid.into(),
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(k.to_pkcs1_der().expect("der").as_bytes()),
        jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                    "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be())}),
        public_pem: k
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem"),
    }
}

pub fn es256(kid: &str) -> Signer {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
    let raw = kp.public_key_raw();
    Signer {
        kid: kid.into(),
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(&kp.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                    "x": b64(&raw[1..33]), "y": b64(&raw[33..])}),
        public_pem: kp.public_key_pem(),
    }
}

pub fn jwks(signers: &[&Signer]) -> String {
    let keys: Vec<&Value> = signers.iter().map(|s| &s.jwk).collect();
    json!({ "keys": keys }).to_string()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Claims for `user` in `groups`, valid for five minutes.
pub fn claims(user: &str, groups: &[&str]) -> Value {
    let now = now();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": user, "groups": groups,
           "iat": now, "exp": now + 300})
}

/// `claims` with some fields replaced.
pub fn claims_with(user: &str, groups: &[&str], changes: Value) -> Value {
    let mut c = claims(user, groups);
    for (k, v) in changes.as_object().expect("object") {
        c[k] = v.clone();
    }
    c
}

pub fn sign(s: &Signer, claims: &Value) -> String {
    let mut h = Header::new(s.alg);
    h.kid = Some(s.kid.clone());
    encode(&h, claims, &s.key).expect("sign")
}

/// `alg: none`: no signature at all.
pub fn unsigned(kid: &str, claims: &Value) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// The classic key confusion: HS256 with the IdP's *public* key as the HMAC secret.
pub fn hs256_with_public_key(s: &Signer, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(s.kid.clone());
    encode(
        &h,
        claims,
        &EncodingKey::from_secret(s.public_pem.as_bytes()),
    )
    .expect("sign")
}
