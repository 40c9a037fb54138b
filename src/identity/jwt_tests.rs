use std::sync::OnceLock;

use jsonwebtoken::{EncodingKey, Header, encode};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use serde_json::json;

use super::*;

struct Signer {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
    public_pem: String,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn es256(kid: &'static str) -> Signer {
    let kp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw();
    Signer {
        kid,
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(&kp.serialize_der()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
                    "x": b64(&raw[1..33]), "y": b64(&raw[33..])}),
        public_pem: kp.public_key_pem(),
    }
}

fn ed25519(kid: &'static str) -> Signer {
    let kp = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    Signer {
        kid,
        alg: Algorithm::EdDSA,
        key: EncodingKey::from_ed_der(&kp.serialize_der()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(kp.public_key_raw())}),
        public_pem: kp.public_key_pem(),
    }
}

fn rs256(kid: &'static str) -> Signer {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    let k = KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap());
    Signer {
        kid,
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(k.to_pkcs1_der().unwrap().as_bytes()),
        jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                    "n": b64(&k.n().to_bytes_be()), "e": b64(&k.e().to_bytes_be())}),
        public_pem: String::new(),
    }
}

fn sign(s: &Signer, claims: Value) -> String {
    let mut h = Header::new(s.alg);
    h.kid = Some(s.kid.into());
    encode(&h, &claims, &s.key).unwrap()
}

fn claims() -> Value {
    let now = now_secs();
    json!({"sub": "alice", "iss": "https://idp.test", "aud": "sidekey",
           "exp": now + 300, "iat": now, "groups": ["hr-admins", "staff"]})
}

fn with(extra: Value) -> Value {
    let mut c = claims();
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

struct Fixture {
    _dir: tempfile::TempDir,
    v: JwtVerifier,
}

async fn verifier(signers: &[&Signer], algorithms: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    let keys: Vec<Value> = signers.iter().map(|s| s.jwk.clone()).collect();
    std::fs::write(&file, json!({"keys": keys}).to_string()).unwrap();
    let cfg = JwtConfig {
        jwks_url: None,
        jwks_file: Some(file),
        issuer: Some("https://idp.test".into()),
        audiences: vec!["sidekey".into()],
        user_claim: "sub".into(),
        groups_claim: Some("groups".into()),
        leeway_seconds: 30,
        algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
        refresh_interval: Duration::from_secs(60),
    };
    Fixture {
        v: JwtVerifier::new(&cfg, &Roots::default()).await.unwrap(),
        _dir: dir,
    }
}

async fn reason(v: &JwtVerifier, token: &str) -> String {
    match v.verify(token).await {
        Ok(id) => panic!("accepted as {}", id.user),
        Err(e) => {
            assert_eq!(e.code(), "identity_invalid");
            let msg = e.to_string();
            assert!(!msg.contains(token), "error echoes the token");
            msg.trim_start_matches("identity rejected: ").to_string()
        }
    }
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_to_user_and_groups() {
    let (rs, es, ed) = (rs256("rs"), es256("es"), ed25519("ed"));
    let f = verifier(&[&rs, &es, &ed], &["RS256", "ES256", "EdDSA"]).await;
    for s in [&rs, &es, &ed] {
        let id = f.v.verify(&sign(s, claims())).await.unwrap();
        assert_eq!(&*id.user, "alice");
        let groups: Vec<&str> = id.groups.as_deref().unwrap().iter().map(|g| &**g).collect();
        assert_eq!(groups, ["hr-admins", "staff"]);
    }
    let bearer = format!(
        "Bearer {}",
        sign(&es, with(json!({"sub": "bob", "groups": "solo"})))
    );
    let id = f.v.verify(&bearer).await.unwrap();
    assert_eq!((&*id.user, id.groups.unwrap().len()), ("bob", 1));
}

#[tokio::test]
async fn verified_tokens_are_cached_by_hash_until_expiry() {
    let es = es256("es");
    let f = verifier(&[&es], &["ES256"]).await;
    let token = sign(&es, claims());
    f.v.verify(&token).await.unwrap();
    let (digest, _) = cache_key(&token).unwrap();
    assert!(f.v.cache.contains_key(&digest));
    // A hit is served without verifying: plant an entry to see it used.
    let planted = |user: &str, exp: u64, signed: &str| {
        let identity = Identity {
            user: user.into(),
            groups: Some(vec![]),
            token: None,
        };
        let signed = signed.as_bytes().into();
        Arc::new(Entry {
            verified: Verified { identity, exp },
            signed,
        })
    };
    let (signed, _) = token.rsplit_once('.').unwrap();
    f.v.cache
        .insert(digest, planted("from-cache", now_secs() + 60, signed));
    assert_eq!(&*f.v.verify(&token).await.unwrap().user, "from-cache");
    // A cached entry past its exp is never served.
    f.v.cache
        .insert(digest, planted("mallory", now_secs() - 1, signed));
    assert_eq!(&*f.v.verify(&token).await.unwrap().user, "alice");
    // Same signature, other header.payload: the splice is verified, and refused.
    let evil = sign(&es, with(json!({"sub": "mallory"})));
    let spliced = format!(
        "{}.{}",
        evil.rsplit_once('.').unwrap().0,
        token.rsplit_once('.').unwrap().1
    );
    assert_eq!(cache_key(&spliced).unwrap().0, digest);
    assert_eq!(reason(&f.v, &spliced).await, "bad signature");
    // Refused tokens are not cached.
    let expired = sign(&es, with(json!({"exp": now_secs() - 3600})));
    assert_eq!(reason(&f.v, &expired).await, "expired");
    assert!(!f.v.cache.contains_key(&cache_key(&expired).unwrap().0));
}

#[tokio::test]
async fn time_issuer_and_audience_are_enforced_with_leeway() {
    let es = es256("es");
    let f = verifier(&[&es], &["ES256"]).await;
    let now = now_secs();
    let ok = |c| sign(&es, c);
    assert!(
        f.v.verify(&ok(with(json!({"exp": now - 10}))))
            .await
            .is_ok(),
        "within leeway"
    );
    assert_eq!(
        reason(&f.v, &ok(with(json!({"exp": now - 120})))).await,
        "expired"
    );
    assert_eq!(
        reason(&f.v, &ok(with(json!({"nbf": now + 120})))).await,
        "not yet valid"
    );
    assert!(
        f.v.verify(&ok(with(json!({"nbf": now + 10}))))
            .await
            .is_ok(),
        "within leeway"
    );
    assert_eq!(
        reason(&f.v, &ok(with(json!({"iss": "https://evil.test"})))).await,
        "wrong issuer"
    );
    assert_eq!(
        reason(&f.v, &ok(with(json!({"aud": "someone-else"})))).await,
        "wrong audience"
    );
    assert!(
        f.v.verify(&ok(with(json!({"aud": ["x", "sidekey"]}))))
            .await
            .is_ok()
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(reason(&f.v, &ok(c)).await, "missing exp claim");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(reason(&f.v, &ok(c)).await, "missing aud claim");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(reason(&f.v, &ok(c)).await, "missing iss claim");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(reason(&f.v, &ok(c)).await, "missing user claim");
}

#[tokio::test]
async fn forged_and_confused_tokens_are_refused() {
    let es = es256("es");
    let f = verifier(&[&es], &["ES256", "EdDSA"]).await;
    // Same kid, another key: bad signature.
    let impostor = es256("es");
    assert_eq!(
        reason(&f.v, &sign(&impostor, claims())).await,
        "bad signature"
    );
    // A valid signature over other claims.
    let good = sign(&es, claims());
    let evil = sign(&es, with(json!({"sub": "mallory"})));
    let spliced: Vec<&str> = good.split('.').collect();
    let payload = evil.split('.').nth(1).unwrap();
    let spliced = format!("{}.{payload}.{}", spliced[0], spliced[2]);
    assert_eq!(reason(&f.v, &spliced).await, "bad signature");
    // alg none, unsigned.
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "es"}).to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    assert_eq!(reason(&f.v, &none).await, "algorithm not allowed");
    // HS256 "signed" with the public key material (PEM and JWK).
    for secret in [es.public_pem.clone(), es.jwk.to_string()] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("es".into());
        let t = encode(&h, &claims(), &EncodingKey::from_secret(secret.as_bytes())).unwrap();
        assert_eq!(reason(&f.v, &t).await, "algorithm not allowed");
    }
    // An allowed algorithm the key is not for: the header alg must agree with the key.
    let ed = Signer {
        kid: "es",
        ..ed25519("x")
    };
    assert_eq!(
        reason(&f.v, &sign(&ed, claims())).await,
        "key does not match the token algorithm"
    );
    // An algorithm outside the allow-list.
    let rs = rs256("es");
    assert_eq!(
        reason(&f.v, &sign(&rs, claims())).await,
        "algorithm not allowed"
    );
}

#[tokio::test]
async fn malformed_oversized_and_unknown_key_tokens_are_refused() {
    let es = es256("es");
    let f = verifier(&[&es], &["ES256"]).await;
    assert_eq!(reason(&f.v, "not-a-jwt").await, "malformed");
    assert_eq!(reason(&f.v, "a.b.c.d.e").await, "malformed");
    assert_eq!(reason(&f.v, "Bearer ").await, "malformed");
    let huge = format!("{}.{}.x", "a".repeat(10), "b".repeat(MAX_TOKEN_BYTES));
    assert_eq!(reason(&f.v, &huge).await, "token too large");
    let other = es256("rotated-away");
    assert_eq!(reason(&f.v, &sign(&other, claims())).await, "unknown key");
    let crit = format!(
        "{}.{}.sig",
        b64(json!({"alg": "ES256", "kid": "es", "crit": ["exp"]})
            .to_string()
            .as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    assert_eq!(reason(&f.v, &crit).await, "malformed");
    let token = sign(&es, with(json!({"groups": [1, 2]})));
    assert_eq!(reason(&f.v, &token).await, "bad groups claim");
}

#[tokio::test]
async fn tokens_without_kid_try_the_keys_that_fit() {
    let (a, b) = (es256("a"), es256("b"));
    let f = verifier(&[&a, &b], &["ES256"]).await;
    let no_kid = encode(&Header::new(Algorithm::ES256), &claims(), &b.key).unwrap();
    assert_eq!(&*f.v.verify(&no_kid).await.unwrap().user, "alice");
    let stranger = es256("c");
    let no_kid = encode(&Header::new(Algorithm::ES256), &claims(), &stranger.key).unwrap();
    assert_eq!(reason(&f.v, &no_kid).await, "bad signature");
}

#[test]
fn hmac_algorithms_cannot_be_configured() {
    let cfg = JwtConfig {
        jwks_url: None,
        jwks_file: Some("/nonexistent".into()),
        issuer: None,
        audiences: vec![],
        user_claim: "sub".into(),
        groups_claim: None,
        leeway_seconds: 0,
        algorithms: vec!["HS256".into()],
        refresh_interval: Duration::from_secs(60),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(
        rt.block_on(JwtVerifier::new(&cfg, &Roots::default()))
            .is_err()
    );
}
