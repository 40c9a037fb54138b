//! Operations: the admin listener's `/metrics` as an operator scrapes it (exact counter
//! values per label set, histogram counts, credential cache hits and misses, no user
//! or host in labels, build info, a clean `promtool check metrics`), the open
//! connections gauge, and that admin paths are never reachable through the proxy
//! (SPEC "Admin listener", "Errors sidekey itself returns").

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::prom;
use crate::prom::Exposition;
use crate::support::*;

const API_TOK: &str = "ops-api-tok-4141";
const DOWN_TOK: &str = "ops-down-tok-4242";
const USER: &str = "ops-metrics-user-7731";

/// Scrapes `/metrics` and parses it; checks status and content type on the way.
async fn scrape(sk: &Sidekey) -> Exposition {
    let r = http_get(sk.admin_addr, "/metrics").await;
    assert_eq!(r.status, 200, "/metrics status; body {:?}", r.text());
    let ct = r.header("content-type").unwrap_or_default().to_string();
    assert!(
        ct.starts_with("text/plain") && ct.contains("version=0.0.4"),
        "/metrics content-type must be the Prometheus text format, got {ct:?}"
    );
    prom::parse(&r.text())
}

/// Polls `/metrics` until the unlabelled gauge `name` equals `want`.
async fn wait_gauge(sk: &Sidekey, name: &str, want: f64, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        let m = scrape(sk).await;
        let v = m.get(name, &[]);
        if v == Some(want) {
            return;
        }
        assert!(
            t0.elapsed() < timeout,
            "{name} did not reach {want} within {timeout:?}; last value {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn labels<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

fn req_labels(route: &str, ctx: &str, decision: &str, class: &str) -> Vec<(String, String)> {
    labels(&[
        ("route", route),
        ("auth_context", ctx),
        ("decision", decision),
        ("status_class", class),
    ])
}

fn mixed_config(up: &Upstream, dead: u16) -> String {
    let up = up.host_port();
    [
        yaml_head("ops-metrics-agent").as_str(),
        "default: deny",
        "timeouts: {upstream_response: 1s}",
        "upstreams:",
        &format!("  api.test: {up}"),
        &format!("  user.test: {up}"),
        &format!("  slow.test: {up}"),
        &format!("  blocked.test: {up}"),
        &format!("  down.test: 127.0.0.1:{dead}"),
        "credentials:",
        "  api-cred: {source: env, env: API_TOK}",
        "  down-cred: {source: env, env: DOWN_TOK}",
        "  user-cred: {source: file, file: \"creds/{user}.txt\"}",
        "routes:",
        "  - {name: api-route, match: {host: api.test}, auth: claw, credential: api-cred}",
        "  - {name: user-route, match: {host: user.test}, auth: assistant, credential: user-cred}",
        "  - {name: blocked-route, match: {host: blocked.test}, auth: deny}",
        "  - {name: down-route, match: {host: down.test}, auth: claw, credential: down-cred}",
        "  - {name: slow-route, match: {host: slow.test}, auth: claw, credential: down-cred}",
        "",
    ]
    .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_outcome_exactly_and_pass_promtool() {
    let up = Upstream::start();
    let dead = dead_port();
    let sk = Sidekey::start(
        &mixed_config(&up, dead),
        &[("API_TOK", API_TOK), ("DOWN_TOK", DOWN_TOK)],
    );
    let p = sk.proxy_addr;
    let who = [("x-sidekey-user", USER)];

    // Allowed: api-cred is used three times (one miss, then two cache hits).
    let r = proxy_get(p, "http://api.test/a", &who).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = proxy_get(p, "http://api.test/b?secretq=QVAL-1", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = proxy_get(p, "http://api.test/status?code=404", &who).await;
    assert_eq!(
        r.status,
        404,
        "upstream's own 404 passes through: {}",
        r.text()
    );
    // Denied: nothing matched (twice), an `auth: deny` route, an assistant route
    // without identity.
    assert_sidekey_error(
        &proxy_get(p, "http://nope.test/x", &[]).await,
        403,
        "route_denied",
    );
    assert_sidekey_error(
        &proxy_get(p, "http://nope2.test/y", &who).await,
        403,
        "route_denied",
    );
    assert_sidekey_error(
        &proxy_get(p, "http://blocked.test/z", &who).await,
        403,
        "route_denied",
    );
    assert_sidekey_error(
        &proxy_get(p, "http://user.test/p", &[]).await,
        401,
        "identity_required",
    );
    // Failing: nothing listens on down.test's port; slow.test answers after 8s but
    // timeouts.upstream_response is 1s. down-cred: one miss, then one hit.
    assert_sidekey_error(
        &proxy_get(p, "http://down.test/q", &who).await,
        502,
        "upstream_error",
    );
    let t0 = Instant::now();
    assert_sidekey_error(
        &proxy_get(p, "http://slow.test/slow?ms=8000", &[]).await,
        504,
        "upstream_timeout",
    );
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "upstream_timeout took {:?} with upstream_response: 1s",
        t0.elapsed()
    );
    // Metrics are counted before the audit record is written: once all nine records
    // exist, every counter is final.
    sk.wait_audit(9);
    let m = scrape(&sk).await;

    // Types of every family.
    for (name, ty) in [
        ("sidekey_requests_total", "counter"),
        ("sidekey_request_duration_seconds", "histogram"),
        ("sidekey_upstream_duration_seconds", "histogram"),
        ("sidekey_credential_lookups_total", "counter"),
        ("sidekey_config_reloads_total", "counter"),
        ("sidekey_open_connections", "gauge"),
        ("sidekey_build_info", "gauge"),
        ("sidekey_telemetry_dropped_spans_total", "counter"),
    ] {
        assert_eq!(
            m.types.get(name).map(String::as_str),
            Some(ty),
            "# TYPE of {name}\n{}",
            m.text
        );
    }

    // sidekey_requests_total: exactly these label sets, with these values.
    let expected: BTreeMap<Vec<(String, String)>, f64> = [
        (
            req_labels("api-route", "system_service", "allow", "2xx"),
            2.0,
        ),
        (
            req_labels("api-route", "system_service", "allow", "4xx"),
            1.0,
        ),
        (req_labels("none", "none", "deny", "4xx"), 2.0),
        (req_labels("blocked-route", "none", "deny", "4xx"), 1.0),
        (
            req_labels("user-route", "user_delegated", "deny", "4xx"),
            1.0,
        ),
        (
            req_labels("down-route", "system_service", "error", "5xx"),
            1.0,
        ),
        (
            req_labels("slow-route", "system_service", "error", "5xx"),
            1.0,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        m.series("sidekey_requests_total"),
        expected,
        "sidekey_requests_total (left: observed, right: expected)"
    );

    // Histograms: one observation per request for the request duration. The upstream
    // duration is observed exactly for the requests whose audit record has an
    // `upstream_ms`: never for requests refused before forwarding, always for requests
    // that were sent and answered, and for the one that was sent and timed out
    // waiting for its answer (it went upstream and waited the whole budget; leaving it
    // out would hide a hanging upstream from latency alerts). Whether a refused
    // connect (down-route) counts is left to the product, but metrics and audit must
    // agree on it.
    let per_route = [
        ("api-route", 3.0, Some(Some(3.0))),
        ("none", 2.0, Some(None)),
        ("blocked-route", 1.0, Some(None)),
        ("user-route", 1.0, Some(None)),
        ("down-route", 1.0, None),
        // slow-route (sent, timed out) is checked last, below.
        ("slow-route", 1.0, None),
    ];
    let audit = sk.audit_records();
    for (route, req_count, up_count) in per_route {
        assert_eq!(
            m.get(
                "sidekey_request_duration_seconds_count",
                &[("route", route)]
            ),
            Some(req_count),
            "sidekey_request_duration_seconds_count{{route={route:?}}}:\n{}",
            m.dump("sidekey_request_duration_seconds_count")
        );
        let observed = m.get(
            "sidekey_upstream_duration_seconds_count",
            &[("route", route)],
        );
        if let Some(want) = up_count {
            assert_eq!(
                observed,
                want,
                "sidekey_upstream_duration_seconds_count{{route={route:?}}}:\n{}",
                m.dump("sidekey_upstream_duration_seconds_count")
            );
        }
        let audit_route = if route == "none" {
            serde_json::Value::Null
        } else {
            serde_json::Value::from(route)
        };
        let with_upstream = audit
            .iter()
            .filter(|r| r["route"] == audit_route && r["upstream_ms"].is_number())
            .count() as f64;
        assert_eq!(
            observed.unwrap_or(0.0),
            with_upstream,
            "upstream duration observations for {route} must match the audit records \
             with upstream_ms:\n{}\n--- audit ---\n{}",
            m.dump("sidekey_upstream_duration_seconds_count"),
            sk.stdout_text()
        );
    }
    let req_routes: BTreeSet<String> = m
        .find("sidekey_request_duration_seconds_count", &[])
        .iter()
        .map(|s| s.labels["route"].clone())
        .collect();
    assert_eq!(
        req_routes.len(),
        per_route.len(),
        "extra request histograms: {req_routes:?}"
    );
    // Bucket bookkeeping of every histogram series.
    let hp = m.histogram_problems();
    assert!(hp.is_empty(), "histogram problems: {hp:#?}");

    // Credential cache: exactly one miss then hits, per credential; no lookup for the
    // assistant route refused before any credential was needed.
    let lk = |c: &str, r: &str| labels(&[("credential", c), ("source", "env"), ("result", r)]);
    let expected_lookups: BTreeMap<Vec<(String, String)>, f64> = [
        (lk("api-cred", "miss"), 1.0),
        (lk("api-cred", "hit"), 2.0),
        (lk("down-cred", "miss"), 1.0),
        (lk("down-cred", "hit"), 1.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        m.series("sidekey_credential_lookups_total"),
        expected_lookups,
        "sidekey_credential_lookups_total (left: observed, right: expected)"
    );

    // Reload counters exist from the start, at zero.
    assert_eq!(
        m.value("sidekey_config_reloads_total", &[("result", "success")]),
        0.0
    );
    assert_eq!(
        m.value("sidekey_config_reloads_total", &[("result", "error")]),
        0.0
    );

    // Build info carries the crate version.
    assert_eq!(
        m.series("sidekey_build_info"),
        [(labels(&[("version", env!("CARGO_PKG_VERSION"))]), 1.0)]
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        "sidekey_build_info"
    );

    // Label hygiene: only the documented label names, and no user id, host, path or
    // query anywhere in the exposition.
    let allowed: BTreeMap<&str, &[&str]> = [
        (
            "sidekey_requests_total",
            &["route", "auth_context", "decision", "status_class"][..],
        ),
        (
            "sidekey_request_duration_seconds_bucket",
            &["route", "le"][..],
        ),
        ("sidekey_request_duration_seconds_sum", &["route"][..]),
        ("sidekey_request_duration_seconds_count", &["route"][..]),
        (
            "sidekey_upstream_duration_seconds_bucket",
            &["route", "le"][..],
        ),
        ("sidekey_upstream_duration_seconds_sum", &["route"][..]),
        ("sidekey_upstream_duration_seconds_count", &["route"][..]),
        (
            "sidekey_credential_lookups_total",
            &["credential", "source", "result"][..],
        ),
        (
            "sidekey_token_refreshes_total",
            &["credential", "result"][..],
        ),
        ("sidekey_config_reloads_total", &["result"][..]),
        ("sidekey_open_connections", &[][..]),
        ("sidekey_build_info", &["version"][..]),
        ("sidekey_telemetry_dropped_spans_total", &[][..]),
    ]
    .into_iter()
    .collect();
    for s in &m.samples {
        let Some(keys) = allowed.get(s.name.as_str()) else {
            panic!("undocumented metric {} in /metrics:\n{}", s.name, m.text);
        };
        let got: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
        let want: BTreeSet<&str> = keys.iter().copied().collect();
        assert_eq!(got, want, "label names of {} {:?}", s.name, s.labels);
        for v in s.labels.values() {
            for bad in [USER, ".test", "127.0.0.1", "/a", "/slow", "secretq", "QVAL"] {
                assert!(
                    !v.contains(bad),
                    "label value {v:?} of {} contains {bad:?}",
                    s.name
                );
            }
        }
    }
    for bad in [USER, "secretq", "QVAL-1", API_TOK, DOWN_TOK] {
        assert!(
            !m.text.contains(bad),
            "{bad:?} appears in /metrics:\n{}",
            m.text
        );
    }

    // promtool validates the exposition (format and lint).
    let (code, out) = prom::promtool_check(&m.text);
    assert_eq!(
        code, 0,
        "`promtool check metrics` rejected sidekey's /metrics:\n{out}\n--- exposition ---\n{}",
        m.text
    );

    // Last, so that every check above still runs when this one fails: the request
    // that timed out was sent upstream and waited the whole budget, so it is one
    // upstream-duration observation of about 1s, and its audit record has upstream_ms.
    assert_eq!(
        m.get(
            "sidekey_upstream_duration_seconds_count",
            &[("route", "slow-route")]
        ),
        Some(1.0),
        "an upstream_timeout is missing from sidekey_upstream_duration_seconds, so a \
         hanging upstream is invisible to upstream latency alerts:\n{}",
        m.dump("sidekey_upstream_duration_seconds_count")
    );
    // The timed-out request waited the full upstream_response budget, and no longer
    // than the upstream's 8 s.
    let slow_up = m.value(
        "sidekey_upstream_duration_seconds_sum",
        &[("route", "slow-route")],
    );
    assert!(
        (0.99..6.0).contains(&slow_up),
        "upstream duration of the 1s timeout: {slow_up}"
    );
    let slow_total = m.value(
        "sidekey_request_duration_seconds_sum",
        &[("route", "slow-route")],
    );
    assert!(
        slow_total >= slow_up,
        "request duration {slow_total} < upstream duration {slow_up}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_rises_with_keepalive_connections_and_falls_when_they_close() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  api.test: {}\ncredentials:\n  c:\n    source: env\n    env: API_TOK\nroutes:\n  - name: api-route\n    match: {{host: api.test}}\n    auth: claw\n    credential: c\n",
        yaml_head("ops-conn-agent"),
        up.host_port()
    );
    let sk = Sidekey::start(&cfg, &[("API_TOK", API_TOK)]);
    let gauge = "sidekey_open_connections";
    // Admin scrapes are not proxy connections: nothing is open yet.
    assert_eq!(
        scrape(&sk).await.value(gauge, &[]),
        0.0,
        "before any connection"
    );

    let mut a = ProxyConn::open(sk.proxy_addr).await;
    let r = a.request("GET", "http://api.test/1", &[], empty()).await;
    assert_eq!(r.status, 200);
    // The connection has been served, so it is counted by now.
    assert_eq!(
        scrape(&sk).await.value(gauge, &[]),
        1.0,
        "one kept-alive connection"
    );

    let mut b = ProxyConn::open(sk.proxy_addr).await;
    let r = b.request("GET", "http://api.test/2", &[], empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        scrape(&sk).await.value(gauge, &[]),
        2.0,
        "two kept-alive connections"
    );
    // Still open after more requests on the same connection: it counts connections,
    // not requests.
    let r = a.request("GET", "http://api.test/3", &[], empty()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        scrape(&sk).await.value(gauge, &[]),
        2.0,
        "reuse is not a new connection"
    );

    drop(a);
    wait_gauge(&sk, gauge, 1.0, Duration::from_secs(15)).await;
    drop(b);
    wait_gauge(&sk, gauge, 0.0, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_paths_are_not_reachable_through_the_proxy() {
    let up = Upstream::start();
    // The worst case: a route that would inject a credential for any request to
    // 127.0.0.1 (a literal IP the operator wrote, so egress allows it as intent),
    // plus a gateway so origin-form requests are served on the proxy port.
    let cfg = format!(
        "{}default: deny\ncredentials:\n  c:\n    source: env\n    env: API_TOK\nroutes:\n  - name: loopback-route\n    match: {{host: 127.0.0.1}}\n    auth: claw\n    credential: c\n  - name: localhost-route\n    match: {{host: localhost}}\n    auth: claw\n    credential: c\n  - name: gw\n    gateway: {{prefix: /gw, upstream: \"{}\"}}\n    auth: claw\n    credential: c\n",
        yaml_head("ops-admin-agent"),
        up.base_url()
    );
    let sk = Sidekey::start(&cfg, &[("API_TOK", API_TOK)]);
    let h = http_get(sk.admin_addr, "/healthz").await;
    assert_eq!(h.status, 200, "/healthz: {}", h.text());
    let r = http_get(sk.admin_addr, "/readyz").await;
    assert_eq!(r.status, 200, "/readyz of a healthy sidekey: {}", r.text());
    // The gateway works, so the refusals below are about the admin paths.
    let ok = gateway_request(sk.proxy_addr, "GET", "/gw/ok", &[], empty()).await;
    assert_eq!(ok.status, 200, "gateway: {}", ok.text());

    let admin_port = sk.admin_addr.port();
    for path in ["/metrics", "/healthz", "/readyz"] {
        for host in ["127.0.0.1", "localhost"] {
            let url = format!("http://{host}:{admin_port}{path}");
            let r = proxy_get(sk.proxy_addr, &url, &[]).await;
            assert_sidekey_error(&r, 403, "egress_denied");
            assert!(
                !r.text().contains("sidekey_") && !r.text().contains("# TYPE"),
                "{url} through the proxy leaked metrics: {}",
                r.text()
            );
        }
        let r = gateway_request(sk.proxy_addr, "GET", path, &[], empty()).await;
        assert_sidekey_error(&r, 403, "route_denied");
        assert!(
            !r.text().contains("sidekey_") && !r.text().contains("# TYPE"),
            "gateway-style {path} on the proxy port served admin content: {}",
            r.text()
        );
    }
    assert_eq!(up.count(), 1, "only the gateway check reached the upstream");
    // The refusals are counted like any other request, under their routes.
    sk.wait_audit(10);
    let m = scrape(&sk).await;
    assert_eq!(
        m.get(
            "sidekey_requests_total",
            &[
                ("route", "localhost-route"),
                ("auth_context", "system_service"),
                ("decision", "deny"),
                ("status_class", "4xx")
            ]
        ),
        Some(3.0),
        "egress_denied to localhost:<admin> is counted on localhost-route:\n{}",
        m.dump("sidekey_requests_total")
    );
    assert_eq!(
        m.get(
            "sidekey_requests_total",
            &[
                ("route", "loopback-route"),
                ("auth_context", "system_service"),
                ("decision", "deny"),
                ("status_class", "4xx")
            ]
        ),
        Some(3.0),
        "egress_denied to 127.0.0.1:<admin> is counted on loopback-route:\n{}",
        m.dump("sidekey_requests_total")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_https_tunnel_is_one_open_connection() {
    let up = TlsUpstream::start(&["api.secure.test"]);
    let dir = ConfigDir::new();
    let ca = SidekeyCa::init(dir.path());
    let cfg = format!(
        "{head}default: deny\n{tls}upstreams:\n  api.secure.test: {up}\ncredentials:\n  c:\n    source: env\n    env: API_TOK\nroutes:\n  - name: secure-route\n    match: {{host: api.secure.test}}\n    auth: claw\n    credential: c\n",
        head = yaml_head("ops-tunnel-agent"),
        tls = ca.tls_yaml(&[up.ca_pem_path()]),
        up = up.host_port()
    );
    let sk = Sidekey::start_in(dir, &cfg, &[("API_TOK", API_TOK)]);
    let gauge = "sidekey_open_connections";
    assert_eq!(
        scrape(&sk).await.value(gauge, &[]),
        0.0,
        "before any connection"
    );

    // One client TCP connection: CONNECT, TLS terminated by sidekey, a request inside.
    let tls = open_tunnel(
        sk.proxy_addr,
        "api.secure.test:443",
        &[],
        "api.secure.test",
        client_tls(&ca.cert, &["http/1.1"]),
    )
    .await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .expect("http1 inside the tunnel");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = tunnel_req("GET", "/inside", &[("host", "api.secure.test")], empty());
    let resp = read_all(sender.send_request(req).await.expect("request in tunnel")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let m = scrape(&sk).await;
    assert_eq!(
        m.value(gauge, &[]),
        1.0,
        "one client TCP connection (an intercepted CONNECT tunnel) must count once in {gauge}; \
         max_connections counts it once"
    );
    drop(sender);
    wait_gauge(&sk, gauge, 0.0, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_connect_tunnel_counts_as_an_open_connection_while_it_is_open() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  tunnel.test: {}\nroutes:\n  - name: tunnel-route\n    match: {{host: tunnel.test}}\n    auth: passthrough\n",
        yaml_head("ops-blind-agent"),
        up.host_port()
    );
    let sk = Sidekey::start(&cfg, &[]);
    let gauge = "sidekey_open_connections";
    assert_eq!(
        scrape(&sk).await.value(gauge, &[]),
        0.0,
        "before any connection"
    );

    let reply = connect_raw(sk.proxy_addr, "tunnel.test:80", &[]).await;
    assert_eq!(
        reply.status, 200,
        "CONNECT to a passthrough host: {:?}",
        reply.headers
    );
    // The tunnel works: a plain HTTP/1.1 request through it reaches the upstream.
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(reply.stream))
            .await
            .expect("http1 through the tunnel");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = tunnel_req(
        "GET",
        "/through-tunnel",
        &[("host", "tunnel.test")],
        empty(),
    );
    let resp = read_all(
        sender
            .send_request(req)
            .await
            .expect("request through tunnel"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    let m = scrape(&sk).await;
    assert_eq!(
        m.value(gauge, &[]),
        1.0,
        "an open CONNECT tunnel is an open client connection, but {gauge} does not count it"
    );
    drop(sender);
    wait_gauge(&sk, gauge, 0.0, Duration::from_secs(15)).await;
}
