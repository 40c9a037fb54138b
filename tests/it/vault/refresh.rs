//! OAuth `refresh:` against a real OpenBao and a local token endpoint that rotates
//! refresh tokens and rejects used ones: one refresh for all waiters, check-and-set
//! write-back, two sidecars racing on one user, and a revoked grant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::openbao::{OpenBao, Sidekey, TokenServer, Upstream, config, random_token};

fn creds(token_url: &str, client_auth: &str) -> String {
    format!(
        "  notion-user:
    source: vault
    path: users/{{user}}/notion
    refresh:
      token_url: {token_url}
      client_id: {{env: NOTION_CLIENT_ID}}
      client_secret: {{vault: claws/notion-app, field: client_secret}}
      client_auth: {client_auth}
    connect_url: https://agents.example.com/connect/notion?user={{user}}"
    )
}

const ROUTES: &str = "  - name: notion
    match: {host: api.test}
    auth: assistant
    credential: notion-user";

fn unix_in(secs: i64) -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
        + secs
}

struct World {
    bao: OpenBao,
    up: Upstream,
    oauth: TokenServer,
    client_secret: String,
}

async fn world(delay_ms: u64) -> World {
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
        Duration::from_millis(delay_ms),
    )
    .await;
    World {
        bao,
        up: Upstream::start().await,
        oauth,
        client_secret,
    }
}

async fn sidekey(w: &World, client_auth: &str) -> Sidekey {
    let yaml = config(
        &w.bao.url(),
        "{method: token, token_env: VAULT_TOKEN}",
        w.up.addr,
        &creds(&w.oauth.url(), client_auth),
        ROUTES,
    );
    let sk = Sidekey::start(
        &yaml,
        &[
            ("VAULT_TOKEN", &w.bao.root_token),
            ("NOTION_CLIENT_ID", "notion-client"),
        ],
    )
    .await;
    sk.wait_ready(200, 30).await;
    sk
}

fn secrets(w: &World, extra: &[&str]) -> Vec<String> {
    let mut s = w.oauth.issued();
    s.push(w.client_secret.clone());
    s.push(w.bao.root_token.clone());
    s.extend(extra.iter().map(|x| x.to_string()));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_expiry_refreshes_once_and_writes_back() {
    let w = world(100).await;
    let sk = sidekey(&w, "basic").await;
    let (old_at, rt0) = (random_token("old"), w.oauth.grant());
    w.bao.kv_put("users/alice/notion", serde_json::json!({"access_token": old_at, "refresh_token": rt0, "expires_at": unix_in(20), "scopes": ["read"]})).await;

    let calls = (0..8).map(|_| sk.get(Some("alice"), "http://api.test/v1/pages"));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (refresh_hits, _, rejected) = w.oauth.hits();
    assert_eq!(
        (refresh_hits, rejected),
        (1, 0),
        "one refresh for all waiters"
    );
    let stored = w.bao.kv_get("users/alice/notion").await.expect("secret");
    let (at, rt) = (
        stored["access_token"].as_str().unwrap().to_string(),
        stored["refresh_token"].as_str().unwrap().to_string(),
    );
    assert_ne!(at, old_at);
    assert!(
        w.oauth.is_valid(&rt),
        "the rotated refresh token was written back"
    );
    assert!(!w.oauth.is_valid(&rt0));
    assert_eq!(
        stored["scopes"],
        serde_json::json!(["read"]),
        "other fields kept"
    );
    assert!(
        w.up.auths()
            .iter()
            .all(|a| a.as_deref() == Some(&format!("Bearer {at}")))
    );
    assert_eq!(
        sk.metric(
            "sidekey_token_refreshes_total",
            &["credential=\"notion-user\"", "result=\"success\""]
        )
        .await,
        1.0
    );
    let meta = w
        .bao
        .api("GET", "secret/metadata/users/alice/notion", None)
        .await
        .json();
    assert_eq!(meta["data"]["current_version"], 2, "one write-back");
    sk.assert_no_secrets(&secrets(&w, &[&old_at, &rt0])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_refresh_one_user_at_once() {
    let w = world(300).await;
    let (a, b) = (sidekey(&w, "basic").await, sidekey(&w, "body").await);
    let (old_at, rt0) = (random_token("old"), w.oauth.grant());
    w.bao.kv_put("users/alice/notion", serde_json::json!({"access_token": old_at, "refresh_token": rt0, "expires_at": unix_in(-5)})).await;

    let (ra, rb) = tokio::join!(
        a.get(Some("alice"), "http://api.test/a"),
        b.get(Some("alice"), "http://api.test/b")
    );
    assert_eq!(
        (ra.status, rb.status),
        (200, 200),
        "{} / {}",
        ra.body,
        rb.body
    );
    let stored = w.bao.kv_get("users/alice/notion").await.expect("secret");
    let (at, rt) = (
        stored["access_token"].as_str().unwrap().to_string(),
        stored["refresh_token"].as_str().unwrap().to_string(),
    );
    assert!(
        w.oauth.is_valid(&rt),
        "the stored refresh token is the live one"
    );
    assert!(
        w.up.auths()
            .iter()
            .all(|x| x.as_deref() == Some(&format!("Bearer {at}"))),
        "both sidecars served the stored token"
    );
    // And both keep serving it.
    for sk in [&a, &b] {
        assert_eq!(
            sk.get(Some("alice"), "http://api.test/again").await.status,
            200
        );
        assert_eq!(w.up.last_auth(), Some(format!("Bearer {at}")));
    }
    let m = "sidekey_token_refreshes_total";
    let success =
        a.metric(m, &["result=\"success\""]).await + b.metric(m, &["result=\"success\""]).await;
    assert_eq!(success, 1.0, "exactly one sidecar refreshed");
    let conflict =
        a.metric(m, &["result=\"conflict\""]).await + b.metric(m, &["result=\"conflict\""]).await;
    eprintln!(
        "token endpoint (refresh, cc, rejected) = {:?}; conflicts = {conflict}",
        w.oauth.hits()
    );
    let meta = w
        .bao
        .api("GET", "secret/metadata/users/alice/notion", None)
        .await
        .json();
    assert_eq!(meta["data"]["current_version"], 2, "exactly one write-back");
    a.assert_no_secrets(&secrets(&w, &[&old_at])).await;
    b.assert_no_secrets(&secrets(&w, &[&old_at])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_refresh_token_is_credential_expired() {
    let w = world(0).await;
    let sk = sidekey(&w, "basic").await;
    let old_at = random_token("old");
    w.bao.kv_put("users/bob/notion", serde_json::json!({"access_token": old_at, "refresh_token": "rt-revoked-xyz", "expires_at": unix_in(-60)})).await;
    let r = sk.get(Some("bob"), "http://api.test/v1/pages").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("x-sidekey-error"), Some("credential_expired"));
    assert_eq!(
        r.json()["connect_url"],
        "https://agents.example.com/connect/notion?user=bob"
    );
    assert!(w.up.auths().is_empty());
    assert_eq!(
        sk.metric(
            "sidekey_token_refreshes_total",
            &["result=\"invalid_grant\""]
        )
        .await,
        1.0
    );
    sk.assert_no_secrets(&secrets(&w, &[&old_at, "rt-revoked-xyz"]))
        .await;
}
