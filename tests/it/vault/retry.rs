//! An upstream 401 on an assistant route: the cached credential is dropped, refreshed
//! once, and the (replayable) request retried once, never more.

use std::time::{SystemTime, UNIX_EPOCH};

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
      client_secret: {{vault: claws/notion-app, field: client_secret}}
    connect_url: https://agents.example.com/connect/notion?user={{user}}"
    )
}

fn in_an_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 3600
}

async fn setup(up: &Upstream) -> (OpenBao, TokenServer, Sidekey, String) {
    let bao = OpenBao::start().await;
    let client_secret = random_token("notion-secret");
    bao.kv_put(
        "claws/notion-app",
        serde_json::json!({"client_secret": client_secret}),
    )
    .await;
    let oauth = TokenServer::start(
        "notion-client",
        &client_secret,
        3600,
        std::time::Duration::ZERO,
    )
    .await;
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
        ],
    )
    .await;
    sk.wait_ready(200, 30).await;
    (bao, oauth, sk, client_secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_401_refreshes_and_retries_once() {
    // The upstream has revoked the stored access token (it still looks valid for an hour).
    let revoked = random_token("revoked-at");
    let bad = format!("Bearer {revoked}");
    let up = Upstream::start_refusing(move |auth| auth == bad).await;
    let (bao, oauth, sk, client_secret) = setup(&up).await;
    let rt0 = oauth.grant();
    bao.kv_put("users/alice/notion", serde_json::json!({"access_token": revoked, "refresh_token": rt0, "expires_at": in_an_hour()})).await;

    let r = sk.get(Some("alice"), "http://api.test/v1/pages").await;
    assert_eq!(
        r.status, 200,
        "the retry with a refreshed token must succeed: {}",
        r.body
    );
    let auths = up.auths();
    assert_eq!(auths.len(), 2, "one refused call and one retry: {auths:?}");
    assert_eq!(
        auths[0].as_deref(),
        Some(format!("Bearer {revoked}").as_str())
    );
    let stored = bao.kv_get("users/alice/notion").await.expect("secret");
    let fresh = stored["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_ne!(fresh, revoked, "the refreshed token is written back");
    assert_eq!(
        auths[1].as_deref(),
        Some(format!("Bearer {fresh}").as_str())
    );
    assert_eq!(oauth.hits().0, 1, "exactly one refresh");

    // The next call uses the refreshed token straight away.
    let r = sk.get(Some("alice"), "http://api.test/v1/pages").await;
    assert_eq!(r.status, 200);
    assert_eq!(up.auths().len(), 3);
    let mut secrets = oauth.issued();
    secrets.extend([revoked.clone(), client_secret, bao.root_token.clone()]);
    sk.assert_no_secrets(&secrets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_401_goes_back_to_the_agent_without_another_retry() {
    let up = Upstream::start_refusing(|_| true).await;
    let (bao, oauth, sk, _) = setup(&up).await;
    let rt0 = oauth.grant();
    bao.kv_put("users/alice/notion", serde_json::json!({"access_token": random_token("at"), "refresh_token": rt0, "expires_at": in_an_hour()})).await;

    let r = sk.get(Some("alice"), "http://api.test/v1/pages").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.header("x-sidekey-error").is_none(),
        "the upstream's own 401 is passed back"
    );
    assert_eq!(up.auths().len(), 2, "one retry, never more");
    assert_eq!(oauth.hits().0, 1);
}
