//! No secret in sidekey's output: one run through every credential path (AppRole
//! login, per-user reads, refresh with write-back, client credentials, a missing and a
//! revoked credential, a Vault outage) at `trace` log level, then every token, secret
//! id and client secret used is searched for in all of stdout, stderr and /metrics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::openbao::{OpenBao, Sidekey, TokenServer, Upstream, config, random_token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_in_any_output() {
    let mut bao = OpenBao::start().await;
    let up = Upstream::start().await;
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
    let policy = r#"path "secret/*" { capabilities = ["read", "update", "create"] }"#;
    assert_eq!(
        bao.api(
            "PUT",
            "sys/policies/acl/sk",
            Some(serde_json::json!({"policy": policy}))
        )
        .await
        .status,
        204
    );
    let role = serde_json::json!({"token_policies": ["sk"], "token_ttl": "1h"});
    assert_eq!(
        bao.api("POST", "auth/approle/role/sk", Some(role))
            .await
            .status,
        204
    );
    let role_id = bao
        .api("GET", "auth/approle/role/sk/role-id", None)
        .await
        .json()["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = bao
        .api("POST", "auth/approle/role/sk/secret-id", None)
        .await
        .json()["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();

    let client_secret = random_token("client-secret");
    bao.kv_put(
        "claws/app",
        serde_json::json!({"client_secret": client_secret}),
    )
    .await;
    let oauth = TokenServer::start("app", &client_secret, 3600, Duration::ZERO).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (at_alice, at_bob, at_carol) = (
        random_token("alice"),
        random_token("bob"),
        random_token("carol"),
    );
    let rt_alice = oauth.grant();
    bao.kv_put("users/alice/svc", serde_json::json!({"access_token": at_alice, "refresh_token": rt_alice, "expires_at": now + 10})).await;
    bao.kv_put("users/bob/svc", serde_json::json!({"access_token": at_bob}))
        .await;
    bao.kv_put("users/carol/svc", serde_json::json!({"access_token": at_carol, "refresh_token": "rt-revoked-carol", "expires_at": now - 100})).await;

    let creds = format!(
        "  user-svc:
    source: vault
    path: users/{{user}}/svc
    refresh:
      token_url: {url}
      client_id: {{env: APP_ID}}
      client_secret: {{vault: claws/app, field: client_secret}}
  claw-svc:
    source: oauth_client_credentials
    token_url: {url}
    client_id: {{env: APP_ID}}
    client_secret: {{vault: claws/app, field: client_secret}}",
        url = oauth.url()
    );
    let routes = "  - name: user
    match: {host: api.test}
    auth: assistant
    credential: user-svc
  - name: claw
    match: {host: claw.test}
    auth: claw
    credential: claw-svc";
    let yaml = config(
        &bao.url(),
        "{method: approle, role_id_env: ROLE_ID, secret_id_env: SECRET_ID}",
        up.addr,
        &creds,
        routes,
    )
    .replace(
        "  api.test:",
        &format!("  claw.test: {}\n  api.test:", up.addr),
    );
    let env = [
        ("ROLE_ID", role_id.as_str()),
        ("SECRET_ID", secret_id.as_str()),
        ("APP_ID", "app"),
        ("SIDEKEY_LOG", "trace"),
    ];
    let sk = Sidekey::start(&yaml, &env).await;
    sk.wait_ready(200, 30).await;

    for (user, host, want) in [
        ("alice", "api.test", 200),
        ("bob", "api.test", 200),
        ("carol", "api.test", 401),
        ("dave", "api.test", 401),
        ("x", "claw.test", 200),
    ] {
        let r = sk
            .get(Some(user), &format!("http://{host}/p?api_key=q"))
            .await;
        assert_eq!(r.status, want, "{user}@{host}: {}", r.body);
    }
    bao.stop();
    assert_eq!(sk.get(Some("bob"), "http://api.test/p").await.status, 200);
    assert_eq!(sk.get(Some("erin"), "http://api.test/p").await.status, 503);

    let mut secrets = oauth.issued();
    secrets.extend([
        secret_id,
        client_secret,
        at_alice,
        at_bob,
        at_carol,
        rt_alice,
        "rt-revoked-carol".into(),
        bao.root_token.clone(),
    ]);
    assert!(
        sk.output().lines().count() > 20,
        "trace logging produced output to search"
    );
    sk.assert_no_secrets(&secrets).await;
}
