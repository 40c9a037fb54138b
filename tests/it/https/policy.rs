//! HTTPS CONNECT policy end to end (SPEC "Ways in" 2, "Egress safety", "Request
//! handling", "Errors"): blind tunnels for passthrough hosts, 403 on CONNECT for denied
//! hosts and for sidekey's own listeners, 502 for a bad upstream certificate, 400 when
//! SNI or the inner Host names another host than the CONNECT, and the CONNECT's identity
//! binding every request inside the tunnel.

use std::time::Duration;

use crate::support::*;
use serde_json::Value;

const BOT: &str = "xoxb-policy-8841-bot";

/// Builds and starts a sidekey with a fresh CA; `body` is everything after `default:`
/// (upstreams, credentials, routes), `roots` the upstream trust roots.
fn start(
    default: &str,
    roots: &[&std::path::Path],
    body: &str,
    env: &[(&str, &str)],
) -> (Sidekey, SidekeyCa) {
    start_with_files(default, roots, body, env, &[])
}

fn start_with_files(
    default: &str,
    roots: &[&std::path::Path],
    body: &str,
    env: &[(&str, &str)],
    files: &[(&str, &str)],
) -> (Sidekey, SidekeyCa) {
    let dir = ConfigDir::new();
    for (rel, content) in files {
        dir.write(rel, content);
    }
    let ca = SidekeyCa::init(dir.path());
    let yaml = format!(
        "{head}default: {default}\n{tls}{body}",
        head = yaml_head("https-policy-agent"),
        tls = ca.tls_yaml(roots),
    );
    let sk = Sidekey::start_in(dir, &yaml, env);
    (sk, ca)
}

fn slack_body(up: &str) -> String {
    format!(
        "upstreams:\n  slack.com: {up}\ncredentials:\n  slack-bot:\n    source: env\n    env: SLACK_BOT_TOKEN\nroutes:\n  - name: slack\n    match: {{host: slack.com}}\n    auth: claw\n    credential: slack-bot\n"
    )
}

/// The audit record matching `pred`, waiting for it.
#[track_caller]
fn audit_where(sk: &Sidekey, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(r) = sk.audit_records().into_iter().find(|r| pred(r)) {
            return r;
        }
        if t0.elapsed() > AUDIT_TIMEOUT {
            panic!(
                "no audit record for {what}\n--- stdout ---\n{}",
                sk.stdout_text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// Passthrough: a blind tunnel
// ---------------------------------------------------------------------------------------

fn passthrough_setup() -> (Sidekey, SidekeyCa, TlsUpstream, TlsUpstream) {
    let pinned = TlsUpstream::start(&["pinned.test"]);
    let slack = TlsUpstream::start(&["slack.com"]);
    let body = format!(
        "upstreams:\n  pinned.test: {p}\n  slack.com: {s}\ncredentials:\n  slack-bot:\n    source: env\n    env: SLACK_BOT_TOKEN\nroutes:\n  - name: slack\n    match: {{host: slack.com}}\n    auth: claw\n    credential: slack-bot\n  - name: pinned\n    match: {{host: pinned.test}}\n    auth: passthrough\n",
        p = pinned.host_port(),
        s = slack.host_port(),
    );
    let (sk, ca) = start(
        "deny",
        &[slack.ca_pem_path()],
        &body,
        &[("SLACK_BOT_TOKEN", BOT)],
    );
    (sk, ca, pinned, slack)
}

#[test]
fn passthrough_host_gets_a_blind_tunnel_to_a_client_pinning_the_upstream_ca() {
    let (sk, _ca, pinned, _slack) = passthrough_setup();
    let proxy = sk.proxy_url();
    // The client trusts only the upstream's own CA: this works only if sidekey does not
    // terminate TLS.
    let out = curl(&[
        "--proxy",
        &proxy,
        "--cacert",
        pinned.ca_pem_path().to_str().unwrap(),
        "-H",
        "authorization: Bearer client-own-token",
        "https://pinned.test/v1/pinned?x=1",
    ]);
    assert_eq!(out.exit, 0, "curl through the tunnel failed: {out:?}");
    assert_eq!(out.connect_status, 200, "{out:?}");
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.json()["path"], "/v1/pinned", "{out:?}");
    assert!(
        out.header("x-sidekey-request-id").is_none(),
        "a blind tunnel cannot add headers to the inner response: {}",
        out.headers
    );
    let r = pinned.only();
    assert_eq!(r.path, "/v1/pinned");
    assert_eq!(
        r.header_all("authorization"),
        vec!["Bearer client-own-token"],
        "a blind tunnel neither strips nor injects credentials"
    );
    assert!(
        !r.headers.iter().any(|(_, v)| v.contains(BOT)),
        "no sidekey credential may reach a passthrough host: {:?}",
        r.headers
    );
    assert_eq!(
        pinned.connections()[0].sni.as_deref(),
        Some("pinned.test"),
        "the client's own TLS reaches the upstream"
    );
}

#[test]
fn passthrough_tunnel_is_not_intercepted() {
    // A client trusting only sidekey's CA cannot talk to the passthrough host: the
    // certificate it sees is the upstream's, proving sidekey did not intercept.
    let (sk, ca, pinned, _slack) = passthrough_setup();
    let proxy = sk.proxy_url();
    let out = curl(&[
        "--proxy",
        &proxy,
        "--cacert",
        ca.cert.to_str().unwrap(),
        "https://pinned.test/v1/x",
    ]);
    assert_eq!(out.connect_status, 200, "CONNECT must be accepted: {out:?}");
    assert_eq!(
        out.exit, 60,
        "curl must reject the upstream's certificate (exit 60): {out:?}"
    );
    assert_eq!(pinned.count(), 0);
}

#[test]
fn passthrough_tunnel_is_audited_with_its_route() {
    let (sk, _ca, pinned, _slack) = passthrough_setup();
    let proxy = sk.proxy_url();
    let out = curl(&[
        "--proxy",
        &proxy,
        "--cacert",
        pinned.ca_pem_path().to_str().unwrap(),
        "https://pinned.test/v1/audited",
    ]);
    assert_eq!(out.status, 200, "{out:?}");
    let a = audit_where(&sk, "the pinned.test tunnel", |r| {
        r["host"] == "pinned.test"
    });
    assert_eq!(a["method"], "CONNECT", "{a}");
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["auth_context"], "none", "{a}");
    assert!(a["credential"].is_null(), "{a}");
    assert_eq!(
        a["route"], "pinned",
        "the passthrough route matched the host, so the record names it (SPEC: route is null only when nothing matched): {a}"
    );
}

// ---------------------------------------------------------------------------------------
// Denied CONNECT
// ---------------------------------------------------------------------------------------

fn deny_setup() -> (Sidekey, SidekeyCa, TlsUpstream) {
    let up = TlsUpstream::start(&["slack.com", "denied.test", "blocked.test"]);
    let body = format!(
        "upstreams:\n  slack.com: {u}\n  denied.test: {u}\n  blocked.test: {u}\ncredentials:\n  slack-bot:\n    source: env\n    env: SLACK_BOT_TOKEN\nroutes:\n  - name: slack\n    match: {{host: slack.com}}\n    auth: claw\n    credential: slack-bot\n  - name: block\n    match: {{host: blocked.test}}\n    auth: deny\n",
        u = up.host_port()
    );
    let (sk, ca) = start(
        "deny",
        &[up.ca_pem_path()],
        &body,
        &[("SLACK_BOT_TOKEN", BOT)],
    );
    (sk, ca, up)
}

#[test]
fn curl_connect_to_denied_host_fails_with_403() {
    let (sk, ca, up) = deny_setup();
    let proxy = sk.proxy_url();
    for host in ["denied.test", "blocked.test"] {
        let out = curl(&[
            "--proxy",
            &proxy,
            "--cacert",
            ca.cert.to_str().unwrap(),
            &format!("https://{host}/x"),
        ]);
        assert_ne!(out.exit, 0, "{host}: {out:?}");
        assert_eq!(out.connect_status, 403, "{host}: {out:?}");
        assert!(
            out.stderr.contains("403"),
            "curl reports the refused CONNECT: {}",
            out.stderr
        );
    }
    assert_eq!(up.count(), 0);
    assert!(up.connections().is_empty(), "nothing may be dialled");
}

/// Issue 12: clients drop a refused CONNECT's body, so sidekey logs the refusal with
/// its reason (at the default log level).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connect_is_logged_with_its_reason() {
    let (sk, _ca, _up) = deny_setup();
    let reply = connect_raw(sk.proxy_addr, "denied.test:443", &[]).await;
    let body = assert_sidekey_error(&reply.resp(), 403, "route_denied");
    let rid = body["request_id"].as_str().unwrap().to_string();
    let mut line = None;
    wait_until(
        Duration::from_secs(20),
        "the refused CONNECT's log line",
        || {
            line = sk
                .stderr_text()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["request_id"] == rid.as_str() && v["message"] == "CONNECT refused");
            line.is_some()
        },
    );
    let v = line.expect("found above");
    assert_eq!(v["code"], "route_denied", "{v}");
    assert_eq!(v["host"], "denied.test", "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("denied.test")),
        "the reason names the host: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_connect_to_denied_host_gets_route_denied_error_and_audit() {
    let (sk, _ca, up) = deny_setup();
    for (host, route) in [("denied.test", None), ("blocked.test", Some("block"))] {
        let reply = connect_raw(sk.proxy_addr, &format!("{host}:443"), &[]).await;
        let resp = reply.resp();
        let body = assert_sidekey_error(&resp, 403, "route_denied");
        let rid = body["request_id"].as_str().unwrap().to_string();
        let a = sk.audit_for(&rid);
        assert_eq!(a["decision"], "deny", "{a}");
        assert_eq!(a["error"], "route_denied", "{a}");
        assert_eq!(a["host"], host, "{a}");
        assert_eq!(a["method"], "CONNECT", "{a}");
        assert_eq!(a["status"], 403, "{a}");
        assert!(a["upstream_ms"].is_null(), "{a}");
        if let Some(route) = route {
            assert_eq!(a["route"], route, "an `auth: deny` route is named: {a}");
        }
    }
    assert!(up.connections().is_empty(), "nothing may be dialled");
}

// ---------------------------------------------------------------------------------------
// CONNECT to sidekey itself
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_sidekeys_own_listeners_is_refused() {
    // `default: passthrough` would tunnel anything else: the refusal must not depend on
    // the policy.
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, unrelated_ca_pem()).unwrap();
    let (sk, _ca) = start("passthrough", &[&roots], "routes: []\n", &[]);
    let targets = [
        format!("127.0.0.1:{}", sk.admin_addr.port()),
        format!("localhost:{}", sk.admin_addr.port()),
        format!("127.0.0.1:{}", sk.proxy_addr.port()),
        format!("[::1]:{}", sk.admin_addr.port()),
    ];
    for target in &targets {
        let reply = connect_raw(sk.proxy_addr, target, &[]).await;
        let resp = reply.resp();
        assert_sidekey_error(&resp, 403, "egress_denied");
    }
    // curl sees the same refusal.
    let out = curl(&[
        "--proxy",
        &sk.proxy_url(),
        &format!("https://127.0.0.1:{}/metrics", sk.admin_addr.port()),
        "-k",
    ]);
    assert_eq!(out.connect_status, 403, "{out:?}");
    assert_ne!(out.exit, 0, "{out:?}");
}

// ---------------------------------------------------------------------------------------
// Bad upstream certificates
// ---------------------------------------------------------------------------------------

#[track_caller]
fn assert_certificate_error(resp: &Resp) {
    let body = assert_sidekey_error(resp, 502, "upstream_error");
    let msg = body["message"].as_str().unwrap().to_ascii_lowercase();
    assert!(
        msg.contains("certificate"),
        "the 502 must name the certificate problem: {body}"
    );
    assert!(!msg.contains(BOT), "{body}");
}

async fn post_in_tunnel(sk: &Sidekey, ca: &SidekeyCa) -> Resp {
    let tls = open_tunnel(
        sk.proxy_addr,
        "slack.com:443",
        &[],
        "slack.com",
        client_tls(&ca.cert, &["http/1.1"]),
    )
    .await;
    let req = tunnel_req(
        "POST",
        "/api/chat.postMessage",
        &[("host", "slack.com"), ("content-type", "application/json")],
        full(r#"{"channel":"C1","text":"x"}"#),
    );
    send_over(tls, false, vec![req]).await.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cert_from_untrusted_ca_is_502_upstream_error() {
    let up = TlsUpstream::start(&["slack.com"]);
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, unrelated_ca_pem()).unwrap();
    let (sk, ca) = start(
        "deny",
        &[&other],
        &slack_body(&up.host_port()),
        &[("SLACK_BOT_TOKEN", BOT)],
    );
    let resp = post_in_tunnel(&sk, &ca).await;
    assert_certificate_error(&resp);
    assert_eq!(
        up.count(),
        0,
        "no request may be sent over an unverified connection"
    );
    let rid = request_id(&resp);
    let a = sk.audit_for(&rid);
    assert_eq!(a["decision"], "error", "{a}");
    assert_eq!(a["error"], "upstream_error", "{a}");
    assert_eq!(a["status"], 502, "{a}");
    assert_eq!(a["scheme"], "https", "{a}");

    // A real client sees the same.
    let out = curl(&[
        "--proxy",
        &sk.proxy_url(),
        "--cacert",
        ca.cert.to_str().unwrap(),
        "-X",
        "POST",
        "https://slack.com/api/chat.postMessage",
    ]);
    assert_eq!(out.status, 502, "{out:?}");
    assert_eq!(
        out.header("x-sidekey-error").as_deref(),
        Some("upstream_error"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cert_signed_by_a_ca_other_than_the_trusted_one_is_502() {
    // The upstream's PEM file holds a CA that did not sign its leaf.
    let up = TlsUpstream::start_with_untrusted_cert(&["slack.com"]);
    let (sk, ca) = start(
        "deny",
        &[up.ca_pem_path()],
        &slack_body(&up.host_port()),
        &[("SLACK_BOT_TOKEN", BOT)],
    );
    let resp = post_in_tunnel(&sk, &ca).await;
    assert_certificate_error(&resp);
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cert_for_the_wrong_name_is_502_upstream_error() {
    // Trusted CA, but the leaf is for another name than the one sidekey verifies
    // (`slack.com`, kept through the `upstreams:` override).
    let up = TlsUpstream::start_for_wrong_name(&["not-slack.test"]);
    let (sk, ca) = start(
        "deny",
        &[up.ca_pem_path()],
        &slack_body(&up.host_port()),
        &[("SLACK_BOT_TOKEN", BOT)],
    );
    let resp = post_in_tunnel(&sk, &ca).await;
    assert_certificate_error(&resp);
    assert_eq!(up.count(), 0);
}

/// Issue 12: every request id sidekey hands out names an audit record. An intercepted
/// CONNECT is not a call (each inner request is audited under its own id), so its 200
/// carries no id; the inner response's id finds its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_connect_hands_out_no_request_id_without_a_record() {
    let up = TlsUpstream::start(&["slack.com"]);
    let (sk, ca) = start(
        "deny",
        &[up.ca_pem_path()],
        &slack_body(&up.host_port()),
        &[("SLACK_BOT_TOKEN", BOT)],
    );
    let reply = connect_raw(sk.proxy_addr, "slack.com:443", &[]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.headers);
    assert!(
        reply.headers.get("x-sidekey-request-id").is_none(),
        "the CONNECT 200 names no audit record, so it carries no id: {:?}",
        reply.headers
    );
    let tls = tls_connect(
        reply.stream,
        "slack.com",
        client_tls(&ca.cert, &["http/1.1"]),
    )
    .await
    .expect("TLS inside the tunnel");
    let req = tunnel_req(
        "POST",
        "/api/chat.postMessage",
        &[("host", "slack.com"), ("content-type", "application/json")],
        full(r#"{"channel":"C1","text":"x"}"#),
    );
    let resp = send_over(tls, false, vec![req]).await.remove(0);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let a = sk.audit_for(&request_id(&resp));
    assert_eq!(a["path"], "/api/chat.postMessage", "{a}");
    assert_eq!(a["method"], "POST", "{a}");
}

// ---------------------------------------------------------------------------------------
// SNI / Host must match the CONNECT
// ---------------------------------------------------------------------------------------

fn api_setup() -> (Sidekey, SidekeyCa, TlsUpstream) {
    let up = TlsUpstream::start(&["api.test", "other.test"]);
    let body = format!(
        "upstreams:\n  api.test: {u}\n  other.test: {u}\ncredentials:\n  c:\n    source: env\n    env: API_TOKEN\nroutes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: c\n  - name: other\n    match: {{host: other.test}}\n    auth: claw\n    credential: c\n",
        u = up.host_port()
    );
    let (sk, ca) = start("deny", &[up.ca_pem_path()], &body, &[("API_TOKEN", BOT)]);
    (sk, ca, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_host_differing_from_connect_is_400_http1() {
    let (sk, ca, up) = api_setup();
    let tls = open_tunnel(
        sk.proxy_addr,
        "api.test:443",
        &[],
        "api.test",
        client_tls(&ca.cert, &["http/1.1"]),
    )
    .await;
    assert!(!negotiated_h2(&tls));
    let resps = send_over(
        tls,
        false,
        vec![tunnel_req(
            "GET",
            "/v1/x",
            &[("host", "other.test")],
            empty(),
        )],
    )
    .await;
    assert_sidekey_error(&resps[0], 400, "bad_request");
    assert_eq!(
        up.count(),
        0,
        "the mismatched request must not be forwarded"
    );

    // Control: the same tunnel shape with the right Host works.
    let tls = open_tunnel(
        sk.proxy_addr,
        "api.test:443",
        &[],
        "api.test",
        client_tls(&ca.cert, &["http/1.1"]),
    )
    .await;
    let resps = send_over(
        tls,
        false,
        vec![tunnel_req(
            "GET",
            "/v1/ok",
            &[("host", "api.test")],
            empty(),
        )],
    )
    .await;
    assert_eq!(resps[0].status, 200, "{}", resps[0].text());
    let r = up.only();
    assert_eq!(r.path, "/v1/ok");
    assert_eq!(r.header_all("authorization"), vec![format!("Bearer {BOT}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_authority_differing_from_connect_is_400_http2() {
    let (sk, ca, up) = api_setup();
    let tls = open_tunnel(
        sk.proxy_addr,
        "api.test:443",
        &[],
        "api.test",
        client_tls(&ca.cert, &["h2"]),
    )
    .await;
    assert!(
        negotiated_h2(&tls),
        "sidekey must offer h2 inside the tunnel"
    );
    let resps = send_over(
        tls,
        true,
        vec![
            tunnel_req("GET", "https://other.test/v1/x", &[], empty()),
            tunnel_req("GET", "https://api.test/v1/ok", &[], empty()),
        ],
    )
    .await;
    assert_sidekey_error(&resps[0], 400, "bad_request");
    assert_eq!(resps[1].status, 200, "{}", resps[1].text());
    let r = up.only();
    assert_eq!(r.path, "/v1/ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_differing_from_connect_is_400() {
    let (sk, _ca, up) = api_setup();
    // The client names other.test in SNI inside a tunnel opened for api.test (it accepts
    // any certificate, to get past the handshake), and asks for api.test.
    let tls = open_tunnel(
        sk.proxy_addr,
        "api.test:443",
        &[],
        "other.test",
        client_tls_no_verify(&["http/1.1"]),
    )
    .await;
    let resps = send_over(
        tls,
        false,
        vec![tunnel_req("GET", "/v1/x", &[("host", "api.test")], empty())],
    )
    .await;
    assert_sidekey_error(&resps[0], 400, "bad_request");
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_leaf_is_for_the_connect_host_only() {
    // A client verifying other.test against sidekey's CA inside a tunnel for api.test
    // must fail: the minted leaf names exactly the CONNECT host.
    let (sk, ca, _up) = api_setup();
    let reply = connect_raw(sk.proxy_addr, "api.test:443", &[]).await;
    assert_eq!(reply.status, 200);
    let res = tls_connect(
        reply.stream,
        "other.test",
        client_tls(&ca.cert, &["http/1.1"]),
    )
    .await;
    let Err(err) = res else {
        panic!("the handshake must fail for another name");
    };
    assert!(
        err.to_string().to_ascii_lowercase().contains("certificate"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Identity on the CONNECT binds the tunnel
// ---------------------------------------------------------------------------------------

fn notion_setup() -> (Sidekey, SidekeyCa, TlsUpstream) {
    let up = TlsUpstream::start(&["notion.test"]);
    let body = format!(
        "upstreams:\n  notion.test: {u}\ncredentials:\n  notion-user:\n    source: file\n    file: creds/{{user}}.txt\nroutes:\n  - name: notion\n    match: {{host: notion.test}}\n    auth: assistant\n    credential: notion-user\n",
        u = up.host_port()
    );
    let (sk, ca) = start_with_files(
        "deny",
        &[up.ca_pem_path()],
        &body,
        &[],
        &[
            ("creds/alice.txt", "alice-tok-111\n"),
            ("creds/bob.txt", "bob-tok-222\n"),
        ],
    );
    (sk, ca, up)
}

#[test]
fn curl_identity_on_connect_selects_the_users_credential() {
    let (sk, ca, up) = notion_setup();
    let out = curl(&[
        "--proxy",
        &sk.proxy_url(),
        "--cacert",
        ca.cert.to_str().unwrap(),
        "--proxy-header",
        "x-sidekey-user: alice",
        "https://notion.test/v1/pages",
    ]);
    assert_eq!(out.exit, 0, "{out:?}");
    assert_eq!(out.status, 200, "{out:?}");
    let r = up.only();
    assert_eq!(r.header_all("authorization"), vec!["Bearer alice-tok-111"]);
    assert!(!r.has_header("x-sidekey-user"), "{:?}", r.headers);
    let a = audit_where(&sk, "alice's request", |r| r["path"] == "/v1/pages");
    assert_eq!(a["user"], "alice", "{a}");
    assert_eq!(a["auth_context"], "user_delegated", "{a}");
    assert_eq!(a["credential"], "notion-user", "{a}");
    assert_eq!(a["scheme"], "https", "{a}");
    assert!(!sk.stdout_text().contains("alice-tok-111"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_requests_inherit_connect_identity_and_cannot_switch_user() {
    let (sk, ca, up) = notion_setup();
    for h2 in [false, true] {
        let alpn: &[&str] = if h2 { &["h2"] } else { &["http/1.1"] };
        let tls = open_tunnel(
            sk.proxy_addr,
            "notion.test:443",
            &[("x-sidekey-user", "alice")],
            "notion.test",
            client_tls(&ca.cert, alpn),
        )
        .await;
        assert_eq!(negotiated_h2(&tls), h2);
        let uri = |p: &str| {
            if h2 {
                format!("https://notion.test{p}")
            } else {
                p.to_string()
            }
        };
        let host: &[(&str, &str)] = if h2 { &[] } else { &[("host", "notion.test")] };
        let with = |extra: (&'static str, &'static str)| {
            let mut v = host.to_vec();
            v.push(extra);
            v
        };
        let tag = if h2 { "h2" } else { "h1" };
        let resps = send_over(
            tls,
            h2,
            vec![
                tunnel_req("GET", &uri(&format!("/v1/inherit-{tag}")), host, empty()),
                tunnel_req(
                    "GET",
                    &uri(&format!("/v1/switch-{tag}")),
                    &with(("x-sidekey-user", "bob")),
                    empty(),
                ),
                tunnel_req(
                    "GET",
                    &uri(&format!("/v1/repeat-{tag}")),
                    &with(("x-sidekey-user", "alice")),
                    empty(),
                ),
            ],
        )
        .await;
        assert_eq!(resps[0].status, 200, "{tag}: {}", resps[0].text());
        assert_sidekey_error(&resps[1], 400, "bad_request");
        assert_eq!(
            resps[2].status,
            200,
            "{tag}: repeating the CONNECT identity is fine: {}",
            resps[2].text()
        );
    }
    let reqs = up.requests();
    assert_eq!(reqs.len(), 4, "{reqs:#?}");
    for r in &reqs {
        assert!(
            r.path.starts_with("/v1/inherit-") || r.path.starts_with("/v1/repeat-"),
            "bob's request must not be forwarded: {}",
            r.path
        );
        assert_eq!(
            r.header_all("authorization"),
            vec!["Bearer alice-tok-111"],
            "{}",
            r.path
        );
        assert!(!r.has_header("x-sidekey-user"), "{:?}", r.headers);
    }
    for r in sk.audit_records() {
        if r["path"].as_str().is_some_and(|p| p.starts_with("/v1/")) && r["decision"] == "allow" {
            assert_eq!(r["user"], "alice", "{r}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_without_identity_needs_it_per_request() {
    let (sk, ca, up) = notion_setup();
    let tls = open_tunnel(
        sk.proxy_addr,
        "notion.test:443",
        &[],
        "notion.test",
        client_tls(&ca.cert, &["http/1.1"]),
    )
    .await;
    let resps = send_over(
        tls,
        false,
        vec![
            tunnel_req("GET", "/v1/none", &[("host", "notion.test")], empty()),
            tunnel_req(
                "GET",
                "/v1/bob",
                &[("host", "notion.test"), ("x-sidekey-user", "bob")],
                empty(),
            ),
        ],
    )
    .await;
    assert_sidekey_error(&resps[0], 401, "identity_required");
    assert_eq!(resps[1].status, 200, "{}", resps[1].text());
    let r = up.only();
    assert_eq!(r.path, "/v1/bob");
    assert_eq!(r.header_all("authorization"), vec!["Bearer bob-tok-222"]);
}
