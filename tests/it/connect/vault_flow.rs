//! The production shape on a real OpenBao: `sidekey connect` serves the pages, two
//! sidecars (`sidekey run`, loopback only) mint the links and inject. A user connects
//! once; both sidecars inject the new token on the next call (no "missing" was
//! remembered), and the time from callback to each sidecar's first injected call is
//! printed (`MEASURE connect ...`). A short-lived connected token is refreshed by the
//! sidecar like any stored token.

use std::time::{Duration, Instant};

use super::{Stack, assert_connected_page, assert_security_headers, config, missing_link};
use crate::openbao::{OpenBao, Upstream};
use crate::support::connect::{Proc, assert_absent, browse};

const SOURCE: &str = "    source: vault\n    path: users/{user}/notion\n";

fn vault_yaml(bao: &OpenBao) -> String {
    format!(
        "vault:\n  address: {}\n  auth: {{method: token, token_env: VAULT_TOKEN}}\n  kv_mount: secret\n  timeout: 2s\n",
        bao.url()
    )
}

async fn wait_ready(p: &Proc) {
    let t0 = Instant::now();
    while p.admin("/readyz").await.status != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "never ready:\n{}",
            p.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The connect service and two sidecars of one stack, sharing one OpenBao.
async fn start(stack: &Stack, bao: &OpenBao, up: &Upstream) -> (Proc, Proc, Proc) {
    let oauth = stack.oauth_yaml(None);
    let vault = vault_yaml(bao);
    let env = stack.env(&[("VAULT_TOKEN", &bao.root_token)]);
    let service = Proc::start(
        "connect",
        &config(&stack.connect_yaml(true, ""), SOURCE, &oauth, up, &vault),
        &[],
        &env,
    );
    let sidecar = config(&stack.connect_yaml(false, ""), SOURCE, &oauth, up, &vault);
    let a = Proc::start("run", &sidecar, &[], &env);
    let b = Proc::start("run", &sidecar, &[], &env);
    for p in [&service, &a, &b] {
        wait_ready(p).await;
    }
    (service, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_service_stores_in_vault_and_both_sidecars_inject_it() {
    let stack = Stack::start(3600);
    let bao = OpenBao::start().await;
    let up = Upstream::start().await;
    let (service, a, b) = start(&stack, &bao, &up).await;
    assert_eq!(service.proxy, None, "`sidekey connect` serves no proxy");
    assert_eq!(service.connect.map(|c| c.port()), Some(stack.port));
    let health = service.page("/healthz", None).await;
    assert_eq!(health.status, 200);

    let user = "alice@example.com";
    // Sidecar B asks first: its "missing" must not be remembered.
    missing_link(&b, &stack, user).await;
    let link = missing_link(&a, &stack, user).await;
    let jar = service.dir.path().join("jar.json");
    let jar = jar.to_str().unwrap();
    let callback_prefix = format!("{}/callback", stack.public_url());
    let stopped = browse(
        &link,
        user,
        &["--stop-at", &callback_prefix, "--cookies", jar],
    );
    let callback = stopped["stopped_at"]
        .as_str()
        .expect("stopped at the callback");
    let cookie = stopped["cookie"].as_str().unwrap();
    let path = &callback[stack.public_url().len()..];

    let t0 = Instant::now();
    let page = service.page(path, Some(cookie)).await;
    let callback_done = t0.elapsed();
    assert_eq!(page.status, 200, "{}", page.body);
    let ra = a.get(user, "http://api.test/v1/pages").await;
    let first_a = t0.elapsed();
    let rb = b.get(user, "http://api.test/v1/pages").await;
    let first_b = t0.elapsed();
    assert_eq!(
        (ra.status, rb.status),
        (200, 200),
        "{} {}",
        ra.body,
        rb.body
    );
    eprintln!(
        "MEASURE connect (vault): callback answered in {:.1} ms; first injected call: sidecar A at {:.1} ms, sidecar B at {:.1} ms after the callback started",
        callback_done.as_secs_f64() * 1e3,
        first_a.as_secs_f64() * 1e3,
        first_b.as_secs_f64() * 1e3
    );

    let page_json = serde_json::json!({
        "status": page.status,
        "body": page.body,
        "headers": page.headers.iter().map(|(k, v)| (k.as_str().to_string(), serde_json::Value::from(v.to_str().unwrap_or("")))).collect::<serde_json::Map<_, _>>(),
    });
    assert_connected_page(&page_json, user);
    assert_security_headers(&page_json["headers"]);

    let stored = bao
        .kv_get("users/alice@example.com/notion")
        .await
        .expect("the token map is in Vault");
    let access = stored["access_token"].as_str().unwrap().to_string();
    let refresh = stored["refresh_token"].as_str().unwrap().to_string();
    assert!(
        stored["expires_at"]
            .as_str()
            .is_some_and(|e| e.ends_with('Z')),
        "{stored}"
    );
    assert_eq!(stored["scopes"], serde_json::json!(["read_content"]));
    let bearer = Some(format!("Bearer {access}"));
    let auths = up.auths();
    assert_eq!(auths.len(), 2);
    assert!(auths.iter().all(|x| *x == bearer), "{auths:?}");
    assert_eq!(stack.provider.grants("authorization_code"), 1);

    let recs = service.wait_connect_records(1);
    let r = &recs[0];
    assert_eq!(
        (
            &r["event"],
            &r["agent"],
            &r["user"],
            &r["credential"],
            &r["result"]
        ),
        (
            &"connect".into(),
            &"connect-agent".into(),
            &user.into(),
            &"notion-user".into(),
            &"connected".into()
        ),
        "{r}"
    );
    assert!(r["error"].is_null() && r["ts"].is_string() && r["request_id"].is_string());
    assert_eq!(service.connect_total("notion-user", "connected").await, 1.0);

    // The sweep: no token, code, verifier or client secret anywhere sidekey wrote.
    let mut secrets = vec![access, refresh, stack.app_secret.clone(), stack.key.clone()];
    secrets.extend(stack.provider.received_secrets());
    assert!(
        secrets.len() >= 6,
        "the provider reported the code and verifier"
    );
    let metrics = [
        service.admin("/metrics").await.body,
        a.admin("/metrics").await.body,
        b.admin("/metrics").await.body,
    ]
    .join("\n");
    let (so, ao, bo) = (service.output(), a.output(), b.output());
    assert_absent(
        &[
            ("connect service output", &so),
            ("sidecar A output", &ao),
            ("sidecar B output", &bo),
            ("metrics", &metrics),
            ("the result page", &page.body),
            ("the link", &link),
        ],
        &secrets,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_short_lived_token_is_refreshed_by_the_sidecar() {
    // Access tokens of 30 s are inside the 60 s refresh margin from the start.
    let stack = Stack::start(30);
    let bao = OpenBao::start().await;
    let up = Upstream::start().await;
    let (service, a, _b) = start(&stack, &bao, &up).await;
    let user = "bob";
    let link = missing_link(&a, &stack, user).await;
    let page = browse(&link, user, &[]);
    assert_connected_page(&page, user);
    let connected = bao.kv_get("users/bob/notion").await.unwrap();
    assert_eq!(service.wait_connect_records(1)[0]["result"], "connected");

    let r = a.get(user, "http://api.test/v1/pages").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(stack.provider.grants("refresh_token"), 1, "one refresh");
    let now = bao.kv_get("users/bob/notion").await.unwrap();
    assert_ne!(now["access_token"], connected["access_token"]);
    assert_eq!(
        up.last_auth(),
        Some(format!("Bearer {}", now["access_token"].as_str().unwrap()))
    );
}
