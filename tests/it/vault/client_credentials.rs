//! `source: oauth_client_credentials` for a claw: the token is fetched once (client id
//! from a file reference, secret from a Vault reference) and reused until expiry.

use std::time::Duration;

use crate::openbao::{OpenBao, Sidekey, TokenServer, Upstream, config, random_token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_fetch_for_many_calls() {
    let bao = OpenBao::start().await;
    let up = Upstream::start().await;
    let secret = random_token("rippling-secret");
    bao.kv_put(
        "claws/rippling",
        serde_json::json!({"client_secret": secret}),
    )
    .await;
    let oauth = TokenServer::start("rippling-app", &secret, 3600, Duration::from_millis(100)).await;
    let dir = tempfile::tempdir().unwrap();
    let id_file = dir.path().join("client_id");
    std::fs::write(&id_file, "rippling-app\n").unwrap();
    let creds = format!(
        "  rippling-service:
    source: oauth_client_credentials
    token_url: {}
    client_id: {{file: {}}}
    client_secret: {{vault: claws/rippling, field: client_secret}}
    scopes: [employees.read]",
        oauth.url(),
        id_file.display()
    );
    let routes = "  - name: rippling
    match: {host: api.test}
    auth: claw
    credential: rippling-service";
    let yaml = config(
        &bao.url(),
        "{method: token, token_env: VAULT_TOKEN}",
        up.addr,
        &creds,
        routes,
    );
    let sk = Sidekey::start(&yaml, &[("VAULT_TOKEN", &bao.root_token)]).await;
    sk.wait_ready(200, 30).await;

    let burst = (0..10).map(|_| sk.get(None, "http://api.test/platform/api/employees"));
    for r in futures_util::future::join_all(burst).await {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for _ in 0..10 {
        assert_eq!(
            sk.get(Some("anyone"), "http://api.test/platform/api/employees")
                .await
                .status,
            200
        );
    }
    assert_eq!(oauth.hits(), (0, 1, 0), "the token endpoint was hit once");
    let issued = oauth.issued();
    let auths = up.auths();
    assert_eq!(auths.len(), 20);
    assert!(
        auths
            .iter()
            .all(|a| a.as_deref() == Some(&format!("Bearer {}", issued[0])))
    );
    let m = "sidekey_credential_lookups_total";
    assert_eq!(
        sk.metric(m, &["credential=\"rippling-service\"", "result=\"miss\""])
            .await,
        1.0
    );
    assert_eq!(
        sk.metric(m, &["credential=\"rippling-service\"", "result=\"hit\""])
            .await,
        19.0
    );
    let mut secrets = issued;
    secrets.extend([secret, bao.root_token.clone()]);
    sk.assert_no_secrets(&secrets).await;
}
