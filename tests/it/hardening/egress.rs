//! Hardening: egress safety against a hostile agent (SPEC "Egress safety").
//!
//! Every request here is one an agent could send to reach something it must not: the
//! cloud metadata service in every spelling an URL parser or `getaddrinfo` accepts,
//! names that resolve to loopback, sidekey's own admin listener over CONNECT, and
//! other notations of an IP a route names. `default: passthrough` is used throughout
//! so that only the egress check (not route policy) stands between the agent and the
//! address. No request in this file is meant to leave the machine: each is refused
//! before any dial, and the recording upstream (on loopback) proves nothing got through.

use crate::support::*;

/// A config where only egress decides: `default: passthrough`, short connect timeout,
/// `extra` inserted before `routes`.
fn passthrough_cfg(agent: &str, extra: &str, routes: &str) -> String {
    format!(
        "{}default: passthrough\ntimeouts:\n  connect: 1s\n{extra}routes:\n{routes}",
        yaml_head(agent)
    )
}

/// Sends each URL through the proxy and returns a description of every response that is
/// not `403 egress_denied` (checked with the full error contract when it is).
async fn expect_egress_denied(sk: &Sidekey, urls: &[String]) -> Vec<String> {
    let mut wrong = Vec::new();
    for url in urls {
        let r = proxy_get(sk.proxy_addr, url, &[]).await;
        if r.status == 403 && r.header("x-sidekey-error") == Some("egress_denied") {
            assert_sidekey_error(&r, 403, "egress_denied");
        } else {
            wrong.push(format!(
                "{url}: got {} {:?} {}",
                r.status,
                r.header("x-sidekey-error"),
                r.text()
            ));
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_address_is_denied_in_every_notation() {
    let sk = Sidekey::start(&passthrough_cfg("egress-md", "", "  []\n"), &[]);
    let urls: Vec<String> = [
        "http://169.254.169.254/latest/meta-data/",
        // decimal, octal, hex: inet_aton forms getaddrinfo accepts
        "http://2852039166/latest/meta-data/",
        "http://0251.0376.0251.0376/latest/meta-data/",
        "http://0xa9fea9fe/latest/meta-data/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://169.254.43518/",
        // IPv6 forms embedding it
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
        // the IPv6 metadata address
        "http://[fd00:ec2::254]/",
        // with an explicit port
        "http://169.254.169.254:80/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let wrong = expect_egress_denied(&sk, &urls).await;
    assert!(
        wrong.is_empty(),
        "expected 403 egress_denied for:\n{}",
        wrong.join("\n")
    );
    // Every refusal is audited as a denial with the contract's code.
    let records = sk.wait_audit(urls.len());
    for r in &records {
        assert_eq!(r["decision"], "deny", "{r}");
        assert_eq!(r["error"], "egress_denied", "{r}");
        assert!(r["upstream_ms"].is_null(), "nothing went upstream: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_notations_resolving_to_loopback_are_denied() {
    let up = Upstream::start();
    let port = up.port();
    let sk = Sidekey::start(&passthrough_cfg("egress-lo", "", "  []\n"), &[]);
    let urls: Vec<String> = [
        "localhost",
        "LOCALHOST",
        "LocalHost",
        "127.1",
        "0x7f.1",
        "0177.0.0.1",
        "0x7f000001",
        "2130706433",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
    ]
    .iter()
    .map(|h| format!("http://{h}:{port}/x"))
    .collect();
    let wrong = expect_egress_denied(&sk, &urls).await;
    assert!(
        wrong.is_empty(),
        "expected 403 egress_denied for:\n{}",
        wrong.join("\n")
    );
    assert_eq!(
        up.count(),
        0,
        "a loopback address was dialled: {:#?}",
        up.requests()
    );
}

/// `localhost.` is the same name as `localhost` (the trailing dot only roots it in the
/// DNS tree). sidekey must treat it as loopback: refused with `egress_denied`, whatever
/// the local resolver does with the dot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_dot_name_is_the_same_host_for_egress() {
    let up = Upstream::start();
    let port = up.port();
    let sk = Sidekey::start(&passthrough_cfg("egress-dot", "", "  []\n"), &[]);
    let urls = vec![
        format!("http://localhost.:{port}/x"),
        format!("http://LOCALHOST.:{port}/x"),
    ];
    let wrong = expect_egress_denied(&sk, &urls).await;
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
    assert!(
        wrong.is_empty(),
        "expected 403 egress_denied for:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_cidrs_opens_loopback_and_only_loopback() {
    let up = Upstream::start();
    let port = up.port();
    let sk = Sidekey::start(
        &passthrough_cfg(
            "egress-allow",
            "egress:\n  allow_cidrs: [127.0.0.0/8]\n",
            "  []\n",
        ),
        &[],
    );
    for (i, host) in ["localhost", "127.0.0.1", "127.1"].iter().enumerate() {
        let r = proxy_get(sk.proxy_addr, &format!("http://{host}:{port}/open{i}"), &[]).await;
        assert_eq!(
            r.status,
            200,
            "{host}: allow_cidrs 127.0.0.0/8 must open loopback: {}",
            r.text()
        );
        assert!(r.header("x-sidekey-error").is_none());
    }
    let reqs = up.wait_requests(3, REQ_TIMEOUT);
    let mut paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["/open0", "/open1", "/open2"]);
    // Other non-public ranges stay closed.
    let urls = vec![
        "http://169.254.169.254/".to_string(),
        "http://[::ffff:a9fe:a9fe]/".to_string(),
        format!("http://[::1]:{port}/v6-loopback-not-listed"),
    ];
    let wrong = expect_egress_denied(&sk, &urls).await;
    assert!(
        wrong.is_empty(),
        "allow_cidrs [127.0.0.0/8] must not open anything else:\n{}",
        wrong.join("\n")
    );
    assert_eq!(up.count(), 3, "{:#?}", up.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_listeners_stay_closed_even_when_loopback_is_allowed_and_named() {
    // Everything that could open loopback is on: allow_cidrs, a literal-IP route (intent)
    // and `default: passthrough`. sidekey's own listeners must still never be dialled.
    let cfg = passthrough_cfg(
        "egress-own",
        "egress:\n  allow_cidrs: [127.0.0.0/8, \"::1/128\"]\n",
        "  - name: loop\n    match: {host: 127.0.0.1}\n    auth: passthrough\n  - name: loop-name\n    match: {host: localhost}\n    auth: passthrough\n",
    );
    let sk = Sidekey::start(&cfg, &[]);
    let admin = sk.admin_addr.port();
    let proxy = sk.proxy_addr.port();
    let mut wrong = Vec::new();
    for target in [
        format!("127.0.0.1:{admin}"),
        format!("localhost:{admin}"),
        format!("127.1:{admin}"),
        format!("2130706433:{admin}"),
        format!("[::ffff:127.0.0.1]:{admin}"),
        format!("127.0.0.1:{proxy}"),
    ] {
        let reply = connect_raw(sk.proxy_addr, &target, &[]).await;
        let resp = reply.resp();
        if resp.status != 403 || resp.header("x-sidekey-error") != Some("egress_denied") {
            wrong.push(format!(
                "CONNECT {target}: {} {:?} {}",
                resp.status,
                resp.header("x-sidekey-error"),
                resp.text()
            ));
        } else {
            assert_sidekey_error(&resp, 403, "egress_denied");
        }
    }
    // Plain forward-proxy requests to the admin listener are refused too, and never
    // answered with the admin endpoints' content.
    for url in [
        format!("http://127.0.0.1:{admin}/metrics"),
        format!("http://localhost:{admin}/healthz"),
        format!("http://127.1:{admin}/metrics"),
    ] {
        let r = proxy_get(sk.proxy_addr, &url, &[]).await;
        if !(r.status >= 400 && r.header("x-sidekey-error").is_some()) {
            wrong.push(format!("GET {url}: {} {}", r.status, r.text()));
        }
        assert!(
            !r.text().contains("sidekey_requests_total"),
            "admin content leaked through the proxy: {url}"
        );
    }
    assert!(
        wrong.is_empty(),
        "requests to sidekey's own listeners:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_metadata_is_denied_before_any_tunnel() {
    let sk = Sidekey::start(&passthrough_cfg("egress-connect", "", "  []\n"), &[]);
    let mut wrong = Vec::new();
    for target in [
        "169.254.169.254:443",
        "169.254.169.254:80",
        "2852039166:443",
        "[::ffff:a9fe:a9fe]:443",
        "[fd00:ec2::254]:443",
    ] {
        let reply = connect_raw(sk.proxy_addr, target, &[]).await;
        let resp = reply.resp();
        if resp.status != 403 || resp.header("x-sidekey-error") != Some("egress_denied") {
            wrong.push(format!(
                "CONNECT {target}: {} {:?} {}",
                resp.status,
                resp.header("x-sidekey-error"),
                resp.text()
            ));
        } else {
            assert_sidekey_error(&resp, 403, "egress_denied");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A deny route written for a literal IP must cover every other notation of that IP:
/// `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1` all reach 127.0.0.1. With the
/// address opened by `allow_cidrs` and `default: passthrough`, a notation the route
/// table does not recognise would otherwise fall through to passthrough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_ip_deny_route_covers_every_notation_of_that_ip() {
    let up = Upstream::start();
    let port = up.port();
    let cfg = passthrough_cfg(
        "egress-notation",
        "egress:\n  allow_cidrs: [127.0.0.0/8]\n",
        "  - name: no-admin\n    match: {host: 127.0.0.1, path: \"/admin*\"}\n    auth: deny\n",
    );
    let sk = Sidekey::start(&cfg, &[]);
    // Sanity: the canonical notation is denied, a non-admin path passes.
    let r = proxy_get(
        sk.proxy_addr,
        &format!("http://127.0.0.1:{port}/admin"),
        &[],
    )
    .await;
    assert_sidekey_error(&r, 403, "route_denied");
    let r = proxy_get(sk.proxy_addr, &format!("http://127.0.0.1:{port}/ok"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let mut wrong = Vec::new();
    for host in [
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "[::ffff:127.0.0.1]",
    ] {
        let url = format!("http://{host}:{port}/admin/users");
        let before = up.count();
        let r = proxy_get(sk.proxy_addr, &url, &[]).await;
        if up.count() > before {
            wrong.push(format!(
                "{url}: reached the upstream ({} {}), dodging the deny route for 127.0.0.1",
                r.status,
                r.header("x-sidekey-error").unwrap_or("-")
            ));
        } else if r.header("x-sidekey-error").is_none() {
            wrong.push(format!("{url}: not a sidekey refusal: {}", r.status));
        }
    }
    assert!(
        wrong.is_empty(),
        "deny route for 127.0.0.1 bypassed by another notation:\n{}",
        wrong.join("\n")
    );
    assert!(
        up.requests().iter().all(|r| !r.path.starts_with("/admin")),
        "{:#?}",
        up.requests()
    );
}

/// Same for a host name with a trailing dot: `api.test.` is `api.test`, and a deny
/// route for `api.test` must apply (SPEC: hosts match case-insensitively; the pattern
/// side already ignores a trailing dot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_deny_route_covers_the_trailing_dot_form() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: passthrough\nupstreams:\n  api.test: {}\nroutes:\n  - name: no-admin\n    match: {{host: api.test, path: \"/admin*\"}}\n    auth: deny\n",
        yaml_head("egress-dot-route"),
        up.host_port()
    );
    let sk = Sidekey::start(&cfg, &[]);
    let r = proxy_get(
        sk.proxy_addr,
        "http://api.test./admin",
        &[("host", "api.test.")],
    )
    .await;
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
    assert_sidekey_error(&r, 403, "route_denied");
    let rid = request_id(&r);
    let a = sk.audit_for(&rid);
    assert_eq!(a["route"], "no-admin", "{a}");
}
