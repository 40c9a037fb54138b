//! Spine: route matching and decisions (default deny, `auth: deny`, passthrough,
//! gateway rewriting, first-match order, host/path/method matching) and the shape of
//! every error sidekey returns, black-box against SPEC.md.

use crate::support::*;

const TOK_A: &str = "tok-A-81f2";
const TOK_B: &str = "tok-B-93c4";

fn two_creds() -> &'static str {
    "credentials:\n  cred-a:\n    source: env\n    env: TOK_A\n  cred-b:\n    source: env\n    env: TOK_B\n"
}

fn env() -> [(&'static str, &'static str); 2] {
    [("TOK_A", TOK_A), ("TOK_B", TOK_B)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_deny_refuses_unmatched_requests() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  api.test: {up}\n  other.test: {up}\n{}routes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: cred-a\n",
        yaml_head("policy-agent"),
        two_creds(),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &env());
    let resp = proxy_get(sk.proxy_addr, "http://other.test/x", &[]).await;
    assert_sidekey_error(&resp, 403, "route_denied");
    assert_eq!(up.count(), 0, "a denied call must not reach the upstream");
    let ok = proxy_get(sk.proxy_addr, "http://api.test/x", &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_deny_route_is_403_route_denied() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: passthrough\nupstreams:\n  api.test: {up}\n{}routes:\n  - name: no-admin\n    match: {{host: api.test, path: \"/admin/*\"}}\n    auth: deny\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: cred-a\n",
        yaml_head("policy-agent"),
        two_creds(),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &env());
    let resp = proxy_request(
        sk.proxy_addr,
        "DELETE",
        "http://api.test/admin/users/7",
        &[],
        empty(),
    )
    .await;
    assert_sidekey_error(&resp, 403, "route_denied");
    assert_eq!(up.count(), 0);
    let ok = proxy_get(sk.proxy_addr, "http://api.test/users/7", &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        up.only().header("authorization"),
        Some(format!("Bearer {TOK_A}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_route_adds_no_credential() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  open.test: {up}\n{}routes:\n  - name: open\n    match: {{host: open.test}}\n    auth: passthrough\n",
        yaml_head("policy-agent"),
        two_creds(),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &env());
    let plain = proxy_get(sk.proxy_addr, "http://open.test/public", &[]).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    request_id(&plain);
    let own = proxy_get(
        sk.proxy_addr,
        "http://open.test/own",
        &[("authorization", "Bearer agent-own")],
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.text());
    let reqs = up.wait_requests(2, REQ_TIMEOUT);
    let p = reqs.iter().find(|r| r.path == "/public").unwrap();
    assert!(
        !p.has_header("authorization"),
        "passthrough added a credential: {:?}",
        p.headers
    );
    let o = reqs.iter().find(|r| r.path == "/own").unwrap();
    assert_eq!(
        o.header_all("authorization"),
        vec!["Bearer agent-own"],
        "passthrough forwards as is"
    );
    for r in &reqs {
        for tok in [TOK_A, TOK_B] {
            assert!(
                !r.headers.iter().any(|(_, v)| v.contains(tok)),
                "credential leaked: {:?}",
                r.headers
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_passthrough_forwards_unmatched_without_credential() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: passthrough\nupstreams:\n  api.test: {up}\n  other.test: {up}\n{}routes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: cred-a\n",
        yaml_head("policy-agent"),
        two_creds(),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &env());
    let resp = proxy_get(sk.proxy_addr, "http://other.test/free", &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let r = up.only();
    assert_eq!(r.path, "/free");
    assert!(!r.has_header("authorization"), "{:?}", r.headers);
}

fn gateway_config(up: &Upstream) -> String {
    format!(
        "{}default: deny\n{}routes:\n  - name: slack-gw\n    gateway: {{prefix: /slack, upstream: \"{}/api\"}}\n    auth: claw\n    credential: cred-a\n",
        yaml_head("gw-agent"),
        two_creds(),
        up.base_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_rewrites_prefix_under_upstream_base_path() {
    let up = Upstream::start();
    let sk = Sidekey::start(&gateway_config(&up), &env());
    let body = br#"{"channel":"C1","text":"hi"}"#.to_vec();
    let resp = gateway_request(
        sk.proxy_addr,
        "POST",
        "/slack/chat.postMessage?x=1",
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer client"),
        ],
        full(body.clone()),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    request_id(&resp);
    let r = up.only();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/chat.postMessage");
    assert_eq!(r.query.as_deref(), Some("x=1"));
    assert_eq!(r.body, body);
    assert_eq!(
        r.header_all("authorization"),
        vec![format!("Bearer {TOK_A}")]
    );
    assert_eq!(
        r.header("host"),
        Some(up.host_port().as_str()),
        "upstream Host is the upstream's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_prefix_matches_whole_segments_only() {
    let up = Upstream::start();
    let sk = Sidekey::start(&gateway_config(&up), &env());
    let resp = gateway_request(sk.proxy_addr, "GET", "/slackers/x", &[], empty()).await;
    assert_sidekey_error(&resp, 403, "route_denied");
    assert_eq!(
        up.count(),
        0,
        "/slackers must not be served by the /slack gateway: {:#?}",
        up.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_path_cannot_escape_upstream_base() {
    let up = Upstream::start();
    let sk = Sidekey::start(&gateway_config(&up), &env());
    let attempts = [
        "/slack/../../etc/passwd",
        "/slack/../etc",
        "/slack/x/../../../etc",
        "/slack/%2e%2e/%2e%2e/etc",
        "/slack/..%2f..%2fetc",
        "/slack/%2E%2E%2F%2E%2E%2Fetc",
        "/slack/.%2e/.%2e/etc",
        "/slack/%252e%252e/etc",
        "/slack/..;/..;/etc",
    ];
    let mut violations = Vec::new();
    for path in attempts {
        let before = up.count();
        let resp = gateway_request(sk.proxy_addr, "GET", path, &[], empty()).await;
        let reqs = up.requests();
        for r in &reqs[before..] {
            if !stays_under(&r.path, "/api") {
                violations.push(format!(
                    "{path} reached the upstream as {} (normalised {}), outside /api",
                    r.path,
                    normalize_path(&r.path)
                ));
            }
        }
        if reqs.len() == before && !(resp.header("x-sidekey-error").is_some() && resp.status >= 400)
        {
            violations.push(format!(
                "{path}: no upstream call, so sidekey must answer with its own error; got {} {}",
                resp.status,
                resp.text()
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "gateway base escapes:\n{}",
        violations.join("\n")
    );
}

/// Issue 12: servlet containers (Tomcat, Jetty, Spring) drop `;params` before they
/// resolve dot segments, so `/api/..;/..;/admin` is `/admin` to them, outside the base
/// the operator allowed. Such paths (plain or percent-encoded) are refused with 400, on
/// the gateway and the forward path alike, and never reach the upstream; a `;param`
/// on an ordinary segment is still forwarded as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_with_path_parameters_are_refused_on_gateway_and_forward_path() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  api.test: {hp}\n{}routes:\n  - name: slack-gw\n    gateway: {{prefix: /slack, upstream: \"{base}/api\"}}\n    auth: claw\n    credential: cred-a\n  - name: api\n    match: {{host: api.test, path: \"/api/*\"}}\n    auth: claw\n    credential: cred-a\n",
        yaml_head("gw-agent"),
        two_creds(),
        hp = up.host_port(),
        base = up.base_url()
    );
    let sk = Sidekey::start(&cfg, &env());
    for path in [
        "/slack/..;/..;/admin",
        "/slack/x/..;x=1/..;/admin",
        "/slack/.;/..;/admin",
        "/slack/%2e%2e;/admin",
        "/slack/%2E;/%2E%2E;jsessionid=1/admin",
    ] {
        let resp = gateway_request(sk.proxy_addr, "GET", path, &[], empty()).await;
        assert_sidekey_error(&resp, 400, "bad_request");
    }
    for path in ["/api/..;/admin", "/api/x/%2e%2e;y/..;/admin"] {
        let resp = proxy_get(sk.proxy_addr, &format!("http://api.test{path}"), &[]).await;
        assert_sidekey_error(&resp, 400, "bad_request");
    }
    assert_eq!(
        up.count(),
        0,
        "refused paths reached the upstream: {:#?}",
        up.requests()
    );
    let ok = gateway_request(sk.proxy_addr, "GET", "/slack/x;v=1/y", &[], empty()).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(up.requests()[0].path, "/api/x;v=1/y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_matching_route_wins() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  api.test: {up}\n{}routes:\n  - name: special\n    match: {{host: api.test, path: \"/a/*\"}}\n    auth: claw\n    credential: cred-a\n  - name: general\n    match: {{host: api.test}}\n    auth: claw\n    credential: cred-b\n  - name: never\n    match: {{host: api.test, path: \"/b/*\"}}\n    auth: deny\n",
        yaml_head("policy-agent"),
        two_creds(),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &env());
    for url in [
        "http://api.test/a/x",
        "http://api.test/b/y",
        "http://api.test/c",
    ] {
        let r = proxy_get(sk.proxy_addr, url, &[]).await;
        assert_eq!(r.status, 200, "{url}: {}", r.text());
    }
    let reqs = up.wait_requests(3, REQ_TIMEOUT);
    let auth = |p: &str| {
        reqs.iter()
            .find(|r| r.path == p)
            .unwrap()
            .header_all("authorization")
    };
    assert_eq!(
        auth("/a/x"),
        vec![format!("Bearer {TOK_A}")],
        "first route wins for /a/x"
    );
    assert_eq!(
        auth("/b/y"),
        vec![format!("Bearer {TOK_B}")],
        "earlier catch-all beats later deny"
    );
    assert_eq!(auth("/c"), vec![format!("Bearer {TOK_B}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_glob_and_methods_match_as_specified() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  slack.test: {up}\n{}routes:\n  - name: slack-post\n    match: {{host: slack.test, path: \"/api/chat.*\", methods: [POST]}}\n    auth: claw\n    credential: cred-a\n  - name: exact\n    match: {{host: slack.test, path: /exact}}\n    auth: claw\n    credential: cred-b\n",
        yaml_head("policy-agent"),
        two_creds(),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &env());
    let cases: &[(&str, &str, bool)] = &[
        ("POST", "http://slack.test/api/chat.postMessage", true),
        ("POST", "http://slack.test/api/chat.update?ts=1/2", true),
        ("GET", "http://slack.test/api/chat.postMessage", false),
        ("PUT", "http://slack.test/api/chat.postMessage", false),
        ("POST", "http://slack.test/api/chatXpostMessage", false),
        ("POST", "http://slack.test/v2/api/chat.postMessage", false),
        ("POST", "http://slack.test/api/users.list", false),
        ("GET", "http://slack.test/exact", true),
        ("GET", "http://slack.test/exact?q=1", true),
        ("GET", "http://slack.test/exact/more", false),
        ("GET", "http://slack.test/exactly", false),
    ];
    for (method, url, allowed) in cases {
        let before = up.count();
        let resp = proxy_request(sk.proxy_addr, method, url, &[], empty()).await;
        if *allowed {
            assert_eq!(
                resp.status,
                200,
                "{method} {url} should be allowed: {}",
                resp.text()
            );
            assert_eq!(up.count(), before + 1, "{method} {url}");
        } else {
            assert_sidekey_error(&resp, 403, "route_denied");
            assert_eq!(up.count(), before, "{method} {url} must not go upstream");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_match_is_case_insensitive_portless_and_wildcards_skip_apex() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  api.test: {up}\n  a.wild.test: {up}\n  wild.test: {up}\n{}routes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: cred-a\n  - name: wild\n    match: {{host: \"*.wild.test\"}}\n    auth: claw\n    credential: cred-b\n",
        yaml_head("policy-agent"),
        two_creds(),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &env());
    let r = proxy_get(sk.proxy_addr, "http://API.Test:8080/upper", &[]).await;
    assert_eq!(
        r.status,
        200,
        "host case/port must not matter: {}",
        r.text()
    );
    let r = proxy_get(sk.proxy_addr, "http://a.wild.test/sub", &[]).await;
    assert_eq!(
        r.status,
        200,
        "*.wild.test matches a subdomain: {}",
        r.text()
    );
    let r = proxy_get(sk.proxy_addr, "http://wild.test/apex", &[]).await;
    assert_sidekey_error(&r, 403, "route_denied");
    let reqs = up.wait_requests(2, REQ_TIMEOUT);
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let auth = |p: &str| {
        reqs.iter()
            .find(|r| r.path == p)
            .unwrap()
            .header_all("authorization")
    };
    assert_eq!(auth("/upper"), vec![format!("Bearer {TOK_A}")]);
    assert_eq!(auth("/sub"), vec![format!("Bearer {TOK_B}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_mismatching_absolute_uri_is_bad_request() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: passthrough\nupstreams:\n  api.test: {up}\n  evil.test: {up}\n{}routes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: cred-a\n",
        yaml_head("policy-agent"),
        two_creds(),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &env());
    let resp = proxy_get(sk.proxy_addr, "http://api.test/x", &[("host", "evil.test")]).await;
    assert_sidekey_error(&resp, 400, "bad_request");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_has_request_id_and_errors_are_distinguishable() {
    let up = Upstream::start();
    let dead = dead_port();
    let creds = format!(
        "{}  per-user:\n    source: file\n    file: creds/{{user}}.txt\n",
        two_creds()
    );
    let cfg = format!(
        "{}default: deny\nupstreams:\n  api.test: {up}\n  down.test: 127.0.0.1:{dead}\n  notion.test: {up}\n{}routes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: cred-a\n  - name: down\n    match: {{host: down.test}}\n    auth: claw\n    credential: cred-a\n  - name: notion\n    match: {{host: notion.test}}\n    auth: assistant\n    credential: per-user\n",
        yaml_head("policy-agent"),
        creds,
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &env());

    // Successful responses carry a fresh request id.
    let a = proxy_get(sk.proxy_addr, "http://api.test/one", &[]).await;
    let b = proxy_get(sk.proxy_addr, "http://api.test/two", &[]).await;
    assert_eq!((a.status, b.status), (200, 200));
    assert_ne!(request_id(&a), request_id(&b), "request ids must be unique");
    assert!(a.header("x-sidekey-error").is_none());

    // An upstream's own error is passed through and is not marked as sidekey's.
    let u = proxy_get(sk.proxy_addr, "http://api.test/status?code=500", &[]).await;
    assert_eq!(u.status, 500);
    assert!(
        u.header("x-sidekey-error").is_none(),
        "upstream 500 marked as sidekey error"
    );
    request_id(&u);
    assert_eq!(u.json()["ok"], true, "upstream body passes through");

    // Sidekey's own errors all share the contract shape.
    let denied = proxy_get(sk.proxy_addr, "http://nowhere.test/", &[]).await;
    assert_sidekey_error(&denied, 403, "route_denied");
    let ident = proxy_get(sk.proxy_addr, "http://notion.test/", &[]).await;
    assert_sidekey_error(&ident, 401, "identity_required");
    let missing = proxy_get(
        sk.proxy_addr,
        "http://notion.test/",
        &[("x-sidekey-user", "nobody")],
    )
    .await;
    assert_sidekey_error(&missing, 401, "credential_missing");
    let down = proxy_get(sk.proxy_addr, "http://down.test/", &[]).await;
    assert_sidekey_error(&down, 502, "upstream_error");
    let bad = proxy_get(
        sk.proxy_addr,
        "http://api.test/x",
        &[("host", "other.test")],
    )
    .await;
    assert_sidekey_error(&bad, 400, "bad_request");
    let ids: std::collections::HashSet<String> = [&denied, &ident, &missing, &down, &bad]
        .iter()
        .map(|r| request_id(r))
        .collect();
    assert_eq!(ids.len(), 5, "each error has its own request id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_to_private_addresses_is_denied_unless_written_in_config() {
    let up = Upstream::start();
    let port = up.port();
    let cfg = format!(
        "{}default: passthrough\nroutes:\n  - name: literal-ip\n    match: {{host: 127.0.0.1, path: \"/allowed/*\"}}\n    auth: passthrough\n",
        yaml_head("egress-agent")
    );
    let sk = Sidekey::start(&cfg, &[]);
    let denied = [
        format!("http://localhost:{port}/x"),
        format!("http://127.0.0.1:{port}/not-allowed"),
        format!("http://127.0.0.2:{port}/x"),
        format!("http://[::1]:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
        format!("http://[::ffff:7f00:1]:{port}/x"),
        format!("http://2130706433:{port}/x"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.1.2.3/x".to_string(),
        "http://192.168.0.1/x".to_string(),
        "http://100.64.0.1/x".to_string(),
        "http://0.0.0.0/x".to_string(),
    ];
    let mut wrong = Vec::new();
    for url in &denied {
        let r = proxy_get(sk.proxy_addr, url, &[]).await;
        if r.status != 403 || r.header("x-sidekey-error") != Some("egress_denied") {
            wrong.push(format!(
                "{url}: {} {:?} {}",
                r.status,
                r.header("x-sidekey-error"),
                r.text()
            ));
        } else {
            assert_sidekey_error(&r, 403, "egress_denied");
        }
    }
    assert!(
        wrong.is_empty(),
        "expected 403 egress_denied for:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        up.count(),
        0,
        "a private address was dialled: {:#?}",
        up.requests()
    );
    // The operator's literal-IP route is intent and allowed.
    let ok = proxy_get(
        sk.proxy_addr,
        &format!("http://127.0.0.1:{port}/allowed/y"),
        &[],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(up.only().path, "/allowed/y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_never_dials_its_own_listeners() {
    let cfg = format!(
        "{}default: deny\nroutes:\n  - name: loop\n    match: {{host: 127.0.0.1}}\n    auth: passthrough\n",
        yaml_head("loop-agent")
    );
    let sk = Sidekey::start(&cfg, &[]);
    for (i, target) in [sk.proxy_addr, sk.admin_addr].iter().enumerate() {
        let r = proxy_get(sk.proxy_addr, &format!("http://{target}/metrics"), &[]).await;
        assert!(
            r.status >= 400 && r.header("x-sidekey-error").is_some(),
            "request to own listener {target} was served: {} {}",
            r.status,
            r.text()
        );
        let n = sk.wait_audit(i + 1).len();
        assert_eq!(
            n,
            i + 1,
            "a request to its own listener {target} looped through sidekey"
        );
    }
}
