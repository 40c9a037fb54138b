//! Spine: credential injection, header hygiene, identity handling and per-user
//! isolation, black-box against SPEC.md ("Config", "Request handling", "Errors").

use crate::support::*;

const CLAW: &str = "claw-tok-7Hq2Zp9";

fn claw_config(up: &Upstream, route_extra: &str) -> String {
    format!(
        "{head}default: deny\nupstreams:\n  api.test: {up}\ncredentials:\n  claw-cred:\n    source: env\n    env: CLAW_TOKEN\nroutes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: claw-cred\n{route_extra}",
        head = yaml_head("inject-agent"),
        up = up.host_port()
    )
}

#[test]
fn base64_helper_known_vectors() {
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"bot:tok"), "Ym90OnRvaw==");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_bearer_injection_replaces_client_credentials() {
    let up = Upstream::start();
    let sk = Sidekey::start(&claw_config(&up, ""), &[("CLAW_TOKEN", CLAW)]);
    let resp = proxy_get(
        sk.proxy_addr,
        "http://api.test/v1/items?q=1",
        &[
            ("authorization", "Bearer client-supplied"),
            ("authorization", "Basic Y2xpZW50OnNlY3JldA=="),
            ("cookie", "session=client"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-other", "keep-me"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    assert_eq!(
        resp.json()["path"],
        "/v1/items",
        "the upstream's own body comes back"
    );
    request_id(&resp);
    let r = up.only();
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/v1/items");
    assert_eq!(r.query.as_deref(), Some("q=1"));
    assert_eq!(
        r.header_all("authorization"),
        vec![format!("Bearer {CLAW}")]
    );
    assert!(
        !r.has_header("cookie"),
        "client Cookie must be removed: {:?}",
        r.headers
    );
    assert!(
        !r.has_header("proxy-authorization"),
        "Proxy-Authorization forwarded: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("x-other"),
        Some("keep-me"),
        "ordinary headers are forwarded"
    );
    assert_eq!(
        r.header("host"),
        Some("api.test"),
        "upstream sees the original Host"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_inject_with_format_replaces_client_header() {
    let up = Upstream::start();
    let cfg = claw_config(
        &up,
        "    inject: {header: X-Api-Key, format: \"{token}\"}\n",
    );
    let sk = Sidekey::start(&cfg, &[("CLAW_TOKEN", CLAW)]);
    let resp = proxy_get(
        sk.proxy_addr,
        "http://api.test/v1/x",
        &[
            ("x-api-key", "client-key"),
            ("X-API-KEY", "client-key-2"),
            ("authorization", "Bearer client"),
            ("cookie", "a=b"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    let r = up.only();
    assert_eq!(
        r.header_all("x-api-key"),
        vec![CLAW],
        "exactly sidekey's key, unformatted"
    );
    assert!(
        !r.has_header("authorization"),
        "client Authorization must be removed: {:?}",
        r.headers
    );
    assert!(
        !r.has_header("cookie"),
        "client Cookie must be removed: {:?}",
        r.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_level_inject_with_prefix_format_and_route_override() {
    let up = Upstream::start();
    let cfg = format!(
        "{head}default: deny\nupstreams:\n  api.test: {up}\n  other.test: {up}\ncredentials:\n  c:\n    source: env\n    env: CLAW_TOKEN\n    inject: {{header: X-Cred-Key, format: \"Token {{token}}\"}}\nroutes:\n  - name: cred-inject\n    match: {{host: api.test}}\n    auth: claw\n    credential: c\n  - name: route-inject\n    match: {{host: other.test}}\n    auth: claw\n    credential: c\n    inject: {{header: X-Route-Key, format: \"K {{token}}\"}}\n",
        head = yaml_head("inject-agent"),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &[("CLAW_TOKEN", CLAW)]);
    let a = proxy_get(sk.proxy_addr, "http://api.test/a", &[]).await;
    assert_eq!(a.status, 200, "body: {}", a.text());
    let b = proxy_get(sk.proxy_addr, "http://other.test/b", &[]).await;
    assert_eq!(b.status, 200, "body: {}", b.text());
    let reqs = up.wait_requests(2, REQ_TIMEOUT);
    let ra = reqs.iter().find(|r| r.path == "/a").unwrap();
    assert_eq!(ra.header_all("x-cred-key"), vec![format!("Token {CLAW}")]);
    assert!(!ra.has_header("authorization"), "{:?}", ra.headers);
    let rb = reqs.iter().find(|r| r.path == "/b").unwrap();
    assert_eq!(
        rb.header_all("x-route-key"),
        vec![format!("K {CLAW}")],
        "the route's inject wins"
    );
    assert!(
        !rb.has_header("x-cred-key"),
        "credential inject must not also apply: {:?}",
        rb.headers
    );
    assert!(!rb.has_header("authorization"), "{:?}", rb.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_inject_sends_username_and_token() {
    let up = Upstream::start();
    let cfg = claw_config(&up, "    inject: {basic: {username: bot}}\n");
    let sk = Sidekey::start(&cfg, &[("CLAW_TOKEN", CLAW)]);
    let resp = proxy_get(
        sk.proxy_addr,
        "http://api.test/v1/x",
        &[("authorization", "Basic Y2xpZW50OnNlY3JldA==")],
    )
    .await;
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    let r = up.only();
    let want = format!("Basic {}", base64(format!("bot:{CLAW}").as_bytes()));
    assert_eq!(r.header_all("authorization"), vec![want]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_inject_replaces_client_value_and_keeps_other_params() {
    let up = Upstream::start();
    let cfg = claw_config(&up, "    inject: {query: api_key}\n");
    let sk = Sidekey::start(&cfg, &[("CLAW_TOKEN", CLAW)]);
    let resp = proxy_get(
        sk.proxy_addr,
        "http://api.test/v1/search?b=2&api_key=client-value&c=x%20y",
        &[("authorization", "Bearer client")],
    )
    .await;
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    let r = up.only();
    assert_eq!(r.path, "/v1/search");
    assert_eq!(
        r.query_all("api_key"),
        vec![CLAW.to_string()],
        "query {:?}",
        r.query
    );
    assert_eq!(
        r.query_all("b"),
        vec!["2".to_string()],
        "query {:?}",
        r.query
    );
    assert_eq!(
        r.query_all("c"),
        vec!["x y".to_string()],
        "query {:?}",
        r.query
    );
    assert!(
        !r.has_header("authorization"),
        "client Authorization must be removed: {:?}",
        r.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_client_headers_keeps_listed_cookie_only() {
    let up = Upstream::start();
    let cfg = claw_config(&up, "    keep_client_headers: [Cookie]\n");
    let sk = Sidekey::start(&cfg, &[("CLAW_TOKEN", CLAW)]);
    let resp = proxy_get(
        sk.proxy_addr,
        "http://api.test/k",
        &[("cookie", "pref=dark"), ("authorization", "Bearer client")],
    )
    .await;
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    let r = up.only();
    assert_eq!(
        r.header("cookie"),
        Some("pref=dark"),
        "listed header is kept"
    );
    assert_eq!(
        r.header_all("authorization"),
        vec![format!("Bearer {CLAW}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_header_and_lookalikes_are_never_forwarded() {
    let up = Upstream::start();
    let cfg = format!(
        "{head}default: deny\nupstreams:\n  api.test: {up}\n  open.test: {up}\ncredentials:\n  claw-cred:\n    source: env\n    env: CLAW_TOKEN\nroutes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: claw-cred\n  - name: open\n    match: {{host: open.test}}\n    auth: passthrough\n",
        head = yaml_head("inject-agent"),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &[("CLAW_TOKEN", CLAW)]);
    for url in ["http://api.test/claw", "http://open.test/pass"] {
        let resp = proxy_get(
            sk.proxy_addr,
            url,
            &[("X-Sidekey-User", "alice"), ("x_sidekey_user", "mallory")],
        )
        .await;
        assert_eq!(resp.status, 200, "{url}: {}", resp.text());
    }
    let reqs = up.wait_requests(2, REQ_TIMEOUT);
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        for (k, v) in &r.headers {
            let norm = k.replace(['_', '-'], "");
            assert_ne!(norm, "xsidekeyuser", "{} forwarded header {k}: {v}", r.path);
            assert!(
                v != "alice" && v != "mallory",
                "{} forwarded identity value in {k}: {v}",
                r.path
            );
        }
    }
}

fn assistant_config(up: &Upstream) -> String {
    format!(
        "{head}default: deny\nupstreams:\n  notion.test: {up}\ncredentials:\n  notion-user:\n    source: file\n    file: creds/{{user}}.txt\n    connect_url: https://connect.example.test/notion?user={{user}}\nroutes:\n  - name: notion\n    match: {{host: notion.test}}\n    auth: assistant\n    credential: notion-user\n    set_headers: {{Notion-Version: \"2022-06-28\"}}\n",
        head = yaml_head("assistant-agent"),
        up = up.host_port()
    )
}

fn assistant_dir() -> ConfigDir {
    let dir = ConfigDir::new();
    dir.write("creds/alice.txt", "alice-tok-111\n");
    dir.write("creds/bob.txt", "bob-tok-222  \n\n");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_file_credentials_are_isolated() {
    let up = Upstream::start();
    let sk = Sidekey::start_in(assistant_dir(), &assistant_config(&up), &[]);

    let a = proxy_get(
        sk.proxy_addr,
        "http://notion.test/v1/pages?u=a",
        &[("x-sidekey-user", "alice")],
    )
    .await;
    assert_eq!(a.status, 200, "alice: {}", a.text());
    let b = proxy_get(
        sk.proxy_addr,
        "http://notion.test/v1/pages?u=b",
        &[("x-sidekey-user", "bob")],
    )
    .await;
    assert_eq!(b.status, 200, "bob: {}", b.text());

    let reqs = up.wait_requests(2, REQ_TIMEOUT);
    let ra = reqs
        .iter()
        .find(|r| r.query.as_deref() == Some("u=a"))
        .unwrap();
    let rb = reqs
        .iter()
        .find(|r| r.query.as_deref() == Some("u=b"))
        .unwrap();
    assert_eq!(ra.header_all("authorization"), vec!["Bearer alice-tok-111"]);
    assert_eq!(
        rb.header_all("authorization"),
        vec!["Bearer bob-tok-222"],
        "trailing whitespace trimmed"
    );
    assert_eq!(
        ra.header("notion-version"),
        Some("2022-06-28"),
        "set_headers applied"
    );
    assert!(!ra.has_header("x-sidekey-user"));

    let c = proxy_get(
        sk.proxy_addr,
        "http://notion.test/v1/pages",
        &[("x-sidekey-user", "carol")],
    )
    .await;
    let body = assert_sidekey_error(&c, 401, "credential_missing");
    assert_eq!(body["credential"], "notion-user", "{body}");
    assert_eq!(
        body["connect_url"], "https://connect.example.test/notion?user=carol",
        "{body}"
    );
    assert_eq!(up.count(), 2, "carol's call must not go upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_id_cannot_select_another_users_credential_file() {
    let up = Upstream::start();
    let sk = Sidekey::start_in(assistant_dir(), &assistant_config(&up), &[]);
    for user in [
        "../creds/alice",
        "./alice",
        "../../creds/alice",
        "x/../alice",
    ] {
        let resp = proxy_get(
            sk.proxy_addr,
            "http://notion.test/v1/me",
            &[("x-sidekey-user", user)],
        )
        .await;
        assert!(
            resp.status == 400 || resp.status == 401,
            "identity {user:?} got {} {}",
            resp.status,
            resp.text()
        );
        assert!(
            resp.header("x-sidekey-error").is_some(),
            "identity {user:?}: sidekey error expected"
        );
    }
    let leaked: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|r| {
            r.header("authorization")
                .is_some_and(|a| a.contains("alice-tok"))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "alice's token went out for another identity: {leaked:#?}"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assistant_route_without_identity_is_identity_required() {
    let up = Upstream::start();
    let sk = Sidekey::start_in(assistant_dir(), &assistant_config(&up), &[]);
    let none = proxy_get(sk.proxy_addr, "http://notion.test/v1/pages", &[]).await;
    assert_sidekey_error(&none, 401, "identity_required");
    // A look-alike header name is never taken as the identity.
    let lookalike = proxy_get(
        sk.proxy_addr,
        "http://notion.test/v1/pages",
        &[("x_sidekey_user", "alice")],
    )
    .await;
    assert_sidekey_error(&lookalike, 401, "identity_required");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_differing_identity_headers_are_bad_request() {
    let up = Upstream::start();
    let sk = Sidekey::start_in(assistant_dir(), &assistant_config(&up), &[]);
    let resp = proxy_get(
        sk.proxy_addr,
        "http://notion.test/v1/pages",
        &[("x-sidekey-user", "alice"), ("X-Sidekey-User", "bob")],
    )
    .await;
    assert_sidekey_error(&resp, 400, "bad_request");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_is_per_request_on_a_kept_alive_connection() {
    let up = Upstream::start();
    let sk = Sidekey::start_in(assistant_dir(), &assistant_config(&up), &[]);
    let mut conn = ProxyConn::open(sk.proxy_addr).await;
    let a = conn
        .request(
            "GET",
            "http://notion.test/k?n=1",
            &[("x-sidekey-user", "alice")],
            empty(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let b = conn
        .request(
            "GET",
            "http://notion.test/k?n=2",
            &[("x-sidekey-user", "bob")],
            empty(),
        )
        .await;
    assert_eq!(b.status, 200, "{}", b.text());
    let none = conn
        .request("GET", "http://notion.test/k?n=3", &[], empty())
        .await;
    assert_sidekey_error(&none, 401, "identity_required");
    let a2 = conn
        .request(
            "GET",
            "http://notion.test/k?n=4",
            &[("x-sidekey-user", "alice")],
            empty(),
        )
        .await;
    assert_eq!(a2.status, 200, "{}", a2.text());
    let reqs = up.wait_requests(3, REQ_TIMEOUT);
    let auth = |n: &str| {
        reqs.iter()
            .find(|r| r.query.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no upstream request {n}: {reqs:#?}"))
            .header_all("authorization")
    };
    assert_eq!(auth("n=1"), vec!["Bearer alice-tok-111"]);
    assert_eq!(
        auth("n=2"),
        vec!["Bearer bob-tok-222"],
        "second user on the same connection"
    );
    assert_eq!(auth("n=4"), vec!["Bearer alice-tok-111"]);
    assert_eq!(reqs.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_users_never_get_each_others_tokens() {
    let up = Upstream::start();
    let dir = assistant_dir();
    dir.write("creds/carol.txt", "carol-tok-333");
    let sk = Sidekey::start_in(dir, &assistant_config(&up), &[]);
    let users = ["alice", "bob", "carol"];
    let mut tasks = Vec::new();
    for i in 0..60 {
        let user = users[i % 3];
        let addr = sk.proxy_addr;
        tasks.push(tokio::spawn(async move {
            let url = format!("http://notion.test/c?i={i}");
            proxy_get(addr, &url, &[("x-sidekey-user", user)]).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let reqs = up.wait_requests(60, REQ_TIMEOUT);
    assert_eq!(reqs.len(), 60);
    for r in &reqs {
        let i: usize = r
            .query
            .as_deref()
            .unwrap()
            .trim_start_matches("i=")
            .parse()
            .unwrap();
        let want = match users[i % 3] {
            "alice" => "Bearer alice-tok-111",
            "bob" => "Bearer bob-tok-222",
            _ => "Bearer carol-tok-333",
        };
        assert_eq!(r.header_all("authorization"), vec![want], "request i={i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded_either_way() {
    let up = Upstream::start();
    let sk = Sidekey::start(&claw_config(&up, ""), &[("CLAW_TOKEN", CLAW)]);
    let resp = proxy_get(
        sk.proxy_addr,
        "http://api.test/hop-headers",
        &[
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("x-end-to-end", "1"),
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let r = up.only();
    for h in ["x-hop", "keep-alive", "proxy-connection"] {
        assert!(
            !r.has_header(h),
            "hop-by-hop request header {h} forwarded: {:?}",
            r.headers
        );
    }
    assert_eq!(r.header("x-end-to-end"), Some("1"));
    assert!(
        resp.header("x-resp-hop").is_none(),
        "hop-by-hop response header forwarded: {:?}",
        resp.headers
    );
    assert!(
        resp.header("keep-alive").is_none(),
        "Keep-Alive response header forwarded: {:?}",
        resp.headers
    );
    assert_eq!(resp.header("x-resp-normal"), Some("1"));
}
