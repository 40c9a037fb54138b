//! `inject: {aws_sigv4: ...}`: what the upstream received is handed to botocore's
//! SigV4 signer (tests/py/sigv4_verify.py), which recomputes the signature from the
//! received method, host, path, query, headers and body with the same keys.

use serde_json::{Value, json};

use super::{config, nonce, sweep};
use crate::support::{
    ConfigDir, Recorded, Sidekey, SidekeyCa, TlsUpstream, Upstream, base64, full,
    pattern_body_sized, proxy_request, run_py_json, yaml_head,
};

const REGION: &str = "us-east-1";
const SERVICE: &str = "bedrock";

struct Keys {
    id: String,
    secret: String,
    session: String,
}

/// botocore's verdict on one request `origin` (`http://api.test`) received.
fn botocore(dir: &ConfigDir, origin: &str, r: &Recorded, k: &Keys) -> Value {
    let url = match &r.query {
        Some(q) => format!("{origin}{}?{q}", r.path),
        None => format!("{origin}{}", r.path),
    };
    let req = json!({
        "method": r.method, "url": url, "headers": r.headers, "body_b64": base64(&r.body),
        "access_key_id": k.id, "secret_access_key": k.secret, "session_token": k.session,
        "region": REGION, "service": SERVICE,
    });
    let file = dir.write(&format!("req-{}.json", nonce()), req.to_string());
    let v = run_py_json("sigv4_verify.py", &[&file.to_string_lossy()], &[]);
    assert_eq!(
        v["received"], v["expected"],
        "botocore computes another signature: {v}"
    );
    assert_eq!(v["signed_headers"], v["expected_signed_headers"], "{v}");
    assert_eq!(v["credential"], v["expected_credential"], "{v}");
    assert_eq!(v["security_token_matches"], true, "{v}");
    v
}

fn keys() -> Keys {
    Keys {
        id: format!("AKIA{}", nonce().to_uppercase()),
        secret: format!("wJalrXUtnFEMI-{}", nonce()),
        session: format!("IQoJb3JpZ2luX2Vj-{}", nonce()),
    }
}

fn key_map(k: &Keys) -> String {
    json!({"access_key_id": k.id, "secret_access_key": k.secret, "session_token": k.session})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_signed_as_botocore_signs_them() {
    let keys = keys();
    let up = Upstream::start();
    let creds = "  bedrock:
    source: file
    file: aws.json
    inject: {aws_sigv4: {region: us-east-1, service: bedrock}}";
    let routes = "  - {name: bedrock, match: {host: api.test}, auth: claw, credential: bedrock}";
    let dir = ConfigDir::new();
    dir.write("aws.json", key_map(&keys));
    let yaml = config("", &up.host_port(), creds, routes) + "limits: {replay_body_bytes: 1024}\n";
    let sk = Sidekey::start_in(dir, &yaml, &[]);
    let invoke = "http://api.test/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke";
    let body = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[]}"#;
    let small = proxy_request(
        sk.proxy_addr,
        "POST",
        &format!("{invoke}?trace=ENABLED&guardrail=gr-1"),
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer client-supplied"),
            ("x-amz-date", "20000101T000000Z"),
            ("x-amz-security-token", "client-token"),
        ],
        full(body),
    )
    .await;
    assert_eq!(small.status, 200, "{}", small.text());
    let large = proxy_request(
        sk.proxy_addr,
        "POST",
        invoke,
        &[("content-type", "application/octet-stream")],
        pattern_body_sized(4096),
    )
    .await;
    assert_eq!(large.status, 200, "{}", large.text());
    let get = crate::support::proxy_get(
        sk.proxy_addr,
        "http://api.test/foundation-models?byProvider=anthropic",
        &[],
    )
    .await;
    assert_eq!(get.status, 200);

    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    let dir = &sk.dir;
    let v = botocore(dir, "http://api.test", &seen[0], &keys);
    assert_eq!(
        v["content_sha256"], v["body_sha256"],
        "the small body is hashed: {v}"
    );
    assert_eq!(seen[0].body, body.as_bytes());
    assert_eq!(seen[0].header_all("authorization").len(), 1);
    assert_ne!(seen[0].header("x-amz-date"), Some("20000101T000000Z"));
    let signed = v["signed_headers"].as_str().unwrap_or_default();
    for h in [
        "host",
        "content-type",
        "x-amz-content-sha256",
        "x-amz-date",
        "x-amz-security-token",
    ] {
        assert!(signed.split(';').any(|s| s == h), "{h} is signed: {signed}");
    }
    let v = botocore(dir, "http://api.test", &seen[1], &keys);
    assert_eq!(
        v["content_sha256"], "UNSIGNED-PAYLOAD",
        "a body over the limit streams: {v}"
    );
    assert_eq!(seen[1].body_len, 4096);
    assert!(seen[1].body_is_pattern);
    let v = botocore(dir, "http://api.test", &seen[2], &keys);
    assert_eq!(v["content_sha256"], v["body_sha256"], "{v}");
    assert_eq!(seen[2].query.as_deref(), Some("byProvider=anthropic"));

    sweep(&sk, &[keys.secret.clone(), keys.session.clone()]).await;
}

/// HTTPS interception with a real HTTP/2 client (httpx) and an HTTP/2 upstream: the
/// signature covers the host and path the upstream was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_http2_requests_are_signed_for_the_host_they_reach() {
    const HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";
    let keys = keys();
    let up = TlsUpstream::start(&[HOST]);
    let dir = ConfigDir::new();
    let ca = SidekeyCa::init(dir.path());
    dir.write("aws.json", key_map(&keys));
    let yaml = format!(
        "{head}default: deny\n{tls}upstreams:\n  {HOST}: {up}\ncredentials:\n  bedrock:\n    source: file\n    file: aws.json\nroutes:\n  - name: invoke\n    match: {{host: {HOST}, path: \"/model/*\", methods: [POST]}}\n    auth: claw\n    credential: bedrock\n    inject: {{aws_sigv4: {{region: us-east-1, service: bedrock}}}}\n",
        head = yaml_head("sigv4-https"),
        tls = ca.tls_yaml(&[up.ca_pem_path()]),
        up = up.host_port(),
    );
    let sk = Sidekey::start_in(dir, &yaml, &[]);
    let proxy = sk.proxy_url();
    let cert = ca.cert.to_string_lossy().into_owned();
    let url = format!("https://{HOST}/model/amazon.titan-text-lite-v1/invoke?trace=ENABLED");
    let args = [
        "--proxy",
        &proxy,
        "--ca",
        &cert,
        "--http2",
        "--method",
        "POST",
        "--json",
        r#"{"inputText":"hello"}"#,
        &url,
    ];
    // A blocking client run; the upstream and sidekey run on their own threads.
    let v = tokio::task::block_in_place(|| run_py_json("httpx_request.py", &args, &[]));
    assert_eq!(v["status"], 200, "{v}");
    let r = up.only();
    assert_eq!(r.version, "HTTP/2.0", "h2 on the upstream side too");
    let v = botocore(&sk.dir, &format!("https://{HOST}"), &r, &keys);
    assert_eq!(v["content_sha256"], v["body_sha256"], "{v}");
    sweep(&sk, &[keys.secret.clone(), keys.session.clone()]).await;
}
