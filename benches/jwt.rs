//! JWT identity cost: verifying a fresh token (signature + claims) against the cached
//! path (SHA-256 of the token and a cache lookup). The cached path must stay under 1 µs.
//!
//!     cargo bench --bench jwt

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::json;
use sidekey::config::{JwtConfig, Roots};
use sidekey::identity::jwt::JwtVerifier;

struct Fixture {
    verifier: JwtVerifier,
    rs256: String,
    es256: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa");
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec");
    let raw = ec.public_key_raw();
    let doc = json!({"keys": [
        {"kty": "RSA", "kid": "rs", "alg": "RS256", "n": b64(&rsa.n().to_bytes_be()), "e": b64(&rsa.e().to_bytes_be())},
        {"kty": "EC", "crv": "P-256", "kid": "es", "alg": "ES256", "x": b64(&raw[1..33]), "y": b64(&raw[33..])},
    ]});
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, doc.to_string()).expect("write jwks");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // A realistic IdP token: a dozen claims and a few groups.
    let claims = json!({
        "iss": "https://idp.example.com/oauth2/default", "aud": "sidekey", "sub": "00u1abcd2EFGH3ijk4x7",
        "email": "alice@example.com", "name": "Alice Example", "iat": now, "exp": now + 3600,
        "jti": "ID.4kXwOeGmVJ3pQ9sQnqk2bTq8pR5Lx", "groups": ["hr-admins", "staff", "everyone"],
        "scp": ["openid", "profile", "email"], "cid": "0oa1b2c3d4e5f6g7h8",
    });
    let token = |alg, kid: &str, key: &EncodingKey| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        encode(&h, &claims, key).expect("sign")
    };
    let rs_key = EncodingKey::from_rsa_der(rsa.to_pkcs1_der().expect("der").as_bytes());
    let es_key = EncodingKey::from_ec_der(&ec.serialize_der());
    let cfg = JwtConfig {
        jwks_url: None,
        jwks_file: Some(file),
        issuer: Some("https://idp.example.com/oauth2/default".into()),
        audiences: vec!["sidekey".into()],
        user_claim: "email".into(),
        groups_claim: Some("groups".into()),
        leeway_seconds: 30,
        algorithms: vec!["RS256".into(), "ES256".into()],
        refresh_interval: Duration::from_secs(60),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let verifier = rt
        .block_on(JwtVerifier::new(&cfg, &Roots::default()))
        .expect("verifier");
    Fixture {
        verifier,
        rs256: token(Algorithm::RS256, "rs", &rs_key),
        es256: token(Algorithm::ES256, "es", &es_key),
        _dir: dir,
    }
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let v = &f.verifier;
    for (name, token) in [("RS256", &f.rs256), ("ES256", &f.es256)] {
        let header = format!("Bearer {token}");
        // Neither path awaits anything once the keys are loaded: poll once.
        let fresh = || v.verify_uncached(black_box(&header)).now_or_never();
        let cached = || v.verify(black_box(&header)).now_or_never();
        assert!(
            matches!(fresh(), Some(Ok(_))),
            "{name} token does not verify"
        );
        assert!(matches!(cached(), Some(Ok(_))));
        c.bench_function(&format!("jwt/fresh/{name}"), |b| b.iter(fresh));
        c.bench_function(&format!("jwt/cached/{name}"), |b| b.iter(cached));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
