//! Tokens from a real issuer: OpenBao's `identity/oidc` token endpoint, verified by
//! sidekey against OpenBao's own JWKS (`/v1/identity/oidc/.well-known/keys`). Needs
//! the `bao` CLI (see `jwt_support/openbao.rs`); fails, never skips, without it.

use std::time::Duration;

use crate::jwt_support::openbao::OpenBao;
use crate::jwt_support::{Expect, Sidekey, TestServer, bearer, config_for, write_secrets};
use serde_json::json;

const ID: &str = "x-sidekey-user";

#[test]
fn openbao_identity_tokens_are_verified_against_openbao_jwks() {
    let bao = OpenBao::start();
    let client_id = bao.oidc_role("sidekey", "agent");
    let other_client = bao.oidc_role("sidekey", "other-app");
    let issuer = bao.issuer();
    let alice = bao.user_token("alice", &["hr-admins"], &["agent", "other-app"]);
    let bob = bao.user_token("bob", &[], &["agent"]);

    let upstream = TestServer::start("{}");
    let expect = Expect {
        issuer: &issuer,
        audience: &client_id,
        user_claim: "username",
    };
    let jwks = format!("jwks_url: {}", bao.jwks_url());
    let sk = Sidekey::start(&config_for(&jwks, upstream.addr, &expect), write_secrets);

    // alice: in hr-admins, so both her own route and the group-gated claw route work.
    let token = bao.id_token(&alice, "agent");
    let r = sk.get("api.test", "/me/profile", &[(ID, &bearer(&token))]);
    assert_eq!(r.status, 200, "{}\n{}", r.body, sk.all_output());
    assert_eq!(
        upstream.last().unwrap().header("authorization"),
        Some("Bearer alice-token")
    );
    let audit = sk.audit_for(&r.request_id());
    assert_eq!(audit["user"], "alice");
    assert_eq!(audit["groups"], json!(["hr-admins"]));
    let r = sk.get("api.test", "/hr/employees", &[(ID, &bearer(&token))]);
    assert_eq!(r.status, 200, "{}", r.body);

    // bob: verified, but not in the group.
    let token = bao.id_token(&bob, "agent");
    let r = sk.get("api.test", "/me/profile", &[(ID, &bearer(&token))]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        upstream.last().unwrap().header("authorization"),
        Some("Bearer bob-token")
    );
    let r = sk.get("api.test", "/hr/employees", &[(ID, &bearer(&token))]);
    assert_eq!(
        (r.status, r.error().as_deref()),
        (403, Some("user_not_allowed"))
    );
    assert_eq!(sk.audit_for(&r.request_id())["groups"], json!([]));

    // A token OpenBao minted for another client: right issuer and key, wrong audience.
    let token = bao.id_token(&alice, "other-app");
    assert_ne!(client_id, other_client);
    let r = sk.get("api.test", "/me/profile", &[(ID, &bearer(&token))]);
    assert_eq!(
        (r.status, r.error().as_deref()),
        (401, Some("identity_invalid"))
    );
    assert_eq!(r.json()["message"], "identity rejected: wrong audience");

    // A tampered OpenBao token: claims swapped, signature kept.
    let good = bao.id_token(&bob, "agent");
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    let alice_claims = bao.id_token(&alice, "agent");
    parts[1] = alice_claims.split('.').nth(1).unwrap().to_string();
    let r = sk.get(
        "api.test",
        "/me/profile",
        &[(ID, &bearer(&parts.join(".")))],
    );
    assert_eq!(
        (r.status, r.error().as_deref()),
        (401, Some("identity_invalid"))
    );
    assert_eq!(r.json()["message"], "identity rejected: bad signature");

    // OpenBao rotates its key: the new kid is fetched from its JWKS on first use.
    std::thread::sleep(Duration::from_millis(1100));
    bao.rotate("sidekey");
    let token = bao.id_token(&alice, "agent");
    let r = sk.get("api.test", "/me/profile", &[(ID, &bearer(&token))]);
    assert_eq!(r.status, 200, "after rotation: {}", r.body);
    assert_eq!(sk.audit_for(&r.request_id())["user"], "alice");
}
