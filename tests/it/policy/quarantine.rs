//! Credential quarantine against a real OpenBao and a token endpoint that answers
//! `invalid_grant`: after the first failed refresh, that (credential, user) answers
//! `credential_expired` at once without calling the endpoint again (its hits are
//! counted), until a new secret version is written.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::openbao::{OpenBao, Sidekey, TokenServer, Upstream, config, random_token};

const ROUTES: &str = "  - name: notion
    match: {host: api.test}
    auth: assistant
    credential: notion-user";

fn creds(token_url: &str) -> String {
    format!(
        "  notion-user:
    source: vault
    path: users/{{user}}/notion
    refresh:
      token_url: {token_url}
      client_id: {{env: NOTION_CLIENT_ID}}
      client_secret: {{env: NOTION_CLIENT_SECRET}}
    connect_url: https://agents.example.com/connect/notion?user={{user}}"
    )
}

fn unix_in(secs: i64) -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        + secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_grant_is_quarantined_until_a_new_secret_version() {
    let bao = OpenBao::start().await;
    let client_secret = random_token("notion-secret");
    let oauth = TokenServer::start("notion-client", &client_secret, 3600, Duration::ZERO).await;
    let up = Upstream::start().await;
    let yaml = config(
        &bao.url(),
        "{method: token, token_env: VAULT_TOKEN}",
        up.addr,
        &creds(&oauth.url()),
        ROUTES,
    );
    let sk = Sidekey::start(
        &yaml,
        &[
            ("VAULT_TOKEN", &bao.root_token),
            ("NOTION_CLIENT_ID", "notion-client"),
            ("NOTION_CLIENT_SECRET", &client_secret),
        ],
    )
    .await;
    sk.wait_ready(200, 30).await;
    let (dead_at, dead_rt) = (random_token("dead-at"), random_token("rt-revoked"));
    bao.kv_put("users/bob/notion", serde_json::json!({"access_token": dead_at, "refresh_token": dead_rt, "expires_at": unix_in(-60)})).await;
    let carol_at = random_token("carol-at");
    bao.kv_put(
        "users/carol/notion",
        serde_json::json!({"access_token": carol_at, "expires_at": unix_in(3600)}),
    )
    .await;

    for i in 0..6 {
        let r = sk.get(Some("bob"), "http://api.test/v1/pages").await;
        assert_eq!(r.status, 401, "call {i}: {}", r.body);
        assert_eq!(r.header("x-sidekey-error"), Some("credential_expired"));
        assert_eq!(
            r.json()["connect_url"],
            "https://agents.example.com/connect/notion?user=bob"
        );
    }
    let (refresh_hits, _, rejected) = oauth.hits();
    assert_eq!(
        (refresh_hits, rejected),
        (1, 1),
        "one token-endpoint call for six requests"
    );
    assert!(up.auths().is_empty(), "nothing went upstream");
    let held = sk
        .metric(
            "sidekey_credential_quarantines_total",
            &["credential=\"notion-user\""],
        )
        .await;
    assert_eq!(held, 1.0);
    assert_eq!(sk.stderr_count("credential quarantined"), 1, "one log line");
    // Another user of the same credential is not affected.
    assert_eq!(
        sk.get(Some("carol"), "http://api.test/v1/x").await.status,
        200
    );

    // The user reconnects: a new version with a live grant releases the quarantine.
    let live_rt = oauth.grant();
    bao.kv_put("users/bob/notion", serde_json::json!({"access_token": dead_at, "refresh_token": live_rt, "expires_at": unix_in(-60)})).await;
    let r = sk.get(Some("bob"), "http://api.test/v1/pages").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(oauth.hits().0, 2, "refreshed with the new grant");
    let stored = bao.kv_get("users/bob/notion").await.expect("secret");
    let fresh = stored["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(up.last_auth(), Some(format!("Bearer {fresh}")));
    assert!(sk.stderr_has("released from quarantine"));

    let mut secrets = oauth.issued();
    secrets.extend([
        client_secret,
        bao.root_token.clone(),
        dead_at,
        dead_rt,
        carol_at,
    ]);
    sk.assert_no_secrets(&secrets).await;
}
