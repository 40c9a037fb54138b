//! Trace export (SPEC "Trace export (OpenTelemetry)") against a real OTLP/HTTP receiver
//! (`tests/py/otlp_receiver.py`, decoding with the official `opentelemetry-proto`):
//! one server span per request, parented by the incoming `traceparent`, with the audit
//! record's trace id and the contract's attributes, and never a secret or a query.
//! A collector that is down or never answers costs requests nothing: they succeed,
//! and the spans it did not take are counted in `sidekey_telemetry_dropped_spans_total`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest;

use super::{TOKEN, assert_no_secret};
use crate::support::*;

const OTLP_KEY: &str = "otlp-key-for-devloop-3c9e";
const NOTION_TOKEN: &str = "notion-token-of-alice-81d2";
const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

fn config(endpoint: &str, otlp_extra: &str, up: &str) -> String {
    format!(
        "{head}default: deny\ntelemetry:\n  otlp:\n    endpoint: {endpoint}\n    headers: {{x-api-key: {{env: DEVLOOP_OTLP_KEY}}}}\n{otlp_extra}  service_name: devloop-traces\nupstreams:\n  api.example.test: {up}\n  notion.example.test: {up}\ncredentials:\n  api-key:\n    source: env\n    env: DEVLOOP_API_TOKEN\n  notion-user:\n    source: file\n    file: tokens/{{user}}\nroutes:\n  - name: example-api\n    match: {{host: api.example.test}}\n    auth: claw\n    credential: api-key\n  - name: notion\n    match: {{host: notion.example.test}}\n    auth: assistant\n    credential: notion-user\n",
        head = yaml_head("devloop-otlp-agent"),
    )
}

fn start(yaml: &str) -> Sidekey {
    let dir = ConfigDir::new();
    dir.write("tokens/alice", NOTION_TOKEN);
    Sidekey::start_in(
        dir,
        yaml,
        &[
            ("DEVLOOP_API_TOKEN", TOKEN),
            ("DEVLOOP_OTLP_KEY", OTLP_KEY),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
}

fn receiver(args: &[&str]) -> (LineProc, String) {
    let mut rx = LineProc::python(&py_script("otlp_receiver.py"), args);
    let addr = rx.next_json(Duration::from_secs(60))["listening"]
        .as_str()
        .expect("listening line")
        .to_string();
    (rx, addr)
}

async fn dropped(sk: &Sidekey) -> u64 {
    let m = http_get(sk.admin_addr, "/metrics").await.text();
    m.lines()
        .find_map(|l| l.strip_prefix("sidekey_telemetry_dropped_spans_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dropped-spans counter in\n{m}"))
}

async fn wait_dropped(sk: &Sidekey, at_least: u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let n = dropped(sk).await;
        if n >= at_least || t0.elapsed() > Duration::from_secs(60) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

fn sent_parent(up: &Upstream, path: &str) -> String {
    let r = up
        .requests()
        .into_iter()
        .find(|r| r.path == path)
        .unwrap_or_else(|| panic!("upstream never saw {path}"));
    let tp = r
        .header("traceparent")
        .expect("traceparent forwarded")
        .to_string();
    tp.split('-').nth(2).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_carry_the_audit_trace_the_callers_parent_and_the_attributes() {
    let (mut rx, addr) = receiver(&[]);
    let up = Upstream::start();
    let sk = start(&config(&format!("http://{addr}"), "", &up.host_port()));
    let p = sk.proxy_addr;
    let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let claw = proxy_get(
        p,
        "http://api.example.test/v1/claw?token=querysecret",
        &[("traceparent", &caller)],
    )
    .await;
    assert_eq!(claw.status, 200);
    let assistant = proxy_get(
        p,
        "http://notion.example.test/v1/pages",
        &[("x-sidekey-user", "alice")],
    )
    .await;
    assert_eq!(assistant.status, 200);
    let denied = proxy_get(p, "http://denied.example.test/nope?q=sekrit", &[]).await;
    assert_eq!(denied.status, 403);
    let unsampled = format!("00-{}-{CALLER_SPAN}-00", "1".repeat(32));
    let skipped = proxy_get(
        p,
        "http://api.example.test/unsampled",
        &[("traceparent", &unsampled)],
    )
    .await;
    assert_eq!(skipped.status, 200);
    assert_eq!(
        proxy_get(p, "http://api.example.test/last", &[])
            .await
            .status,
        200
    );

    // Spans arrive in batches, in order: once /last is in, every earlier one is too.
    let mut spans: HashMap<String, Value> = HashMap::new();
    while !spans.contains_key("/last") {
        let s = rx.next_json(Duration::from_secs(60));
        spans.insert(
            attr(&s, "url.path")
                .as_str()
                .unwrap_or_default()
                .to_string(),
            s,
        );
    }
    assert_eq!(
        spans.len(),
        4,
        "no span for the unsampled trace: {:?}",
        spans.keys()
    );
    let audit = |id: &str| sk.audit_for(id);
    let key_sha = format!("{:x}", sha2::Sha256::digest(OTLP_KEY.as_bytes()));
    for s in spans.values() {
        assert_eq!(s["path"], "/v1/traces");
        assert_eq!(s["content_type"], "application/x-protobuf");
        assert_eq!(
            s["api_key_sha256"],
            key_sha.as_str(),
            "the export header arrives"
        );
        assert_eq!(s["resource"]["service.name"], "devloop-traces");
        assert_eq!(s["scope"], "sidekey");
        assert_eq!(s["kind"], "SPAN_KIND_SERVER");
        assert!(s["start_ns"].as_u64().unwrap() > 0);
        assert!(s["start_ns"].as_u64() <= s["end_ns"].as_u64());
        let rec = audit(attr(s, "sidekey.request_id").as_str().unwrap());
        assert_eq!(
            s["trace_id"], rec["trace_id"],
            "the span's trace is the audit record's"
        );
        for (a, field) in [
            ("sidekey.auth_context", "auth_context"),
            ("sidekey.decision", "decision"),
            ("http.request.method", "method"),
            ("server.address", "host"),
            ("url.path", "path"),
            ("http.response.status_code", "status"),
        ] {
            assert_eq!(attr(s, a), &rec[field], "{a} vs audit {field}");
        }
        for (a, field) in [
            ("sidekey.route", "route"),
            ("sidekey.credential", "credential"),
            ("sidekey.error", "error"),
            ("enduser.id", "user"),
        ] {
            assert_eq!(
                attr(s, a),
                &rec[field],
                "{a} vs audit {field} (absent when null)"
            );
        }
    }

    let s = &spans["/v1/claw"];
    assert_eq!(s["trace_id"], CALLER_TRACE);
    assert_eq!(
        s["parent_span_id"], CALLER_SPAN,
        "parent = the incoming traceparent"
    );
    assert_eq!(s["name"], "GET example-api");
    assert_eq!(attr(s, "sidekey.auth_context"), "system_service");
    assert_eq!(attr(s, "sidekey.credential"), "api-key");
    assert_eq!(attr(s, "http.response.status_code"), 200);
    assert_eq!(s["status"], 0);
    assert_eq!(
        sent_parent(&up, "/v1/claw"),
        s["span_id"].as_str().unwrap(),
        "the upstream's parent is sidekey's span"
    );

    let s = &spans["/v1/pages"];
    assert_eq!(s["parent_span_id"], "", "sidekey started this trace");
    assert_eq!(s["name"], "GET notion");
    assert_eq!(attr(s, "enduser.id"), "alice");
    assert_eq!(attr(s, "sidekey.auth_context"), "user_delegated");
    assert_eq!(
        sent_parent(&up, "/v1/pages"),
        s["span_id"].as_str().unwrap()
    );

    let s = &spans["/nope"];
    assert_eq!(s["name"], "GET", "no route: the method alone");
    assert_eq!(attr(s, "sidekey.error"), "route_denied");
    assert_eq!(attr(s, "sidekey.decision"), "deny");
    assert_eq!(attr(s, "http.response.status_code"), 403);

    let all = serde_json::to_string(&spans).unwrap();
    assert_no_secret(
        &all,
        &[TOKEN, NOTION_TOKEN, OTLP_KEY, "querysecret", "sekrit", "?"],
    );
    assert_no_secret(&sk.stderr_text(), &[OTLP_KEY, TOKEN, NOTION_TOKEN]);
    assert_eq!(dropped(&sk).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_fails_no_request_and_drops_are_counted() {
    let up = Upstream::start();
    let endpoint = format!("http://127.0.0.1:{}", dead_port());
    let sk = start(&config(&endpoint, "    timeout: 2s\n", &up.host_port()));
    for i in 0..20 {
        let r = proxy_get(
            sk.proxy_addr,
            &format!("http://api.example.test/down/{i}"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "request {i} while the collector is down");
    }
    assert_eq!(up.count(), 20);
    assert!(
        wait_dropped(&sk, 20).await >= 20,
        "every undelivered span is counted"
    );
    assert_eq!(
        sk.wait_audit(20).len(),
        20,
        "the audit trail is complete regardless"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_holds_no_request_and_the_queue_is_bounded() {
    let (_rx, addr) = receiver(&["--blackhole"]);
    let up = Upstream::start();
    // An export may hang for 120 s, longer than any request in this test may take
    // (REQ_TIMEOUT): a request that waited for the exporter would fail the test.
    let mut sk = start(&config(
        &format!("http://{addr}"),
        "    timeout: 120s\n    queue_size: 4\n",
        &up.host_port(),
    ));
    for i in 0..20 {
        let r = proxy_get(
            sk.proxy_addr,
            &format!("http://api.example.test/hole/{i}"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "request {i} while the collector hangs");
    }
    assert!(
        wait_dropped(&sk, 16).await >= 16,
        "at most queue_size spans wait for the hanging collector; the rest are counted"
    );
    // Shutdown is not held hostage by the hanging export either.
    let st = sk.shutdown(Duration::from_secs(60));
    assert!(
        st.is_some_and(|s| s.success()),
        "clean exit despite the collector: {st:?}"
    );
}
