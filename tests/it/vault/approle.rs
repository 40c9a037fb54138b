//! AppRole login against OpenBao with a least-privilege policy: reads under `users/*`
//! work, a path the policy does not grant is 503 and logged as a policy denial (not as
//! a missing secret), and the short-lived AppRole token is renewed / replaced.

use std::time::Duration;

use crate::openbao::{OpenBao, Sidekey, Upstream, config, random_token};

const POLICY: &str = r#"
path "secret/data/users/*" { capabilities = ["read", "update"] }
path "secret/data/claws/*" { capabilities = ["read"] }
"#;

async fn approle(bao: &OpenBao, ttl: &str, max_ttl: &str) -> (String, String) {
    assert_eq!(
        bao.api(
            "POST",
            "sys/auth/approle",
            Some(serde_json::json!({"type": "approle"}))
        )
        .await
        .status,
        204
    );
    let r = bao
        .api(
            "PUT",
            "sys/policies/acl/sidekey",
            Some(serde_json::json!({"policy": POLICY})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let role = serde_json::json!({"token_policies": ["sidekey"], "token_ttl": ttl, "token_max_ttl": max_ttl});
    assert_eq!(
        bao.api("POST", "auth/approle/role/sidekey", Some(role))
            .await
            .status,
        204
    );
    let role_id = bao
        .api("GET", "auth/approle/role/sidekey/role-id", None)
        .await
        .json()["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = bao
        .api("POST", "auth/approle/role/sidekey/secret-id", None)
        .await
        .json()["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    (role_id, secret_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_login_policy_denial_and_token_renewal() {
    let bao = OpenBao::start().await;
    let up = Upstream::start().await;
    let (role_id, secret_id) = approle(&bao, "3s", "6s").await;
    let creds = "  notion-user:
    source: vault
    path: users/{user}/notion
  admin-secret:
    source: vault
    path: admin/{user}/token";
    let routes = "  - name: notion
    match: {host: api.test}
    auth: assistant
    credential: notion-user
  - name: admin
    match: {host: admin.test}
    auth: assistant
    credential: admin-secret";
    let yaml = config(
        &bao.url(),
        "{method: approle, role_id_env: ROLE_ID, secret_id_env: SECRET_ID}",
        up.addr,
        creds,
        routes,
    )
    .replace(
        "  api.test:",
        &format!("  admin.test: {}\n  api.test:", up.addr),
    );
    let sk = Sidekey::start(&yaml, &[("ROLE_ID", &role_id), ("SECRET_ID", &secret_id)]).await;
    sk.wait_ready(200, 30).await;

    let tokens: Vec<String> = (0..4).map(|i| random_token(&format!("user{i}"))).collect();
    for (i, t) in tokens.iter().enumerate() {
        bao.kv_put(
            &format!("users/user{i}/notion"),
            serde_json::json!({"access_token": t}),
        )
        .await;
    }
    let admin_tok = random_token("admin");
    bao.kv_put(
        "admin/alice/token",
        serde_json::json!({"access_token": admin_tok}),
    )
    .await;

    let r = sk.get(Some("user0"), "http://api.test/x").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.last_auth(), Some(format!("Bearer {}", tokens[0])));

    let r = sk.get(Some("alice"), "http://admin.test/x").await;
    assert_eq!(r.status, 503, "policy denial is not `missing`: {}", r.body);
    assert_eq!(
        r.header("x-sidekey-error"),
        Some("credential_store_unavailable")
    );
    assert!(
        sk.wait_stderr("Vault policy denies"),
        "the 403 is logged as a policy denial"
    );

    // Outlive the 3s token and its 6s max TTL: renewal, then a fresh login, keep reads working.
    for (i, t) in tokens.iter().enumerate().skip(1) {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let r = sk.get(Some(&format!("user{i}")), "http://api.test/x").await;
        assert_eq!(r.status, 200, "read {i} after {}ms: {}", 2500 * i, r.body);
        assert_eq!(up.last_auth(), Some(format!("Bearer {t}")));
    }
    assert!(
        sk.stderr_has("renewed the Vault token"),
        "the AppRole token was renewed"
    );
    assert!(
        sk.stderr_count("logged in to Vault") >= 2,
        "and replaced by a new login at its max TTL"
    );
    let mut secrets = tokens.clone();
    secrets.extend([secret_id, admin_tok, bao.root_token.clone()]);
    sk.assert_no_secrets(&secrets).await;
}
