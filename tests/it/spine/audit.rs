//! Spine: the audit record (every field of SPEC "Audit record"), trace context, JSON
//! logs, the admin listener, and that no secret value ever reaches sidekey's output.

use std::time::Duration;

use crate::support::*;
use serde_json::Value;

const TOK: &str = "audit-tok-5e5e";

fn config(up: &Upstream, agent: &str, extra: &str) -> String {
    format!(
        "{}default: deny\n{extra}upstreams:\n  api.test: {up}\n  notion.test: {up}\ncredentials:\n  claw-cred:\n    source: env\n    env: TOK\n  user-cred:\n    source: file\n    file: creds/{{user}}.txt\nroutes:\n  - name: api-route\n    match: {{host: api.test}}\n    auth: claw\n    credential: claw-cred\n  - name: notion-route\n    match: {{host: notion.test}}\n    auth: assistant\n    credential: user-cred\n",
        yaml_head(agent),
        up = up.host_port()
    )
}

const FIELDS: &[&str] = &[
    "ts",
    "request_id",
    "trace_id",
    "agent",
    "user",
    "groups",
    "auth_context",
    "route",
    "credential",
    "decision",
    "error",
    "method",
    "scheme",
    "host",
    "path",
    "status",
    "upstream_ms",
    "total_ms",
    "bytes_in",
    "bytes_out",
];

#[track_caller]
fn assert_common(rec: &Value) {
    for f in FIELDS {
        assert!(rec.get(*f).is_some(), "audit record lacks `{f}`: {rec}");
    }
    let ts = rec["ts"]
        .as_str()
        .unwrap_or_else(|| panic!("ts not a string: {rec}"));
    assert!(is_rfc3339(ts), "ts is not RFC 3339: {ts}");
    let t =
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).unwrap();
    let skew = (time::OffsetDateTime::now_utc() - t).abs();
    assert!(skew < time::Duration::minutes(10), "ts {ts} is not now");
    let trace = rec["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("trace_id not a string: {rec}"));
    assert!(
        is_lower_hex(trace, 32),
        "trace_id not 32 lower-hex: {trace}"
    );
    assert!(
        rec["groups"].is_null() || rec["groups"] == serde_json::json!([]),
        "groups without JWT must be [] or null: {rec}"
    );
    assert!(rec["total_ms"].is_number(), "total_ms: {rec}");
    assert!(rec["bytes_in"].is_u64(), "bytes_in: {rec}");
    assert!(rec["bytes_out"].is_u64(), "bytes_out: {rec}");
    assert!(rec["status"].is_u64(), "status: {rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_record_for_allowed_claw_call() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, "audit-agent", ""), &[("TOK", TOK)]);
    let body = vec![b'z'; 123];
    let resp = proxy_request(
        sk.proxy_addr,
        "POST",
        "http://api.test/v1/items?secret_q=QUERYVALUE-9931",
        &[("x-sidekey-user", "alice")],
        full(body),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let rid = request_id(&resp);
    let traceparent = up.only().header("traceparent").map(str::to_string);
    let rec = sk.audit_for(&rid);
    assert_common(&rec);
    assert_eq!(rec["request_id"], rid.as_str());
    assert_eq!(rec["agent"], "audit-agent");
    assert_eq!(rec["user"], "alice", "trusted identity is recorded: {rec}");
    assert_eq!(rec["auth_context"], "system_service");
    assert_eq!(rec["route"], "api-route");
    assert_eq!(rec["credential"], "claw-cred");
    assert_eq!(rec["decision"], "allow");
    assert!(rec["error"].is_null(), "{rec}");
    assert_eq!(rec["method"], "POST");
    assert_eq!(rec["scheme"], "http");
    assert_eq!(rec["host"], "api.test");
    assert_eq!(rec["path"], "/v1/items", "path without query");
    assert_eq!(rec["status"], 200);
    let up_ms = rec["upstream_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("upstream_ms must be a number: {rec}"));
    let total_ms = rec["total_ms"].as_f64().unwrap();
    assert!(
        up_ms >= 0.0 && total_ms >= up_ms,
        "upstream_ms {up_ms} total_ms {total_ms}"
    );
    assert_eq!(
        rec["bytes_in"], 123,
        "bytes_in = request body bytes from the client: {rec}"
    );
    assert_eq!(
        rec["bytes_out"].as_u64(),
        Some(resp.body.len() as u64),
        "bytes_out = response body bytes to the client: {rec}"
    );
    if let Some(tp) = traceparent {
        assert_eq!(
            rec["trace_id"],
            trace_id_of(&tp),
            "audit trace_id = forwarded trace id"
        );
    }
    let out = sk.stdout_text();
    assert!(
        !out.contains("QUERYVALUE-9931") && !out.contains("secret_q"),
        "query string in audit: {out}"
    );
    assert!(!out.contains(TOK), "token in audit output");
    let all = sk.audit_records();
    assert_eq!(all.len(), 1, "one audit record per request: {all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_record_for_assistant_call() {
    let up = Upstream::start();
    let dir = ConfigDir::new();
    dir.write("creds/alice.txt", "alice-secret-77\n");
    let sk = Sidekey::start_in(dir, &config(&up, "audit-agent", ""), &[("TOK", TOK)]);
    let resp = proxy_get(
        sk.proxy_addr,
        "http://notion.test/v1/pages/abc",
        &[("x-sidekey-user", "alice")],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let rec = sk.audit_for(&request_id(&resp));
    assert_common(&rec);
    assert_eq!(rec["user"], "alice");
    assert_eq!(rec["auth_context"], "user_delegated");
    assert_eq!(rec["route"], "notion-route");
    assert_eq!(rec["credential"], "user-cred");
    assert_eq!(rec["decision"], "allow");
    assert_eq!(rec["method"], "GET");
    assert_eq!(rec["host"], "notion.test");
    assert_eq!(rec["path"], "/v1/pages/abc");
    assert_eq!(rec["bytes_in"], 0);
    assert!(!sk.stdout_text().contains("alice-secret-77"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_record_for_denied_call() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, "deny-agent", ""), &[("TOK", TOK)]);
    let resp = proxy_request(
        sk.proxy_addr,
        "DELETE",
        "http://unknown.test/v2/thing?token_q=QDENIED-4242",
        &[],
        empty(),
    )
    .await;
    let rid = request_id(&resp);
    assert_sidekey_error(&resp, 403, "route_denied");
    let rec = sk.audit_for(&rid);
    assert_common(&rec);
    assert_eq!(rec["agent"], "deny-agent");
    assert!(rec["user"].is_null(), "no identity was sent: {rec}");
    assert_eq!(rec["auth_context"], "none");
    assert!(
        rec["route"].is_null(),
        "route is null when nothing matched: {rec}"
    );
    assert!(rec["credential"].is_null(), "{rec}");
    assert_eq!(rec["decision"], "deny");
    assert_eq!(rec["error"], "route_denied");
    assert_eq!(rec["method"], "DELETE");
    assert_eq!(rec["scheme"], "http");
    assert_eq!(rec["host"], "unknown.test");
    assert_eq!(rec["path"], "/v2/thing");
    assert_eq!(rec["status"], 403);
    assert!(rec["upstream_ms"].is_null(), "nothing went upstream: {rec}");
    assert_eq!(rec["bytes_in"], 0);
    assert!(
        !sk.stdout_text().contains("QDENIED-4242"),
        "query string in audit"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_record_for_unmatched_origin_form_request_names_host_and_path() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\ncredentials:\n  c:\n    source: env\n    env: TOK\nroutes:\n  - name: gw\n    gateway: {{prefix: /slack, upstream: \"{}/api\"}}\n    auth: claw\n    credential: c\n",
        yaml_head("gw-audit-agent"),
        up.base_url()
    );
    let sk = Sidekey::start(&cfg, &[("TOK", TOK)]);
    let resp = gateway_request(
        sk.proxy_addr,
        "GET",
        "/nothing/here?q=GWQUERY-1",
        &[],
        empty(),
    )
    .await;
    assert_sidekey_error(&resp, 403, "route_denied");
    let rec = sk.audit_for(&request_id(&resp));
    assert_common(&rec);
    assert_eq!(rec["decision"], "deny");
    assert_eq!(
        rec["path"], "/nothing/here",
        "audit path of a request that matched nothing: {rec}"
    );
    assert_eq!(
        rec["host"], "127.0.0.1",
        "audit host (from Host, without port): {rec}"
    );
    assert!(!sk.stdout_text().contains("GWQUERY-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_record_for_identity_required_and_upstream_error() {
    let up = Upstream::start();
    let dead = dead_port();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  notion.test: {up}\n  down.test: 127.0.0.1:{dead}\ncredentials:\n  claw-cred:\n    source: env\n    env: TOK\n  user-cred:\n    source: file\n    file: creds/{{user}}.txt\nroutes:\n  - name: down-route\n    match: {{host: down.test}}\n    auth: claw\n    credential: claw-cred\n  - name: notion-route\n    match: {{host: notion.test}}\n    auth: assistant\n    credential: user-cred\n",
        yaml_head("err-agent"),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &[("TOK", TOK)]);
    let r1 = proxy_get(sk.proxy_addr, "http://notion.test/x", &[]).await;
    assert_sidekey_error(&r1, 401, "identity_required");
    let a1 = sk.audit_for(&request_id(&r1));
    assert_common(&a1);
    assert_eq!(a1["decision"], "deny");
    assert_eq!(a1["error"], "identity_required");
    assert_eq!(a1["route"], "notion-route");
    assert_eq!(a1["status"], 401);
    assert!(a1["upstream_ms"].is_null(), "{a1}");

    let r2 = proxy_get(
        sk.proxy_addr,
        "http://down.test/y",
        &[("x-sidekey-user", "bob")],
    )
    .await;
    assert_sidekey_error(&r2, 502, "upstream_error");
    let a2 = sk.audit_for(&request_id(&r2));
    assert_common(&a2);
    assert_eq!(a2["decision"], "error");
    assert_eq!(a2["error"], "upstream_error");
    assert_eq!(a2["route"], "down-route");
    assert_eq!(a2["credential"], "claw-cred");
    assert_eq!(a2["auth_context"], "system_service");
    assert_eq!(a2["user"], "bob");
    assert_eq!(a2["status"], 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_is_forwarded_or_created() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, "trace-agent", ""), &[("TOK", TOK)]);
    let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let with = proxy_get(
        sk.proxy_addr,
        "http://api.test/with",
        &[("traceparent", sent)],
    )
    .await;
    assert_eq!(with.status, 200);
    let without = proxy_get(sk.proxy_addr, "http://api.test/without", &[]).await;
    assert_eq!(without.status, 200);
    let reqs = up.wait_requests(2, REQ_TIMEOUT);

    let w = reqs.iter().find(|r| r.path == "/with").unwrap();
    let fwd = w.header_all("traceparent");
    assert_eq!(
        fwd.len(),
        1,
        "exactly one traceparent upstream: {:?}",
        w.headers
    );
    assert!(
        is_traceparent(fwd[0]),
        "bad forwarded traceparent {}",
        fwd[0]
    );
    assert_eq!(
        trace_id_of(fwd[0]),
        trace_id_of(sent),
        "trace id must be kept"
    );
    assert_eq!(
        sk.audit_for(&request_id(&with))["trace_id"],
        trace_id_of(sent)
    );

    let wo = reqs.iter().find(|r| r.path == "/without").unwrap();
    let created = wo
        .header("traceparent")
        .unwrap_or_else(|| panic!("no traceparent created: {:?}", wo.headers));
    assert!(
        is_traceparent(created),
        "created traceparent has a bad format: {created}"
    );
    assert_ne!(trace_id_of(created), trace_id_of(sent));
    assert_eq!(
        sk.audit_for(&request_id(&without))["trace_id"],
        trace_id_of(created)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_and_listening_line() {
    let up = Upstream::start();
    let mut sk = Sidekey::start(&config(&up, "log-agent", ""), &[("TOK", TOK)]);
    let v: Value = serde_json::from_str(&sk.listening_line).unwrap();
    assert_eq!(v["message"], "listening", "top-level message: {v}");
    assert_eq!(
        v["proxy"],
        sk.proxy_addr.to_string(),
        "top-level proxy: {v}"
    );
    assert_eq!(
        v["admin"],
        sk.admin_addr.to_string(),
        "top-level admin: {v}"
    );
    let r = proxy_get(sk.proxy_addr, "http://api.test/x", &[]).await;
    assert_eq!(r.status, 200);
    let d = proxy_get(sk.proxy_addr, "http://nope.test/x", &[]).await;
    assert_eq!(d.status, 403);
    sk.wait_audit(2);
    sk.shutdown(Duration::from_secs(25));
    for (name, text) in [("stderr", sk.stderr_text()), ("stdout", sk.stdout_text())] {
        for line in text.lines() {
            let parsed: Result<Value, _> = serde_json::from_str(line);
            assert!(
                parsed.as_ref().is_ok_and(|v| v.is_object()),
                "{name} line is not a JSON object: {line:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_serves_health_and_metrics_and_never_proxies() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, "admin-agent", ""), &[("TOK", TOK)]);
    let h = http_get(sk.admin_addr, "/healthz").await;
    assert_eq!(h.status, 200);
    let ok = proxy_get(
        sk.proxy_addr,
        "http://api.test/m",
        &[("x-sidekey-user", "alice-metrics-user")],
    )
    .await;
    assert_eq!(ok.status, 200);
    let no = proxy_get(sk.proxy_addr, "http://nope.test/m", &[]).await;
    assert_eq!(no.status, 403);
    sk.wait_audit(2);
    let m = http_get(sk.admin_addr, "/metrics").await;
    assert_eq!(m.status, 200);
    let text = m.text();
    let line = text
        .lines()
        .find(|l| l.starts_with("sidekey_requests_total{") && l.contains("route=\"api-route\""))
        .unwrap_or_else(|| panic!("no sidekey_requests_total for api-route:\n{text}"));
    assert!(
        line.contains("status_class=\"2xx\"") && line.contains("decision=\"allow\""),
        "{line}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("sidekey_requests_total{")
                && l.contains("decision=\"deny\"")
                && l.contains("status_class=\"4xx\"")),
        "no deny sample:\n{text}"
    );
    assert!(!text.contains("alice-metrics-user"), "user id in metrics");
    // The admin listener is not a proxy.
    let before = up.count();
    let via_admin = proxy_get(sk.admin_addr, "http://api.test/through-admin", &[]).await;
    assert_ne!(via_admin.status, 200, "admin listener proxied a request");
    assert_eq!(up.count(), before, "admin listener proxied a request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_output() {
    const CLAW: &str = "sk-claw-9f8e7d6c5b4a-LEAKCHECK";
    const BASIC: &str = "basic-7c7c7c-LEAKCHECK";
    const QUERY: &str = "qk-7a7a7a-LEAKCHECK";
    const HDR: &str = "xk-5150-LEAKCHECK";
    const ALICE: &str = "alice-ut-31337-LEAKCHECK";
    let up = Upstream::start();
    let dead = dead_port();
    let dir = ConfigDir::new();
    dir.write("creds/alice.txt", format!("{ALICE}\n"));
    let cfg = format!(
        "{head}default: deny\ntimeouts: {{upstream_response: 300ms}}\nupstreams:\n  claw.test: {up}\n  basic.test: {up}\n  query.test: {up}\n  hdr.test: {up}\n  user.test: {up}\n  down.test: 127.0.0.1:{dead}\ncredentials:\n  claw:\n    source: env\n    env: CLAW_T\n  basic:\n    source: env\n    env: BASIC_T\n  query:\n    source: env\n    env: QUERY_T\n  hdr:\n    source: env\n    env: HDR_T\n  per-user:\n    source: file\n    file: creds/{{user}}.txt\n    connect_url: https://connect.example.test/c?user={{user}}\nroutes:\n  - name: claw\n    match: {{host: claw.test}}\n    auth: claw\n    credential: claw\n  - name: basic\n    match: {{host: basic.test}}\n    auth: claw\n    credential: basic\n    inject: {{basic: {{username: bot}}}}\n  - name: query\n    match: {{host: query.test}}\n    auth: claw\n    credential: query\n    inject: {{query: api_key}}\n  - name: hdr\n    match: {{host: hdr.test}}\n    auth: claw\n    credential: hdr\n    inject: {{header: X-Api-Key, format: \"{{token}}\"}}\n  - name: user\n    match: {{host: user.test}}\n    auth: assistant\n    credential: per-user\n  - name: down\n    match: {{host: down.test}}\n    auth: claw\n    credential: claw\n",
        head = yaml_head("leak-agent"),
        up = up.host_port()
    );
    let mut sk = Sidekey::start_in(
        dir,
        &cfg,
        &[
            ("CLAW_T", CLAW),
            ("BASIC_T", BASIC),
            ("QUERY_T", QUERY),
            ("HDR_T", HDR),
            ("SIDEKEY_LOG", "debug"),
        ],
    );
    let p = sk.proxy_addr;
    let mut sidekey_errors = Vec::new();

    // The upstream echoes the injected Authorization back in its response body, so the
    // secret also travels through sidekey's response path.
    let r = proxy_get(p, "http://claw.test/echo-auth", &[]).await;
    assert_eq!(r.status, 200);
    let r = proxy_get(p, "http://basic.test/echo-auth", &[]).await;
    assert_eq!(r.status, 200);
    let r = proxy_get(p, "http://query.test/search?api_key=mine&q=1", &[]).await;
    assert_eq!(r.status, 200);
    let r = proxy_get(p, "http://hdr.test/x", &[]).await;
    assert_eq!(r.status, 200);
    let r = proxy_get(
        p,
        "http://user.test/echo-auth",
        &[("x-sidekey-user", "alice")],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = proxy_get(
        p,
        "http://user.test/echo-auth",
        &[("x-sidekey-user", "bob")],
    )
    .await;
    assert_sidekey_error(&r, 401, "credential_missing");
    sidekey_errors.push(r.text());
    let r = proxy_get(p, "http://down.test/x", &[]).await;
    assert_sidekey_error(&r, 502, "upstream_error");
    sidekey_errors.push(r.text());
    let r = proxy_get(p, "http://claw.test/slow?ms=5000", &[]).await;
    assert_sidekey_error(&r, 504, "upstream_timeout");
    sidekey_errors.push(r.text());
    let r = proxy_get(p, "http://query.test/status?code=401", &[]).await;
    assert_eq!(r.status, 401);
    let r = proxy_get(
        p,
        "http://nope.test/x",
        &[("authorization", "Bearer client-own")],
    )
    .await;
    assert_eq!(r.status, 403);

    // Injection really happened, so the absence below means something.
    let reqs = up.requests();
    let echo_auth = |host: &str| {
        reqs.iter()
            .find(|r| r.path == "/echo-auth" && r.header("host") == Some(host))
            .unwrap_or_else(|| panic!("no /echo-auth request for {host}: {reqs:#?}"))
            .header_all("authorization")
    };
    assert_eq!(echo_auth("claw.test"), vec![format!("Bearer {CLAW}")]);
    assert_eq!(
        echo_auth("basic.test"),
        vec![format!(
            "Basic {}",
            base64(format!("bot:{BASIC}").as_bytes())
        )]
    );
    assert_eq!(echo_auth("user.test"), vec![format!("Bearer {ALICE}")]);
    let q = reqs.iter().find(|r| r.path == "/search").unwrap();
    assert_eq!(q.query_all("api_key"), vec![QUERY.to_string()]);
    let h = reqs.iter().find(|r| r.path == "/x").unwrap();
    assert_eq!(h.header("x-api-key"), Some(HDR));

    sk.wait_audit(10);
    sk.shutdown(Duration::from_secs(25));
    let output = format!("{}\n{}", sk.stdout_text(), sk.stderr_text());
    let forms = [
        CLAW.to_string(),
        BASIC.to_string(),
        QUERY.to_string(),
        HDR.to_string(),
        ALICE.to_string(),
        base64(format!("bot:{BASIC}").as_bytes()),
        "LEAKCHECK".to_string(),
    ];
    for f in &forms {
        if let Some(line) = output.lines().find(|l| l.contains(f.as_str())) {
            panic!("secret {f:?} appears in sidekey's output:\n{line}");
        }
        for e in &sidekey_errors {
            assert!(!e.contains(f.as_str()), "secret {f:?} in error body {e}");
        }
    }
}
