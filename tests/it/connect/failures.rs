//! Every refusal of the contract: a page that says why, the security headers, and
//! nothing stored. Links: tampered, expired, absent, unknown credential. Callbacks:
//! missing or foreign cookie (the code is never exchanged, and the right browser can
//! still finish), replayed state, unknown state, the provider's `error=access_denied`,
//! and a token endpoint that is down (502).

use std::time::Duration;

use super::{Stack, assert_security_headers, config, missing_link};
use crate::openbao::{Resp, Upstream};
use crate::support::connect::{Proc, assert_absent, browse};

const SOURCE: &str = "    source: file\n    file: tokens/{user}.json\n";

fn start(stack: &Stack, up: &Upstream, connect_extra: &str, token_url: Option<&str>) -> Proc {
    let yaml = config(
        &stack.connect_yaml(true, connect_extra),
        SOURCE,
        &stack.oauth_yaml(token_url),
        up,
        "",
    );
    Proc::start("run", &yaml, &[], &stack.env(&[]))
}

fn headers_json(r: &Resp) -> serde_json::Value {
    r.headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::from(v.to_str().unwrap_or("")),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn assert_refused(r: &Resp, status: u16, says: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert!(r.headers.get("location").is_none(), "no redirect");
    assert!(
        r.body.contains(says),
        "page should say {says:?}: {}",
        r.body
    );
    assert_security_headers(&headers_json(r));
}

fn stored(sk: &Proc, user: &str) -> bool {
    sk.dir.path().join(format!("tokens/{user}.json")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_links_get_a_400_page_and_a_good_one_a_pkce_redirect() {
    let stack = Stack::start(3600);
    let up = Upstream::start().await;
    let sk = start(&stack, &up, "", None);
    let link = missing_link(&sk, &stack, "alice").await;
    let path = &link[stack.public_url().len()..];

    let ok = sk.page(path, None).await;
    assert_eq!(ok.status, 302, "{}", ok.body);
    let loc = ok.headers["location"].to_str().unwrap();
    assert!(
        loc.starts_with(&format!("{}/auth?", stack.provider.issuer)),
        "{loc}"
    );
    let q = |k: &str| {
        crate::support::connect::query_value(loc, k).unwrap_or_else(|| panic!("no {k} in {loc}"))
    };
    assert_eq!(q("response_type"), "code");
    assert_eq!(q("client_id"), super::APP_ID);
    assert_eq!(
        q("redirect_uri"),
        format!("{}/callback", stack.public_url())
    );
    assert_eq!(q("scope"), "read_content");
    assert_eq!(q("code_challenge_method"), "S256");
    assert_eq!(q("code_challenge").len(), 43);
    assert!(q("state").len() >= 43);
    let cookie = ok.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("sidekey_connect="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "public_url is http: {cookie}");
    assert_security_headers(&headers_json(&ok));

    // Tampered: another user's name under alice's MAC; a flipped MAC character.
    let t = path.split("t=").nth(1).unwrap();
    let parts: Vec<&str> = t.split('.').collect();
    let as_bob = format!("/connect/notion-user?t=Ym9i.{}.{}", parts[1], parts[2]);
    assert_refused(&sk.page(&as_bob, None).await, 400, "altered");
    let other = if parts[2].starts_with('A') { "B" } else { "A" };
    let flipped = format!(
        "/connect/notion-user?t={}.{}.{other}{}",
        parts[0],
        parts[1],
        &parts[2][1..]
    );
    assert_refused(&sk.page(&flipped, None).await, 400, "altered");
    assert_refused(
        &sk.page("/connect/notion-user", None).await,
        400,
        "malformed",
    );
    assert_refused(
        &sk.page(&path.replace("notion-user", "github"), None).await,
        404,
        "no connectable",
    );

    assert_eq!(stack.provider.grants("authorization_code"), 0);
    assert!(!stored(&sk, "alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_link_is_refused() {
    let stack = Stack::start(3600);
    let up = Upstream::start().await;
    let sk = start(&stack, &up, "  link_ttl: 1s\n", None);
    let link = missing_link(&sk, &stack, "alice").await;
    // Links carry whole seconds: after two, a one-second link has expired whatever
    // the clock's phase was.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = sk.page(&link[stack.public_url().len()..], None).await;
    assert_refused(&r, 400, "expired");
    assert!(!stored(&sk, "alice"));
}

/// Browse to the callback and stop there: (callback path, Cookie header).
fn to_callback(stack: &Stack, link: &str, user: &str) -> (String, String) {
    let prefix = format!("{}/callback", stack.public_url());
    let s = browse(link, user, &["--stop-at", &prefix]);
    let url = s["stopped_at"].as_str().expect("stopped at the callback");
    (
        url[stack.public_url().len()..].to_string(),
        s["cookie"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_callbacks_store_nothing_and_never_exchange_the_code() {
    let stack = Stack::start(3600);
    let up = Upstream::start().await;
    let sk = start(&stack, &up, "", None);
    let link = missing_link(&sk, &stack, "dave").await;
    let (callback, cookie) = to_callback(&stack, &link, "dave");
    assert!(cookie.contains("sidekey_connect="), "{cookie}");

    // Without the browser's cookie, or with another one: refused, the code unexchanged.
    assert_refused(&sk.page(&callback, None).await, 400, "another browser");
    assert_refused(
        &sk.page(&callback, Some("sidekey_connect=forged-value"))
            .await,
        400,
        "another browser",
    );
    assert_eq!(stack.provider.grants("authorization_code"), 0);
    assert!(!stored(&sk, "dave"));
    // An unknown state.
    assert_refused(
        &sk.page("/callback?code=abc&state=made-up", Some(&cookie))
            .await,
        400,
        "not started here",
    );
    assert_refused(
        &sk.page("/callback?code=abc", Some(&cookie)).await,
        400,
        "no state",
    );

    // The browser that started it still completes, once.
    let done = sk.page(&callback, Some(&cookie)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(stored(&sk, "dave"));
    let first = std::fs::read_to_string(sk.dir.path().join("tokens/dave.json")).unwrap();
    let replay = sk.page(&callback, Some(&cookie)).await;
    assert_refused(&replay, 400, "already completed");
    assert_eq!(
        stack.provider.grants("authorization_code"),
        1,
        "a replay is not exchanged"
    );
    assert_eq!(
        std::fs::read_to_string(sk.dir.path().join("tokens/dave.json")).unwrap(),
        first,
        "a replay changes nothing"
    );

    // The provider says no: a page saying so, nothing stored.
    let link = missing_link(&sk, &stack, "erin").await;
    let page = browse(&link, "erin", &["--abort"]);
    assert_eq!(page["status"], 400, "{page}");
    let body = page["body"].as_str().unwrap();
    assert!(
        body.contains("not connected") && body.contains("not granted"),
        "{body}"
    );
    assert!(
        body.contains("data-sidekey-connect=\"not-connected\""),
        "{body}"
    );
    assert_security_headers(&page["headers"]);
    assert!(!stored(&sk, "erin"));
    let r = sk.get("erin", "http://api.test/v1/pages").await;
    assert_eq!(r.status, 401);

    let recs = sk.wait_connect_records(7);
    let got: Vec<(String, String)> = recs
        .iter()
        .map(|r| {
            (
                r["result"].as_str().unwrap().to_string(),
                r["error"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("error", "cookie_missing"),
        ("error", "cookie_mismatch"),
        ("error", "state_invalid"),
        ("error", "state_missing"),
        ("connected", "-"),
        ("error", "state_invalid"),
        ("denied", "access_denied"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(recs[6]["user"], "erin");
    assert_eq!(recs[0]["credential"], serde_json::Value::Null);
    assert_eq!(sk.connect_total("notion-user", "denied").await, 1.0);
    assert_eq!(sk.connect_total("notion-user", "connected").await, 1.0);
    assert_eq!(sk.connect_total("none", "error").await, 5.0);

    let token: serde_json::Value = serde_json::from_str(&first).unwrap();
    let mut secrets = vec![
        token["access_token"].as_str().unwrap().to_string(),
        token["refresh_token"].as_str().unwrap().to_string(),
        stack.app_secret.clone(),
    ];
    secrets.extend(stack.provider.received_secrets());
    let code = crate::support::connect::query_value(&callback, "code").unwrap();
    secrets.push(code);
    let out = sk.output();
    assert_absent(
        &[
            ("sidekey output", &out),
            ("pages", &format!("{}{}{body}", done.body, replay.body)),
        ],
        &secrets,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_that_is_down_is_a_502_page_and_nothing_stored() {
    let stack = Stack::start(3600);
    let up = Upstream::start().await;
    let dead = format!("http://127.0.0.1:{}/token", crate::support::dead_port());
    let sk = start(&stack, &up, "", Some(&dead));
    let link = missing_link(&sk, &stack, "frank").await;
    let page = browse(&link, "frank", &[]);
    assert_eq!(page["status"], 502, "{page}");
    let body = page["body"].as_str().unwrap();
    assert!(body.contains("Nothing was stored"), "{body}");
    assert_security_headers(&page["headers"]);
    assert!(!stored(&sk, "frank"));
    let rec = &sk.wait_connect_records(1)[0];
    assert_eq!(
        (&rec["result"], &rec["error"]),
        (&"error".into(), &"token_endpoint_error".into())
    );
    assert_eq!(sk.connect_total("notion-user", "error").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_credential_carries_a_link_and_reconnecting_replaces_it() {
    let stack = Stack::start(3600);
    let up = Upstream::start().await;
    let sk = start(&stack, &up, "", None);
    let old = crate::openbao::random_token("old-access");
    std::fs::create_dir_all(sk.dir.path().join("tokens")).unwrap();
    std::fs::write(
        sk.dir.path().join("tokens/ivy.json"),
        serde_json::json!({"access_token": old, "expires_at": 1_000_000_000}).to_string(),
    )
    .unwrap();
    let r = sk.get("ivy", "http://api.test/v1/pages").await;
    assert_eq!(r.status, 401, "{}", r.body);
    let body = r.json();
    assert_eq!(body["error"], "credential_expired", "{body}");
    let link = body["connect_url"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{}/connect/notion-user?t=", stack.public_url())),
        "{link}"
    );
    let page = browse(link, "ivy", &[]);
    assert_eq!(page["status"], 200, "{page}");
    let r = sk.get("ivy", "http://api.test/v1/pages").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let auth = up.last_auth().unwrap();
    assert!(
        auth.starts_with("Bearer ") && !auth.contains(&old),
        "{auth}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_public_url_makes_the_cookie_secure() {
    let stack = Stack::start(3600);
    let up = Upstream::start().await;
    let yaml = config(
        &stack.connect_yaml(true, ""),
        SOURCE,
        &stack.oauth_yaml(None),
        &up,
        "",
    )
    .replace(
        &format!("public_url: {}", stack.public_url()),
        "public_url: https://agents.example.com",
    );
    let sk = Proc::start("run", &yaml, &[], &stack.env(&[]));
    let r = sk.get("alice", "http://api.test/v1/pages").await;
    let link = r.json()["connect_url"].as_str().unwrap().to_string();
    let path = link
        .strip_prefix("https://agents.example.com")
        .unwrap_or_else(|| panic!("{link}"));
    let r = sk.page(path, None).await;
    assert_eq!(r.status, 302, "{}", r.body);
    let loc = r.headers["location"].to_str().unwrap();
    assert!(
        loc.contains("redirect_uri=https%3A%2F%2Fagents.example.com%2Fcallback"),
        "{loc}"
    );
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}
