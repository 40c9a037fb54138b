//! `source: github_app`: a local GitHub installation-token endpoint that verifies the
//! app JWT with the app's public key and the down-scoping body, minting 70 s tokens.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

use super::{app_key, config, eventually, key_fragment, nonce, now, rfc3339_in, sweep};
use crate::support::{
    MintCall, MintServer, Sidekey, Upstream, assert_sidekey_error, dead_port, proxy_get,
};

/// Why the app JWT is not what GitHub requires, or `None` when it is.
fn jwt_problem(call: &MintCall) -> Option<String> {
    let jwt = call.bearer()?;
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "iat", "iss"]);
    let key = DecodingKey::from_rsa_pem(app_key().1.as_bytes()).expect("public key");
    let claims = match jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &v) {
        Ok(d) => d.claims,
        Err(e) => return Some(format!("JWT does not verify: {e}")),
    };
    let (iat, exp) = (claims["iat"].as_u64()?, claims["exp"].as_u64()?);
    let n = now();
    if claims["iss"] != "123456" {
        return Some(format!("iss {}", claims["iss"]));
    }
    if !(iat <= n.saturating_sub(55) && iat >= n.saturating_sub(120)) {
        return Some(format!("iat {iat} is not now - 60 s ({n})"));
    }
    if exp > n + 600 || exp <= n {
        return Some(format!("exp {exp} is not within 10 minutes of {n}"));
    }
    None
}

/// An installation-token endpoint for installation 7890 of app 123456.
fn github(issued: Arc<Mutex<Vec<String>>>, problems: Arc<Mutex<Vec<String>>>) -> MintServer {
    MintServer::start(Duration::from_millis(300), move |call| {
        if call.method != "POST" || call.path != "/app/installations/7890/access_tokens" {
            return (404, json!({"message": "Not Found"}));
        }
        if call.bearer().is_none() {
            problems.lock().unwrap().push("no bearer JWT".into());
            return (
                401,
                json!({"message": "A JSON web token could not be decoded"}),
            );
        }
        if let Some(p) = jwt_problem(call) {
            problems.lock().unwrap().push(p);
            return (401, json!({"message": "bad JWT"}));
        }
        let body = call.json();
        if body != json!({"permissions": {"issues": "write"}, "repositories": ["infra"]})
            || call.header("accept") != Some("application/vnd.github+json")
        {
            problems.lock().unwrap().push(format!("body {body}"));
            return (422, json!({"message": "Validation Failed"}));
        }
        let mut issued = issued.lock().unwrap();
        let token = format!("ghs_{}x{}", issued.len() + 1, nonce());
        issued.push(token.clone());
        let answer = json!({"token": token, "expires_at": rfc3339_in(70),
                            "permissions": {"issues": "write"}, "repository_selection": "selected"});
        (201, answer)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installation_tokens_are_minted_once_reused_and_minted_again_near_expiry() {
    let issued: Arc<Mutex<Vec<String>>> = Arc::default();
    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    let gh = github(issued.clone(), problems.clone());
    let up = Upstream::start();
    let creds = credentials(&gh.url());
    let routes = "  - {name: issues, match: {host: api.test, path: \"/repos/*\"}, auth: claw, credential: gh}
  - {name: unknown, match: {host: api.test, path: \"/unknown/*\"}, auth: claw, credential: gh-unknown}
  - {name: down, match: {host: api.test, path: \"/down/*\"}, auth: claw, credential: gh-down}";
    let dir = crate::support::ConfigDir::new();
    dir.write("app.pem", &app_key().0);
    let sk = Sidekey::start_in(dir, &config("", &up.host_port(), &creds, routes), &[]);
    let url = "http://api.test/repos/acme/infra/issues";

    let burst = (0..10).map(|_| proxy_get(sk.proxy_addr, url, &[]));
    for r in futures_util::future::join_all(burst).await {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(*problems.lock().unwrap(), Vec::<String>::new());
    assert_eq!(gh.count(), 1, "ten concurrent first calls make one mint");
    let first = issued.lock().unwrap()[0].clone();
    let bearer = format!("Bearer {first}");
    assert!(
        up.requests()
            .iter()
            .all(|r| r.header("authorization") == Some(&bearer)),
        "the minted token reaches the upstream"
    );

    // A 70 s token is reused until 60 s before it expires, then minted again, once.
    let (proxy, up_ref, old) = (sk.proxy_addr, &up, &bearer);
    let renewed = eventually(Duration::from_secs(45), || async move {
        assert_eq!(proxy_get(proxy, url, &[]).await.status, 200);
        let last = up_ref.requests().last().cloned();
        last.and_then(|r| r.header("authorization").map(String::from)) != Some(old.clone())
    })
    .await;
    assert!(renewed, "a new token was minted near expiry");
    assert_eq!(gh.count(), 2);
    let second = issued.lock().unwrap()[1].clone();
    assert_eq!(
        up.requests().last().unwrap().header("authorization"),
        Some(format!("Bearer {second}").as_str())
    );

    // Refusal (unknown installation) -> 502; endpoint down -> 503.
    let r = proxy_get(sk.proxy_addr, "http://api.test/unknown/x", &[]).await;
    assert_sidekey_error(&r, 502, "upstream_error");
    let r = proxy_get(sk.proxy_addr, "http://api.test/down/x", &[]).await;
    assert_sidekey_error(&r, 503, "credential_store_unavailable");
    assert_eq!(gh.count(), 3, "the refused mint was tried once");

    let mut secrets: Vec<String> = gh
        .calls()
        .iter()
        .filter_map(|c| c.bearer().map(String::from))
        .collect();
    secrets.extend(issued.lock().unwrap().iter().cloned());
    secrets.push(key_fragment());
    sweep(&sk, &secrets).await;
}

/// `gh` (installation 7890, down-scoped), `gh-unknown` (installation 1, refused) and
/// `gh-down` (nothing listening).
fn credentials(api: &str) -> String {
    format!(
        "  gh:
    source: github_app
    app_id: 123456
    installation_id: 7890
    private_key: {{file: app.pem}}
    api_url: {}/
    permissions: {{issues: write}}
    repositories: [infra]
  gh-unknown:
    source: github_app
    app_id: 123456
    installation_id: 1
    private_key: {{file: app.pem}}
    api_url: {}
  gh-down:
    source: github_app
    app_id: 123456
    installation_id: 7890
    private_key: {{file: app.pem}}
    api_url: http://127.0.0.1:{}",
        api,
        api,
        dead_port()
    )
}
