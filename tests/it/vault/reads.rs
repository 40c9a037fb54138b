//! `source: vault` per-user reads against a real OpenBao: each user gets their own
//! token, no identity reaches another path, a missing secret is 401
//! `credential_missing` with the connect URL, and the cache counters add up.

use crate::openbao::{OpenBao, Sidekey, Upstream, config, random_token};

const CREDS: &str = "  notion-user:
    source: vault
    path: users/{user}/notion
    connect_url: https://agents.example.com/connect/notion?user={user}
  flat:
    source: vault
    path: users/{user}";
const ROUTES: &str = "  - name: notion
    match: {host: api.test}
    auth: assistant
    credential: notion-user
  - name: flat
    match: {host: flat.test}
    auth: assistant
    credential: flat";

async fn setup() -> (OpenBao, Upstream, Sidekey) {
    let bao = OpenBao::start().await;
    let up = Upstream::start().await;
    let yaml = config(
        &bao.url(),
        "{method: token, token_env: VAULT_TOKEN}",
        up.addr,
        CREDS,
        ROUTES,
    )
    .replace("  api.test:", "  flat.test: PLACEHOLDER\n  api.test:")
    .replace("PLACEHOLDER", &up.addr.to_string());
    let sk = Sidekey::start(&yaml, &[("VAULT_TOKEN", &bao.root_token)]).await;
    sk.wait_ready(200, 30).await;
    (bao, up, sk)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_reads_missing_and_cache_counters() {
    let (bao, up, sk) = setup().await;
    let (ta, tb) = (random_token("alice"), random_token("bob"));
    bao.kv_put(
        "users/alice/notion",
        serde_json::json!({"access_token": ta}),
    )
    .await;
    bao.kv_put(
        "users/bob@example.com/notion",
        serde_json::json!({"access_token": tb, "scopes": ["read"]}),
    )
    .await;

    let r = sk.get(Some("alice"), "http://api.test/v1/pages").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.last_auth(), Some(format!("Bearer {ta}")));
    let r = sk
        .get(Some("bob@example.com"), "http://api.test/v1/pages")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.last_auth(), Some(format!("Bearer {tb}")));
    for _ in 0..3 {
        assert_eq!(sk.get(Some("alice"), "http://api.test/x").await.status, 200);
    }

    // Missing: 401 credential_missing naming the credential, with the connect URL filled in.
    let r = sk
        .get(Some("carol smith"), "http://api.test/v1/pages")
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-sidekey-error"), Some("credential_missing"));
    let body = r.json();
    assert_eq!(body["error"], "credential_missing");
    assert_eq!(body["credential"], "notion-user");
    assert_eq!(
        body["connect_url"],
        "https://agents.example.com/connect/notion?user=carol%20smith"
    );
    assert_eq!(
        up.auths().len(),
        5,
        "nothing went upstream without a credential"
    );

    let labels = |res: &'static str| ["credential=\"notion-user\"", "source=\"vault\"", res];
    let m = "sidekey_credential_lookups_total";
    assert_eq!(sk.metric(m, &labels("result=\"miss\"")).await, 2.0);
    assert_eq!(sk.metric(m, &labels("result=\"hit\"")).await, 3.0);
    assert_eq!(sk.metric(m, &labels("result=\"error\"")).await, 1.0);
    let metrics = sk.admin("/metrics").await.body;
    assert!(
        !metrics.contains("alice") && !metrics.contains("carol"),
        "no user ids in metrics"
    );
    sk.assert_no_secrets(&[ta, tb, bao.root_token.clone()])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_escaping_attacks_reach_no_other_path() {
    let (bao, up, sk) = setup().await;
    // Secrets an attacker would like to reach.
    let victims = [
        "users/x/notion",
        "x/notion",
        "notion",
        "users/a/b/notion",
        "users/a/notion",
        "users/%2e%2e/notion",
        "users/%2E%2E/notion",
        "users/x",
        "users/a/b",
    ];
    let mut tokens = Vec::new();
    for v in victims {
        let t = random_token("victim");
        bao.kv_put(v, serde_json::json!({"access_token": t})).await;
        tokens.push(t);
    }
    let long = "a".repeat(5000);
    let attacks = [
        "../x",
        "../../x",
        "..",
        ".",
        "a/b",
        "a/b/..",
        "%2e%2e",
        "%2e%2e%2fx",
        "..%2fx",
        "a%2Fb",
        "x/../../notion",
        "a\\b",
        "..\\x",
        "a/b/notion/..",
        "",
        " ",
        "a\tb",
        long.as_str(),
        "x?y",
        "x#y",
        "x/",
        "/x",
    ];
    for who in attacks {
        let r = sk.get(Some(who), "http://api.test/v1/pages").await;
        assert!(
            r.status == 401 || r.status == 400,
            "identity {who:?} got {}: {}",
            r.status,
            r.body
        );
        let r = sk.get(Some(who), "http://flat.test/v1/pages").await;
        assert!(
            r.status == 401 || r.status == 400,
            "identity {who:?} got {} on flat",
            r.status
        );
    }
    assert!(
        up.auths().is_empty(),
        "no attack reached the upstream with a token"
    );

    // An odd but legitimate id is one literal key: `a/b` is stored under `a%2Fb`.
    let own = random_token("ab");
    bao.kv_put(
        "users/a%2Fb/notion",
        serde_json::json!({"access_token": own}),
    )
    .await;
    let r = sk.get(Some("a/b"), "http://api.test/v1/pages").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.last_auth(), Some(format!("Bearer {own}")));
    tokens.push(own);
    sk.assert_no_secrets(&tokens).await;
}
