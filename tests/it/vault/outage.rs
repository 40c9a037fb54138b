//! Vault outages: a warm cache keeps serving, a cold lookup is 503
//! `credential_store_unavailable`, and sidekey starts while Vault is down (healthz 200,
//! readyz 503) and recovers when Vault comes up.

use crate::openbao::{OpenBao, Sidekey, Upstream, config, free_port, random_token};

const CREDS: &str = "  notion-user:
    source: vault
    path: users/{user}/notion
    connect_url: https://agents.example.com/connect/notion?user={user}";
const ROUTES: &str = "  - name: notion
    match: {host: api.test}
    auth: assistant
    credential: notion-user";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_stopped_while_warm_and_cold() {
    let mut bao = OpenBao::start().await;
    let up = Upstream::start().await;
    let yaml = config(
        &bao.url(),
        "{method: token, token_env: VAULT_TOKEN}",
        up.addr,
        CREDS,
        ROUTES,
    );
    let sk = Sidekey::start(&yaml, &[("VAULT_TOKEN", &bao.root_token)]).await;
    sk.wait_ready(200, 30).await;
    let ta = random_token("alice");
    bao.kv_put(
        "users/alice/notion",
        serde_json::json!({"access_token": ta}),
    )
    .await;
    bao.kv_put(
        "users/bob/notion",
        serde_json::json!({"access_token": random_token("bob")}),
    )
    .await;
    assert_eq!(
        sk.get(Some("alice"), "http://api.test/warm").await.status,
        200
    );

    bao.stop();
    let r = sk.get(Some("alice"), "http://api.test/cached").await;
    assert_eq!(r.status, 200, "warm credential keeps serving: {}", r.body);
    assert_eq!(up.last_auth(), Some(format!("Bearer {ta}")));
    let r = sk.get(Some("bob"), "http://api.test/cold").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.header("x-sidekey-error"),
        Some("credential_store_unavailable")
    );
    assert_eq!(up.auths().len(), 2, "no call went out without a credential");
    assert_eq!(sk.admin("/healthz").await.status, 200);
    assert_eq!(sk.admin("/readyz").await.status, 200, "cache warm");
    sk.assert_no_secrets(&[ta, bao.root_token.clone()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_vault_is_down_and_recovers() {
    let port = free_port();
    let up = Upstream::start().await;
    let yaml = config(
        &format!("http://127.0.0.1:{port}"),
        "{method: token, token_file: vault-token}",
        up.addr,
        CREDS,
        ROUTES,
    );
    // The token file does not exist yet either: start-up must not depend on Vault at all.
    let sk = Sidekey::start(&yaml, &[]).await;
    assert_eq!(sk.admin("/healthz").await.status, 200);
    let ready = sk.admin("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let r = sk.get(Some("alice"), "http://api.test/x").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.header("x-sidekey-error"),
        Some("credential_store_unavailable")
    );
    assert!(up.auths().is_empty());

    let bao = OpenBao::start_on(port).await;
    let cfg_dir = sk.config_dir();
    std::fs::write(cfg_dir.join("vault-token"), format!("{}\n", bao.root_token))
        .expect("token file");
    let ta = random_token("alice");
    bao.kv_put(
        "users/alice/notion",
        serde_json::json!({"access_token": ta}),
    )
    .await;
    sk.wait_ready(200, 60).await;
    let r = sk.get(Some("alice"), "http://api.test/x").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.last_auth(), Some(format!("Bearer {ta}")));
    sk.assert_no_secrets(&[ta, bao.root_token.clone()]).await;
}
