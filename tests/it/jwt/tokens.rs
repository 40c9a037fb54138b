//! JWT identity through the real binary: RS256 and ES256 tokens against a JWKS file
//! and a JWKS URL, key rotation, an IdP that is down at start, and every way a token
//! must be refused (401 identity_invalid with a short reason, never echoing it).

use std::time::Duration;

use crate::jwt_support::keys::{self, claims, claims_with, es256, jwks, now, rs256, sign};
use crate::jwt_support::{Sidekey, TestServer, bearer, config, free_port, write_secrets};
use serde_json::json;

const ID: &str = "x-sidekey-user";

#[test]
fn rs256_and_es256_tokens_from_a_jwks_file_reach_the_upstream_as_their_user() {
    let upstream = TestServer::start("{}");
    let (rs, es) = (rs256("rs-1"), es256("es-1"));
    let doc = jwks(&[&rs, &es]);
    let sk = Sidekey::start(&config("jwks_file: jwks.json", upstream.addr), |d| {
        write_secrets(d);
        std::fs::write(d.join("jwks.json"), &doc).unwrap();
    });

    let alice = sign(&rs, &claims("alice", &["hr-admins", "staff"]));
    let r = sk.get("api.test", "/me/profile", &[(ID, &bearer(&alice))]);
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = upstream.last().expect("upstream called");
    assert_eq!(seen.header("authorization"), Some("Bearer alice-token"));
    assert_eq!(
        seen.header(ID),
        None,
        "identity header must not be forwarded"
    );
    let audit = sk.audit_for(&r.request_id());
    assert_eq!(audit["user"], "alice");
    assert_eq!(audit["groups"], json!(["hr-admins", "staff"]));
    assert_eq!(audit["auth_context"], "user_delegated");
    assert_eq!(audit["decision"], "allow");

    // ES256, without the Bearer prefix; the second call is served from the cache.
    let bob = sign(&es, &claims("bob", &["staff"]));
    for _ in 0..2 {
        let r = sk.get("api.test", "/me/profile", &[(ID, &bob)]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            upstream.last().unwrap().header("authorization"),
            Some("Bearer bob-token")
        );
        let audit = sk.audit_for(&r.request_id());
        assert_eq!(
            (audit["user"].as_str(), audit["groups"].clone()),
            (Some("bob"), json!(["staff"]))
        );
    }
}

#[test]
fn missing_identity_is_required_on_an_assistant_route_only() {
    let upstream = TestServer::start("{}");
    let rs = rs256("rs-1");
    let doc = jwks(&[&rs]);
    let sk = Sidekey::start(&config("jwks_file: jwks.json", upstream.addr), |d| {
        write_secrets(d);
        std::fs::write(d.join("jwks.json"), &doc).unwrap();
    });
    let r = sk.get("api.test", "/me/profile", &[]);
    assert_eq!(
        (r.status, r.error().as_deref()),
        (401, Some("identity_required"))
    );
    assert!(r.header("www-authenticate").is_some());
    let audit = sk.audit_for(&r.request_id());
    assert_eq!(
        (audit["error"].as_str(), audit["user"].is_null()),
        (Some("identity_required"), true)
    );
    let r = sk.get("api.test", "/open/x", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn refused_tokens_are_401_identity_invalid_with_a_reason_and_never_echoed() {
    let upstream = TestServer::start("{}");
    let (rs, es) = (rs256("rs-1"), es256("es-1"));
    let doc = jwks(&[&rs, &es]);
    let sk = Sidekey::start(&config("jwks_file: jwks.json", upstream.addr), |d| {
        write_secrets(d);
        std::fs::write(d.join("jwks.json"), &doc).unwrap();
    });
    let impostor = es256("es-1"); // same kid, different key
    let stranger = es256("es-unknown");
    let (t, g) = ("alice", &["hr-admins"][..]);
    let cases = [
        (
            "expired",
            sign(&rs, &claims_with(t, g, json!({"exp": now() - 600}))),
        ),
        (
            "not yet valid",
            sign(&rs, &claims_with(t, g, json!({"nbf": now() + 600}))),
        ),
        (
            "wrong issuer",
            sign(&es, &claims_with(t, g, json!({"iss": "https://evil.test"}))),
        ),
        (
            "wrong audience",
            sign(&es, &claims_with(t, g, json!({"aud": "another-app"}))),
        ),
        ("bad signature", sign(&impostor, &claims(t, g))),
        (
            "algorithm not allowed",
            keys::unsigned("rs-1", &claims(t, g)),
        ),
        (
            "algorithm not allowed",
            keys::hs256_with_public_key(&rs, &claims(t, g)),
        ),
        (
            "algorithm not allowed",
            keys::hs256_with_public_key(&es, &claims(t, g)),
        ),
        ("unknown key", sign(&stranger, &claims(t, g))),
        ("malformed", "not.a.jwt".to_string()),
        (
            "token too large",
            format!("{}.{}.x", "a".repeat(8), "b".repeat(20_000)),
        ),
    ];
    for (reason, token) in &cases {
        // A route that needs no identity still refuses a bad one: fail closed.
        for path in ["/me/profile", "/open/x"] {
            let r = sk.get("api.test", path, &[(ID, &bearer(token))]);
            assert_eq!(
                (r.status, r.error().as_deref()),
                (401, Some("identity_invalid")),
                "{reason}: {}",
                r.body
            );
            let message = r.json()["message"].as_str().unwrap().to_string();
            assert!(message.ends_with(reason), "{reason}: got {message:?}");
            assert!(r.header("www-authenticate").is_some());
            let audit = sk.audit_for(&r.request_id());
            assert_eq!(audit["error"], "identity_invalid");
            assert_eq!(audit["decision"], "deny");
            assert!(audit["user"].is_null());
        }
    }
    assert_eq!(
        upstream.hits(),
        0,
        "no refused token may reach the upstream"
    );
    let output = sk.all_output();
    for (reason, token) in &cases {
        let sig = token.rsplit('.').next().unwrap_or_default();
        let payload = token.split('.').nth(1).unwrap_or_default();
        for part in [sig, payload] {
            if part.len() > 8 {
                assert!(
                    !output.contains(part),
                    "{reason}: token part echoed in output"
                );
            }
        }
    }
}

#[test]
fn jwks_from_a_url_follows_key_rotation_and_survives_an_idp_outage() {
    let upstream = TestServer::start("{}");
    let (old, new) = (rs256("2024-old"), es256("2025-new"));
    let idp = TestServer::start(&jwks(&[&old]));
    let url = format!("jwks_url: http://{}/.well-known/jwks.json", idp.addr);
    let sk = Sidekey::start(&config(&url, upstream.addr), write_secrets);
    assert_eq!(idp.hits(), 1, "fetched once at start");

    let r = sk.get(
        "api.test",
        "/me/x",
        &[(ID, &bearer(&sign(&old, &claims("alice", &[]))))],
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // The IdP rotates: a token signed with the new kid makes sidekey refetch.
    idp.set_body(&jwks(&[&old, &new]));
    std::thread::sleep(Duration::from_millis(1100));
    let fresh = sign(&new, &claims("bob", &["staff"]));
    let r = sk.get("api.test", "/me/x", &[(ID, &bearer(&fresh))]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(sk.audit_for(&r.request_id())["user"], "bob");
    assert_eq!(idp.hits(), 2);

    // Unknown kids do not hammer the IdP: at most one refetch per refresh_interval.
    let stranger = es256("nobody");
    for _ in 0..5 {
        let r = sk.get(
            "api.test",
            "/me/x",
            &[(ID, &bearer(&sign(&stranger, &claims("bob", &[]))))],
        );
        assert_eq!(r.json()["message"], "identity rejected: unknown key");
    }
    assert!(idp.hits() <= 3, "refetched {} times", idp.hits());

    // The IdP breaks: the last good set keeps serving.
    idp.set_body("<html>maintenance</html>");
    std::thread::sleep(Duration::from_millis(1100));
    let _ = sk.get(
        "api.test",
        "/me/x",
        &[(ID, &bearer(&sign(&stranger, &claims("bob", &[]))))],
    );
    let r = sk.get(
        "api.test",
        "/me/x",
        &[(
            ID,
            &bearer(&sign(&old, &claims_with("alice", &[], json!({"jti": "2"})))),
        )],
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn sidekey_starts_while_the_idp_is_down_and_recovers_on_use() {
    let upstream = TestServer::start("{}");
    let port = free_port();
    let url = format!("jwks_url: http://127.0.0.1:{port}/keys");
    let sk = Sidekey::start(&config(&url, upstream.addr), write_secrets);
    let rs = rs256("k1");
    let token = sign(&rs, &claims("alice", &[]));
    let r = sk.get("api.test", "/me/x", &[(ID, &bearer(&token))]);
    assert_eq!(
        (r.status, r.error().as_deref()),
        (401, Some("identity_invalid"))
    );
    assert_eq!(
        r.json()["message"],
        "identity rejected: signing keys unavailable"
    );

    let _idp = TestServer::start_on(port, &jwks(&[&rs]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = sk.get("api.test", "/me/x", &[(ID, &bearer(&token))]);
        if r.status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
