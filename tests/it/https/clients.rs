//! HTTPS interception end to end with real clients (SPEC "Ways in" 2, "Request
//! handling", "Audit record"): curl, httpx (HTTP/1.1 and HTTP/2), requests configured
//! by `sidekey ca env`, and the official Slack SDK, each going through sidekey's CONNECT
//! interception to a real TLS upstream reached via an `upstreams:` override, which keeps
//! the name `slack.com` for SNI and certificate checks.

use std::time::Duration;

use crate::support::*;
use serde_json::Value;

const BOT: &str = "xoxb-test-5150-bot-Qm7e";

/// A sidekey that intercepts slack.com (claw route for POST /api/chat.*) and reaches
/// the TLS upstream through `upstreams:`, trusting only the upstream's CA.
fn slack_setup() -> (Sidekey, SidekeyCa, TlsUpstream) {
    let up = TlsUpstream::start(&["slack.com"]);
    let dir = ConfigDir::new();
    let ca = SidekeyCa::init(dir.path());
    let yaml = format!(
        "{head}default: deny\n{tls}upstreams:\n  slack.com: {up}\ncredentials:\n  slack-bot:\n    source: env\n    env: SLACK_BOT_TOKEN\nroutes:\n  - name: slack-post\n    match: {{host: slack.com, path: \"/api/chat.*\", methods: [POST]}}\n    auth: claw\n    credential: slack-bot\n",
        head = yaml_head("https-clients-agent"),
        tls = ca.tls_yaml(&[up.ca_pem_path()]),
        up = up.host_port(),
    );
    let sk = Sidekey::start_in(dir, &yaml, &[("SLACK_BOT_TOKEN", BOT)]);
    (sk, ca, up)
}

fn cert(ca: &SidekeyCa) -> &str {
    ca.cert.to_str().unwrap()
}

/// The audit record for `path`, waiting for it.
#[track_caller]
fn audit_for_path(sk: &Sidekey, path: &str) -> Value {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(r) = sk.audit_records().into_iter().find(|r| r["path"] == path) {
            return r;
        }
        if t0.elapsed() > AUDIT_TIMEOUT {
            panic!(
                "no audit record for path {path}\n--- stdout ---\n{}",
                sk.stdout_text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The checks every intercepted chat.postMessage shares: what the upstream saw (bot
/// token, original name in SNI and Host/:authority) and the audit record.
#[track_caller]
fn assert_injected_post(sk: &Sidekey, up: &TlsUpstream, text: &str) -> Recorded {
    let r = up.only();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/chat.postMessage");
    assert_eq!(
        r.header_all("authorization"),
        vec![format!("Bearer {BOT}")],
        "upstream must see exactly sidekey's bot token: {:?}",
        r.headers
    );
    let host = r.header("host").or(r.header(":authority"));
    assert_eq!(
        host,
        Some("slack.com"),
        "upstream must be asked for the original name: {:?}",
        r.headers
    );
    let body: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "upstream body not JSON ({e}): {:?}",
            String::from_utf8_lossy(&r.body)
        )
    });
    assert_eq!(
        body["text"], text,
        "posted body reaches the upstream intact"
    );
    let tp = r.header("traceparent").unwrap_or_else(|| {
        panic!(
            "traceparent must be forwarded (created if absent): {:?}",
            r.headers
        )
    });
    assert!(is_traceparent(tp), "bad traceparent {tp:?}");
    for c in up.connections() {
        assert_eq!(
            c.sni.as_deref(),
            Some("slack.com"),
            "sidekey must send the original name as SNI: {c:?}"
        );
    }

    let a = audit_for_path(sk, "/api/chat.postMessage");
    assert_eq!(a["scheme"], "https", "{a}");
    assert_eq!(a["host"], "slack.com", "{a}");
    assert_eq!(a["method"], "POST", "{a}");
    assert_eq!(a["route"], "slack-post", "{a}");
    assert_eq!(a["credential"], "slack-bot", "{a}");
    assert_eq!(a["auth_context"], "system_service", "{a}");
    assert_eq!(a["decision"], "allow", "{a}");
    assert_eq!(a["status"], 200, "{a}");
    assert!(a["error"].is_null(), "{a}");
    assert_eq!(a["trace_id"], trace_id_of(tp), "{a}");
    assert!(
        !sk.stdout_text().contains(BOT) && !sk.stderr_text().contains(BOT),
        "the bot token must never be written to the audit or logs"
    );
    r
}

#[test]
fn curl_post_through_interception_gets_bot_token_and_upstream_body() {
    let (sk, ca, up) = slack_setup();
    let proxy = sk.proxy_url();
    let out = curl(&[
        "--proxy",
        &proxy,
        "--cacert",
        cert(&ca),
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        "authorization: Bearer client-supplied-should-vanish",
        "--data",
        r#"{"channel":"C1","text":"hello from curl"}"#,
        "https://slack.com/api/chat.postMessage",
    ]);
    assert_eq!(out.exit, 0, "curl failed: {out:?}");
    assert_eq!(out.connect_status, 200, "CONNECT reply: {out:?}");
    assert_eq!(out.status, 200, "{out:?}");
    let body = out.json();
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["channel"], "C1", "{body}");
    assert_eq!(
        body["message"]["text"], "hello from curl",
        "the client gets the upstream's own body: {body}"
    );
    let rid = out
        .header("x-sidekey-request-id")
        .unwrap_or_else(|| panic!("no x-sidekey-request-id: {}", out.headers));
    assert_injected_post(&sk, &up, "hello from curl");
    let a = audit_for_path(&sk, "/api/chat.postMessage");
    assert_eq!(a["request_id"], rid.as_str(), "{a}");
    let sent = r#"{"channel":"C1","text":"hello from curl"}"#.len();
    assert_eq!(a["bytes_in"], sent, "bytes_in counts the request body: {a}");
    assert_eq!(
        a["bytes_out"],
        out.body.len(),
        "bytes_out counts the response body: {a}"
    );
}

#[test]
fn httpx_http1_through_interception() {
    let (sk, ca, up) = slack_setup();
    let proxy = sk.proxy_url();
    let v = run_py_json(
        "httpx_request.py",
        &[
            "--proxy",
            &proxy,
            "--ca",
            cert(&ca),
            "--method",
            "POST",
            "--json",
            r#"{"channel":"C1","text":"hello from httpx/1.1"}"#,
            "https://slack.com/api/chat.postMessage",
        ],
        &[],
    );
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["http_version"], "HTTP/1.1", "{v}");
    assert_eq!(v["json"]["ok"], true, "{v}");
    assert_eq!(v["json"]["message"]["text"], "hello from httpx/1.1", "{v}");
    assert!(
        v["headers"]["x-sidekey-request-id"].is_string(),
        "every response carries x-sidekey-request-id: {v}"
    );
    assert_injected_post(&sk, &up, "hello from httpx/1.1");
}

#[test]
fn httpx_http2_through_interception_is_h2_on_both_sides() {
    let (sk, ca, up) = slack_setup();
    let proxy = sk.proxy_url();
    let v = run_py_json(
        "httpx_request.py",
        &[
            "--proxy",
            &proxy,
            "--ca",
            cert(&ca),
            "--http2",
            "--method",
            "POST",
            "--json",
            r#"{"channel":"C1","text":"hello from httpx/2"}"#,
            "https://slack.com/api/chat.postMessage",
        ],
        &[],
    );
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(
        v["http_version"], "HTTP/2",
        "sidekey must speak HTTP/2 to an h2 client inside the tunnel: {v}"
    );
    assert_eq!(v["json"]["message"]["text"], "hello from httpx/2", "{v}");
    let r = assert_injected_post(&sk, &up, "hello from httpx/2");
    assert_eq!(
        r.version, "HTTP/2.0",
        "sidekey must speak HTTP/2 to an upstream that offers h2"
    );
    assert!(
        up.connections()
            .iter()
            .all(|c| c.alpn.as_deref() == Some("h2")),
        "upstream ALPN: {:?}",
        up.connections()
    );
}

#[test]
fn requests_configured_by_ca_env_bundle_and_https_proxy() {
    let (sk, ca, up) = slack_setup();
    let bundle = ca.cert.parent().unwrap().join("trust-bundle.pem");
    let exported = ca.env(&bundle);
    let get = |name: &str| {
        exported
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("`sidekey ca env` does not export {name}: {exported:?}"))
    };
    let requests_bundle = get("REQUESTS_CA_BUNDLE");
    assert_eq!(requests_bundle, bundle.to_str().unwrap());
    for name in ["SSL_CERT_FILE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"] {
        assert_eq!(get(name), requests_bundle, "{name}");
    }
    let bundle_text = std::fs::read_to_string(&bundle).expect("bundle written");
    let ca_text = std::fs::read_to_string(&ca.cert).unwrap();
    assert!(
        bundle_text.contains(ca_text.trim()),
        "the bundle must contain sidekey's CA"
    );

    let proxy = sk.proxy_url();
    let v = run_py_json(
        "requests_request.py",
        &[
            "--method",
            "POST",
            "--json",
            r#"{"channel":"C1","text":"hello from requests"}"#,
            "https://slack.com/api/chat.postMessage",
        ],
        &[
            ("HTTPS_PROXY", proxy.as_str()),
            ("REQUESTS_CA_BUNDLE", requests_bundle.as_str()),
        ],
    );
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["json"]["ok"], true, "{v}");
    assert_eq!(v["json"]["message"]["text"], "hello from requests", "{v}");
    assert_injected_post(&sk, &up, "hello from requests");
}

#[test]
fn slack_sdk_without_token_posts_with_injected_bot_token() {
    let (sk, ca, up) = slack_setup();
    let proxy = sk.proxy_url();
    let v = run_py_json(
        "slack_post.py",
        &[
            "--proxy",
            &proxy,
            "--ca",
            cert(&ca),
            "--channel",
            "C1",
            "--text",
            "hi",
        ],
        &[],
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["channel"], "C1", "{v}");
    assert_eq!(v["text"], "hi", "the SDK sees the echoed text: {v}");
    let r = assert_injected_post(&sk, &up, "hi");
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["channel"], "C1", "{body}");
}

#[test]
fn httpx_gets_per_request_policy_inside_the_tunnel() {
    // The host is intercepted (a claw route matches some of its requests); a request the
    // routes do not allow is refused inside the tunnel, never forwarded.
    let (sk, ca, up) = slack_setup();
    let proxy = sk.proxy_url();
    let v = run_py_json(
        "httpx_request.py",
        &[
            "--proxy",
            &proxy,
            "--ca",
            cert(&ca),
            "https://slack.com/api/users.list",
        ],
        &[],
    );
    assert_eq!(v["status"], 403, "{v}");
    assert_eq!(v["headers"]["x-sidekey-error"], "route_denied", "{v}");
    assert_eq!(v["json"]["error"], "route_denied", "{v}");
    assert_eq!(
        v["json"]["request_id"], v["headers"]["x-sidekey-request-id"],
        "{v}"
    );
    assert_eq!(
        up.count(),
        0,
        "a denied request must not reach the upstream"
    );
    let a = audit_for_path(&sk, "/api/users.list");
    assert_eq!(a["decision"], "deny", "{a}");
    assert_eq!(a["error"], "route_denied", "{a}");
    assert_eq!(a["scheme"], "https", "{a}");
    assert_eq!(a["host"], "slack.com", "{a}");
}

#[test]
fn curl_to_a_literal_ip_route_is_intercepted_with_an_ip_certificate() {
    // SPEC "Egress safety": a route whose match.host is a literal IP is operator intent.
    // sidekey mints a leaf with an IP SAN and verifies the upstream for that IP.
    let up = TlsUpstream::start(&["ip-upstream.test"]);
    let dir = ConfigDir::new();
    let ca = SidekeyCa::init(dir.path());
    let yaml = format!(
        "{head}default: deny\n{tls}credentials:\n  c:\n    source: env\n    env: IP_TOKEN\nroutes:\n  - name: by-ip\n    match: {{host: 127.0.0.1}}\n    auth: claw\n    credential: c\n",
        head = yaml_head("https-clients-agent"),
        tls = ca.tls_yaml(&[up.ca_pem_path()]),
    );
    let sk = Sidekey::start_in(dir, &yaml, &[("IP_TOKEN", BOT)]);
    let out = curl(&[
        "--proxy",
        &sk.proxy_url(),
        "--cacert",
        cert(&ca),
        &format!("https://127.0.0.1:{}/v1/by-ip", up.port()),
    ]);
    assert_eq!(out.exit, 0, "{out:?}");
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.json()["path"], "/v1/by-ip", "{out:?}");
    let r = up.only();
    assert_eq!(r.header_all("authorization"), vec![format!("Bearer {BOT}")]);
    let a = audit_for_path(&sk, "/v1/by-ip");
    assert_eq!(a["host"], "127.0.0.1", "{a}");
    assert_eq!(a["route"], "by-ip", "{a}");
    assert_eq!(a["scheme"], "https", "{a}");
}
