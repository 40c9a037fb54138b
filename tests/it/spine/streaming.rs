//! Spine: bodies stream through sidekey with exact byte counts in both directions and
//! without being buffered whole, and upstream failures map to 502/504
//! (SPEC "Ways in", "Errors sidekey itself returns", "Lifecycle" timeouts).

use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;

const TOK: &str = "stream-tok-4411";
const BIG: u64 = 50 * 1024 * 1024;

fn config(up: &Upstream, extra: &str) -> String {
    format!(
        "{}default: deny\n{extra}upstreams:\n  api.test: {up}\ncredentials:\n  c:\n    source: env\n    env: TOK\nroutes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: c\n",
        yaml_head("stream-agent"),
        up = up.host_port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_50mb_chunked_arrives_exactly() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, ""), &[("TOK", TOK)]);
    let resp = proxy_request(
        sk.proxy_addr,
        "POST",
        "http://api.test/upload",
        &[("content-type", "application/octet-stream")],
        pattern_body(BIG),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let r = up.only();
    assert_eq!(r.body_len, BIG, "upstream received a different byte count");
    assert!(r.body_is_pattern, "upload bytes were altered");
    assert_eq!(r.header_all("authorization"), vec![format!("Bearer {TOK}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_50mb_with_content_length_arrives_exactly() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, ""), &[("TOK", TOK)]);
    let len = BIG.to_string();
    let resp = proxy_request(
        sk.proxy_addr,
        "PUT",
        "http://api.test/upload-cl",
        &[("content-length", len.as_str())],
        pattern_body_sized(BIG),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let r = up.only();
    assert_eq!(r.body_len, BIG);
    assert!(r.body_is_pattern, "upload bytes were altered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_50mb_arrives_exactly() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, ""), &[("TOK", TOK)]);
    let resp = proxy_stream(
        sk.proxy_addr,
        "GET",
        &format!("http://api.test/download?bytes={BIG}"),
        &[],
        empty(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-sidekey-request-id"));
    let (n, ok) = count_pattern(resp.into_body(), Duration::from_secs(120)).await;
    assert_eq!(n, BIG, "client received a different byte count");
    assert!(ok, "download bytes were altered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_streams_before_upstream_finishes() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, ""), &[("TOK", TOK)]);
    let resp = proxy_stream(
        sk.proxy_addr,
        "GET",
        "http://api.test/gated/events",
        &[("accept", "text/event-stream")],
        empty(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // The upstream holds the rest of the stream until we release it: the first event
    // can only arrive now if sidekey forwards without buffering the whole response.
    let first = next_data(&mut body, Duration::from_secs(15))
        .await
        .expect("first event");
    assert!(
        String::from_utf8_lossy(&first).starts_with("data: first"),
        "first chunk: {first:?}"
    );
    up.release_gate();
    let mut rest = Vec::new();
    while let Some(d) = next_data(&mut body, Duration::from_secs(15)).await {
        rest.extend_from_slice(&d);
    }
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(all, "data: first\n\ndata: second\n\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_streams_before_client_finishes() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, ""), &[("TOK", TOK)]);
    let (tx, body) = channel_body();
    let addr = sk.proxy_addr;
    let call = tokio::spawn(async move {
        proxy_request(addr, "POST", "http://api.test/ingest", &[], body).await
    });
    tx.send(Bytes::from(vec![b'a'; 1000])).await.unwrap();
    // The client has not finished its body; the upstream must already see bytes.
    let t0 = Instant::now();
    while up.live_body_bytes() < 1000 {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "upstream saw {} bytes of a request body still being sent: sidekey buffers uploads",
            up.live_body_bytes()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(Bytes::from(vec![b'b'; 500])).await.unwrap();
    drop(tx);
    let resp = call.await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    let r = up.only();
    assert_eq!(r.body_len, 1500);
    assert_eq!(&r.body[..1000], &[b'a'; 1000][..]);
    assert_eq!(&r.body[1000..], &[b'b'; 500][..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_upstream_error() {
    let dead = dead_port();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  down.test: 127.0.0.1:{dead}\ncredentials:\n  c:\n    source: env\n    env: TOK\nroutes:\n  - name: down\n    match: {{host: down.test}}\n    auth: claw\n    credential: c\n",
        yaml_head("stream-agent")
    );
    let sk = Sidekey::start(&cfg, &[("TOK", TOK)]);
    let resp = proxy_get(sk.proxy_addr, "http://down.test/x", &[]).await;
    let body = assert_sidekey_error(&resp, 502, "upstream_error");
    assert!(
        !body.to_string().contains(TOK),
        "error body leaks the token: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_times_out_504() {
    let up = Upstream::start();
    let sk = Sidekey::start(
        &config(&up, "timeouts: {upstream_response: 300ms}\n"),
        &[("TOK", TOK)],
    );
    let t0 = Instant::now();
    let resp = proxy_get(sk.proxy_addr, "http://api.test/slow?ms=20000", &[]).await;
    let took = t0.elapsed();
    assert_sidekey_error(&resp, 504, "upstream_timeout");
    assert!(
        took < Duration::from_secs(10),
        "timeout of 300ms took {took:?}"
    );
    // A fast answer on the same config is not affected.
    let ok = proxy_get(sk.proxy_addr, "http://api.test/slow?ms=1", &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_upload_with_expect_continue_arrives_exactly() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, ""), &[("TOK", TOK)]);
    let file = sk.dir.write("upload.bin", pattern_chunk(0, 3_000_000));
    let addr = sk.proxy_addr;
    let (code, headers, body) = tokio::task::spawn_blocking(move || {
        curl_via_proxy(
            addr,
            &[
                "-T",
                file.to_str().unwrap(),
                "-H",
                "Expect: 100-continue",
                "http://api.test/put-file",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        code,
        200,
        "headers:\n{headers}\nbody: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("x-sidekey-request-id"),
        "{headers}"
    );
    let r = up.only();
    assert_eq!(r.method, "PUT");
    assert_eq!(r.body_len, 3_000_000);
    assert!(r.body_is_pattern);
    assert_eq!(r.header_all("authorization"), vec![format!("Bearer {TOK}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_over_h2c_prior_knowledge() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\ncredentials:\n  c:\n    source: env\n    env: TOK\nroutes:\n  - name: gw\n    gateway: {{prefix: /svc, upstream: \"{}/base\"}}\n    auth: claw\n    credential: c\n",
        yaml_head("h2-agent"),
        up.base_url()
    );
    let sk = Sidekey::start(&cfg, &[("TOK", TOK)]);
    let resp = h2c_request(
        sk.proxy_addr,
        "POST",
        "/svc/items?x=1",
        &[],
        pattern_body(200_000),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    request_id(&resp);
    let r = up.only();
    assert_eq!(r.path, "/base/items");
    assert_eq!(r.query.as_deref(), Some("x=1"));
    assert_eq!(r.body_len, 200_000);
    assert!(r.body_is_pattern);
    assert_eq!(r.header_all("authorization"), vec![format!("Bearer {TOK}")]);
}
