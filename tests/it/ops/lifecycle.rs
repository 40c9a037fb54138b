//! Operations: the lifecycle as an operator (and the kubelet) sees it. Reload by SIGHUP
//! and by a Kubernetes ConfigMap symlink swap while a stream is in flight; SIGTERM drains
//! long streams, refuses new connections, turns `/readyz` 503 and exits 0; a stream
//! that never ends is cut after `shutdown_grace`; `timeouts` and `limits` hold
//! (SPEC "Lifecycle", "Admin listener").

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::prom;
use crate::support::*;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOK_V1: &str = "ops-reload-tok-v1";
const TOK_V2: &str = "ops-reload-tok-v2";
const TOK: &str = "ops-life-tok-5151";

/// Generous bound for anything the tests wait on.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------
// helpers

/// Writes `contents` to `dir/name` the way editors and config tools do it safely:
/// a temp file renamed over the target, so sidekey never reads a half-written file.
fn atomic_write(dir: &Path, name: &str, contents: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// `GET path` on a fresh connection, without panicking: the status, or why there was none.
async fn try_get(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&buf);
        text.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("no HTTP status in {text:?}"))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| Err("no answer within 5s".into()))
}

/// Polls a new TCP connect to `addr` until it is refused; panics after `timeout`.
async fn wait_connect_refused(addr: SocketAddr, timeout: Duration) {
    let t0 = Instant::now();
    loop {
        let c = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await;
        match c {
            Ok(Err(_)) => return,
            Ok(Ok(s)) => drop(s),
            Err(_) => {}
        }
        assert!(
            t0.elapsed() < timeout,
            "the proxy listener still accepted TCP connections {timeout:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The value of `sidekey_config_reloads_total{result}`.
async fn reloads(sk: &Sidekey, result: &str) -> f64 {
    let m = prom::parse(&http_get(sk.admin_addr, "/metrics").await.text());
    m.value("sidekey_config_reloads_total", &[("result", result)])
}

async fn wait_reloads(sk: &Sidekey, result: &str, at_least: f64) {
    let t0 = Instant::now();
    loop {
        let v = reloads(sk, result).await;
        if v >= at_least {
            return;
        }
        assert!(
            t0.elapsed() < WAIT,
            "sidekey_config_reloads_total{{result={result:?}}} stayed at {v}, expected >= {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `GET http://gated.test/probe-N` until its audit record names `route`; returns
/// the upstream path of that request.
async fn wait_route(sk: &Sidekey, route: &str, n: &mut u32) -> String {
    let t0 = Instant::now();
    loop {
        *n += 1;
        let path = format!("/probe-{n}");
        let r = proxy_get(sk.proxy_addr, &format!("http://gated.test{path}"), &[]).await;
        assert_eq!(r.status, 200, "probe {path}: {}", r.text());
        let rec = sk.audit_for(&request_id(&r));
        if rec["route"] == route {
            return path;
        }
        assert!(
            t0.elapsed() < WAIT,
            "route {route} not active within {WAIT:?}; last audit record {rec}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `authorization` header the upstream saw on `path`.
fn upstream_auth(up: &Upstream, path: &str) -> Option<String> {
    up.requests()
        .into_iter()
        .find(|r| r.path == path)
        .and_then(|r| r.header("authorization").map(str::to_string))
}

/// Opens `GET http://gated.test/gated` through the proxy and reads its first event.
async fn open_gated(proxy: SocketAddr) -> (String, Incoming) {
    let resp = proxy_stream(proxy, "GET", "http://gated.test/gated", &[], empty()).await;
    assert_eq!(resp.status(), 200, "gated stream status");
    let rid = resp
        .headers()
        .get("x-sidekey-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-sidekey-request-id on the stream")
        .to_string();
    let mut body = resp.into_body();
    let first = next_data(&mut body, REQ_TIMEOUT).await;
    assert_eq!(
        first.as_deref(),
        Some(&b"data: first\n\n"[..]),
        "first SSE event"
    );
    (rid, body)
}

/// Reads the rest of a gated stream after the gate opened: the second event, then the end.
async fn finish_gated(body: &mut Incoming) {
    let second = next_data(body, REQ_TIMEOUT).await;
    assert_eq!(
        second.as_deref(),
        Some(&b"data: second\n\n"[..]),
        "second SSE event of the in-flight stream"
    );
    let end = tokio::time::timeout(REQ_TIMEOUT, async {
        while let Some(f) = body.frame().await {
            let f = f.expect("stream ended with an error instead of cleanly");
            if let Ok(d) = f.into_data() {
                assert!(
                    d.is_empty(),
                    "unexpected data after the second event: {d:?}"
                );
            }
        }
    })
    .await;
    assert!(end.is_ok(), "stream did not end after its last event");
}

fn gated_config(up: &Upstream, extra: &str) -> String {
    format!(
        "{head}default: deny\n{extra}upstreams:\n  gated.test: {up}\n  dl.test: {up}\n  api.test: {up}\ncredentials:\n  c:\n    source: env\n    env: TOK\nroutes:\n  - name: gated-route\n    match: {{host: gated.test}}\n    auth: claw\n    credential: c\n  - name: dl-route\n    match: {{host: dl.test}}\n    auth: claw\n    credential: c\n  - name: api-route\n    match: {{host: api.test}}\n    auth: claw\n    credential: c\n",
        head = yaml_head("ops-life-agent"),
        up = up.host_port()
    )
}

/// v1 and v2 differ in route name, credential name and token, so an audit record and
/// the upstream's `Authorization` tell which config served a request.
fn versioned_config(up: &Upstream, v: &str) -> String {
    format!(
        "{head}default: deny\nupstreams:\n  gated.test: {up}\ncredentials:\n  cred-{v}:\n    source: env\n    env: TOK_{V}\nroutes:\n  - name: route-{v}\n    match: {{host: gated.test}}\n    auth: claw\n    credential: cred-{v}\n",
        head = yaml_head("ops-reload-agent"),
        up = up.host_port(),
        V = v.to_uppercase()
    )
}

const INVALID: &str =
    "version: 1\nagent: broken\nroutes:\n  - name: x\n    match: {host: [not, a, host\n";

// ---------------------------------------------------------------------------------
// reload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_valid_and_invalid_while_a_stream_is_in_flight() {
    let up = Upstream::start();
    let sk = Sidekey::start(
        &versioned_config(&up, "v1"),
        &[("TOK_V1", TOK_V1), ("TOK_V2", TOK_V2)],
    );
    let dir = sk.dir.path().to_path_buf();
    let mut n = 0;
    let mut conn = ProxyConn::open(sk.proxy_addr).await;
    let r = conn
        .request("GET", "http://gated.test/keep-1", &[], empty())
        .await;
    assert_eq!(r.status, 200);

    // A stream starts on v1 and stays open across both reloads.
    let (stream_rid, mut stream) = open_gated(sk.proxy_addr).await;

    // Invalid file + SIGHUP: rejected with a log line and a counted error; v1 serves on.
    atomic_write(&dir, CONFIG_NAME, INVALID);
    sk.signal("HUP");
    wait_reloads(&sk, "error", 1.0).await;
    let logged = sk.stderr_text().lines().any(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        v["level"] == "ERROR"
            && v["message"].as_str().is_some_and(|m| m.contains("reload"))
            && l.contains(CONFIG_NAME)
    });
    assert!(
        logged,
        "no ERROR log line naming the rejected reload and the file:\n{}",
        sk.stderr_text()
    );
    let p = wait_route(&sk, "route-v1", &mut n).await;
    assert_eq!(
        upstream_auth(&up, &p).as_deref(),
        Some(&*format!("Bearer {TOK_V1}")),
        "old config must keep serving after an invalid reload"
    );
    assert_eq!(
        reloads(&sk, "success").await,
        0.0,
        "an invalid file is not a success"
    );

    // Valid v2 + SIGHUP: new requests use v2.
    atomic_write(&dir, CONFIG_NAME, &versioned_config(&up, "v2"));
    sk.signal("HUP");
    let p = wait_route(&sk, "route-v2", &mut n).await;
    assert_eq!(
        upstream_auth(&up, &p).as_deref(),
        Some(&*format!("Bearer {TOK_V2}")),
        "new requests after the reload inject the new config's credential"
    );
    wait_reloads(&sk, "success", 1.0).await;
    let rec = sk.audit_for(&request_id(
        &proxy_get(sk.proxy_addr, "http://gated.test/after", &[]).await,
    ));
    assert_eq!(rec["credential"], "cred-v2", "{rec}");

    // The kept-alive connection survived both reloads.
    let r = conn
        .request("GET", "http://gated.test/keep-2", &[], empty())
        .await;
    assert_eq!(r.status, 200, "kept-alive connection across reloads");

    // The in-flight stream finishes, on the config it started with.
    up.release_gate();
    finish_gated(&mut stream).await;
    assert_eq!(
        upstream_auth(&up, "/gated").as_deref(),
        Some(&*format!("Bearer {TOK_V1}")),
        "the in-flight stream was sent with v1's credential"
    );
    let rec = sk.audit_for(&stream_rid);
    assert_eq!(
        rec["route"], "route-v1",
        "in-flight request audited on its own route: {rec}"
    );
    assert_eq!(rec["credential"], "cred-v1", "{rec}");
    assert_eq!(rec["status"], 200, "{rec}");
    assert_eq!(
        rec["bytes_out"],
        "data: first\n\ndata: second\n\n".len(),
        "whole stream delivered: {rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_is_picked_up_without_a_signal() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        let up = Upstream::start();
        // The kubelet's layout for a ConfigMap volume:
        //   sidekey.yaml -> ..data/sidekey.yaml, ..data -> ..2026_v1
        let dir = ConfigDir::new();
        let root = dir.path().to_path_buf();
        std::fs::create_dir(root.join("..2026_v1")).unwrap();
        std::fs::create_dir(root.join("..2026_v2")).unwrap();
        std::fs::write(
            root.join("..2026_v1").join(CONFIG_NAME),
            versioned_config(&up, "v1"),
        )
        .unwrap();
        std::fs::write(
            root.join("..2026_v2").join(CONFIG_NAME),
            versioned_config(&up, "v2"),
        )
        .unwrap();
        symlink("..2026_v1", root.join("..data")).unwrap();
        symlink(format!("..data/{CONFIG_NAME}"), root.join(CONFIG_NAME)).unwrap();
        // start_in writes the same v1 text through the symlink.
        let sk = Sidekey::start_in(
            dir,
            &versioned_config(&up, "v1"),
            &[("TOK_V1", TOK_V1), ("TOK_V2", TOK_V2)],
        );
        assert!(
            std::fs::symlink_metadata(root.join(CONFIG_NAME))
                .unwrap()
                .file_type()
                .is_symlink(),
            "the config path must still be a symlink"
        );
        let mut n = 0;
        let p = wait_route(&sk, "route-v1", &mut n).await;
        assert_eq!(
            upstream_auth(&up, &p).as_deref(),
            Some(&*format!("Bearer {TOK_V1}"))
        );

        // The kubelet's atomic update: a new ..data symlink renamed over the old one,
        // then the old timestamped dir removed. No inode of sidekey.yaml changes.
        symlink("..2026_v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        std::fs::remove_dir_all(root.join("..2026_v1")).unwrap();

        let p = wait_route(&sk, "route-v2", &mut n).await;
        assert_eq!(
            upstream_auth(&up, &p).as_deref(),
            Some(&*format!("Bearer {TOK_V2}")),
            "after the ..data swap new requests use the new ConfigMap content"
        );
        wait_reloads(&sk, "success", 1.0).await;
        assert_eq!(
            reloads(&sk, "error").await,
            0.0,
            "an atomic swap must never be read as a broken file"
        );
    }
}

// ---------------------------------------------------------------------------------
// shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_long_streams_refuses_new_connections_and_exits_zero() {
    const DL: u64 = 8 * 1024 * 1024;
    let up = Upstream::start();
    let mut sk = Sidekey::start(&gated_config(&up, ""), &[("TOK", TOK)]);
    let proxy = sk.proxy_addr;

    // Two long responses in flight: an SSE stream held by the upstream, and a large
    // download the client reads only partly before SIGTERM (back-pressure holds it).
    let (sse_rid, mut sse) = open_gated(proxy).await;
    let dl = proxy_stream(
        proxy,
        "GET",
        &format!("http://dl.test/download?bytes={DL}"),
        &[],
        empty(),
    )
    .await;
    assert_eq!(dl.status(), 200);
    let dl_rid = dl.headers()["x-sidekey-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut dl_body = dl.into_body();
    let first = next_data(&mut dl_body, REQ_TIMEOUT)
        .await
        .expect("first download chunk");
    let mut got = first.len() as u64;
    let mut pattern_ok = pattern_matches(0, &first);

    sk.signal("TERM");
    let t_term = Instant::now();

    // New connections are refused while the streams are still draining.
    wait_connect_refused(proxy, WAIT).await;
    assert!(
        sk.wait_exit(Duration::ZERO).is_none(),
        "sidekey exited with two responses still in flight"
    );

    // The download completes, every byte in order.
    let rest = tokio::time::timeout(REQ_TIMEOUT, async {
        while let Some(f) = dl_body.frame().await {
            let f = f.expect("download broken during the drain");
            if let Ok(d) = f.into_data() {
                pattern_ok &= pattern_matches(got, &d);
                got += d.len() as u64;
            }
        }
    })
    .await;
    assert!(rest.is_ok(), "download did not finish during the drain");
    assert_eq!(got, DL, "download truncated by SIGTERM");
    assert!(pattern_ok, "download bytes corrupted");

    // The SSE stream too, once its upstream sends the last event.
    up.release_gate();
    finish_gated(&mut sse).await;

    let st = tokio::task::block_in_place(|| sk.wait_exit(Duration::from_secs(30)))
        .expect("sidekey did not exit within 30s after its streams finished");
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st}");
    assert!(
        t_term.elapsed() < Duration::from_secs(15),
        "with every request finished, sidekey must not wait out the 20s default grace \
         (exited {:?} after SIGTERM)",
        t_term.elapsed()
    );
    let recs = sk.audit_records();
    for (rid, bytes) in [
        (&sse_rid, "data: first\n\ndata: second\n\n".len() as u64),
        (&dl_rid, DL),
    ] {
        let rec = recs
            .iter()
            .find(|r| r["request_id"] == rid.as_str())
            .unwrap_or_else(|| {
                panic!(
                    "no audit record for drained request {rid}:\n{}",
                    sk.stdout_text()
                )
            });
        assert_eq!(rec["status"], 200, "{rec}");
        assert_eq!(rec["bytes_out"], bytes, "{rec}");
        assert!(rec["error"].is_null(), "{rec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_during_the_drain() {
    let up = Upstream::start();
    let mut sk = Sidekey::start(&gated_config(&up, ""), &[("TOK", TOK)]);
    assert_eq!(
        try_get(sk.admin_addr, "/readyz").await,
        Ok(200),
        "/readyz before SIGTERM"
    );
    assert_eq!(
        try_get(sk.admin_addr, "/healthz").await,
        Ok(200),
        "/healthz before SIGTERM"
    );
    let (_rid, mut sse) = open_gated(sk.proxy_addr).await;

    sk.signal("TERM");
    // Poll /readyz the way the kubelet does (a new connection per probe) while the
    // stream holds the drain open: 200 until the signal is handled, then 503.
    let t0 = Instant::now();
    let mut seen = Vec::new();
    loop {
        let r = try_get(sk.admin_addr, "/readyz").await;
        if seen.last() != Some(&r) {
            seen.push(r.clone());
        }
        match r {
            Ok(503) => break,
            Ok(200) => {}
            other => panic!(
                "/readyz during the drain gave {other:?} (sequence {seen:?}) instead of 503: \
                 the admin listener must keep answering probes (and scrapes) while \
                 in-flight requests drain"
            ),
        }
        assert!(
            t0.elapsed() < WAIT,
            "/readyz never turned 503 after SIGTERM; sequence {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // It stays 503 (and /healthz stays up) for the rest of the drain.
    assert_eq!(try_get(sk.admin_addr, "/readyz").await, Ok(503));
    assert_eq!(
        try_get(sk.admin_addr, "/healthz").await,
        Ok(200),
        "/healthz during the drain: the process is alive"
    );

    up.release_gate();
    finish_gated(&mut sse).await;
    let st = tokio::task::block_in_place(|| sk.wait_exit(Duration::from_secs(30)))
        .expect("sidekey did not exit after the drain");
    assert_eq!(st.code(), Some(0), "exit status: {st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_a_stream_that_never_ends() {
    let up = Upstream::start();
    let mut sk = Sidekey::start(&gated_config(&up, "shutdown_grace: 1s\n"), &[("TOK", TOK)]);
    let (_rid, mut sse) = open_gated(sk.proxy_addr).await;
    // The gate is never released: this stream would last forever.
    sk.signal("TERM");
    let t0 = Instant::now();
    let st = tokio::task::block_in_place(|| sk.wait_exit(Duration::from_secs(20)))
        .expect("sidekey still running 20s after SIGTERM with shutdown_grace: 1s");
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(0), "exit status after the grace: {st}");
    assert!(
        took >= Duration::from_millis(900),
        "sidekey exited after {took:?}, before the 1s grace let the stream drain"
    );
    assert!(
        took < Duration::from_secs(10),
        "sidekey took {took:?} to exit with shutdown_grace: 1s"
    );
    // The client sees its stream end (cut), not hang, and never the gated event.
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match sse.frame().await {
                None => return "eof",
                Some(Err(_)) => return "error",
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        assert!(!d.starts_with(b"data: second"), "gate was never opened");
                    }
                }
            }
        }
    })
    .await;
    assert!(
        cut.is_ok(),
        "the client's stream still hangs after sidekey exited"
    );
    assert!(
        sk.stderr_text().contains("grace"),
        "no log line says the grace elapsed with requests in flight:\n{}",
        sk.stderr_text()
    );
}

// ---------------------------------------------------------------------------------
// timeouts and limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_timeout_is_504_but_does_not_cut_a_streaming_body() {
    let up = Upstream::start();
    let sk = Sidekey::start(
        &gated_config(&up, "timeouts: {upstream_response: 1s}\n"),
        &[("TOK", TOK)],
    );
    let fast = proxy_get(sk.proxy_addr, "http://api.test/slow?ms=10", &[]).await;
    assert_eq!(
        fast.status,
        200,
        "answer inside the budget: {}",
        fast.text()
    );

    let t0 = Instant::now();
    let slow = proxy_get(sk.proxy_addr, "http://api.test/slow?ms=8000", &[]).await;
    let took = t0.elapsed();
    let body = assert_sidekey_error(&slow, 504, "upstream_timeout");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "504 after {took:?} with upstream_response: 1s"
    );
    let rec = sk.audit_for(body["request_id"].as_str().unwrap());
    assert_eq!(rec["decision"], "error", "{rec}");
    assert_eq!(rec["error"], "upstream_timeout", "{rec}");
    assert_eq!(rec["status"], 504, "{rec}");

    // upstream_response bounds the wait for the response head only: a stream whose
    // head came at once keeps flowing past the budget.
    let (rid, mut sse) = open_gated(sk.proxy_addr).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // let the budget pass
    up.release_gate();
    finish_gated(&mut sse).await;
    assert_eq!(sk.audit_for(&rid)["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_timeout_closes_a_client_that_never_finishes_its_headers() {
    let up = Upstream::start();
    let sk = Sidekey::start(
        &gated_config(&up, "timeouts: {request_headers: 1s}\n"),
        &[("TOK", TOK)],
    );
    let mut s = tokio::net::TcpStream::connect(sk.proxy_addr).await.unwrap();
    s.write_all(b"GET http://api.test/x HTTP/1.1\r\nHost: api.test\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
    let took = t0.elapsed();
    assert!(
        read.is_ok(),
        "a client stalled mid-headers was not disconnected within 15s (request_headers: 1s)"
    );
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before the 1s budget"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        buf.is_empty() || text.starts_with("HTTP/1.1 408"),
        "only a close or a 408 is acceptable, got {text:?}"
    );
    assert_eq!(up.count(), 0, "nothing went upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_closes_the_connection_over_the_limit() {
    let up = Upstream::start();
    let sk = Sidekey::start(
        &gated_config(&up, "limits: {max_connections: 2}\n"),
        &[("TOK", TOK)],
    );
    let mut a = ProxyConn::open(sk.proxy_addr).await;
    let mut b = ProxyConn::open(sk.proxy_addr).await;
    assert_eq!(
        a.request("GET", "http://api.test/a1", &[], empty())
            .await
            .status,
        200
    );
    assert_eq!(
        b.request("GET", "http://api.test/b1", &[], empty())
            .await
            .status,
        200
    );

    // A third concurrent connection is closed without being served.
    assert_connection_refused(
        sk.proxy_addr,
        b"GET http://api.test/c1 HTTP/1.1\r\nHost: api.test\r\n\r\n",
        "third connection over max_connections: 2",
    )
    .await;
    assert!(
        !up.requests().iter().any(|r| r.path == "/c1"),
        "the request on the rejected connection reached the upstream"
    );

    // The two admitted connections are unaffected.
    assert_eq!(
        a.request("GET", "http://api.test/a2", &[], empty())
            .await
            .status,
        200
    );
    assert_eq!(
        b.request("GET", "http://api.test/b2", &[], empty())
            .await
            .status,
        200
    );

    // Closing one frees its slot for a new connection.
    drop(a);
    let t0 = Instant::now();
    loop {
        let m = prom::parse(&http_get(sk.admin_addr, "/metrics").await.text());
        if m.get("sidekey_open_connections", &[]) == Some(1.0) {
            break;
        }
        assert!(t0.elapsed() < WAIT, "open connections never fell to 1");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = proxy_get(sk.proxy_addr, "http://api.test/d1", &[]).await;
    assert_eq!(d.status, 200, "a new connection once a slot is free");
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_also_bounds_connect_tunnels() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nlimits: {{max_connections: 2}}\nupstreams:\n  tunnel.test: {}\nroutes:\n  - name: tunnel-route\n    match: {{host: tunnel.test}}\n    auth: passthrough\n",
        yaml_head("ops-tunnel-limit-agent"),
        up.host_port()
    );
    let sk = Sidekey::start(&cfg, &[]);
    // Two client connections, each an open blind tunnel.
    let t1 = connect_raw(sk.proxy_addr, "tunnel.test:80", &[]).await;
    assert_eq!(t1.status, 200);
    let t2 = connect_raw(sk.proxy_addr, "tunnel.test:80", &[]).await;
    assert_eq!(t2.status, 200);

    // A third concurrent client connection is over the limit.
    assert_connection_refused(
        sk.proxy_addr,
        b"GET http://tunnel.test/third HTTP/1.1\r\nHost: tunnel.test\r\n\r\n",
        "a third connection while two CONNECT tunnels held both of max_connections: 2",
    )
    .await;
    drop((t1, t2));
}

/// Open a connection, send `request`, and require sidekey to close it within 15 s
/// without answering a byte (`what` names the connection in the failure).
async fn assert_connection_refused(proxy: std::net::SocketAddr, request: &[u8], what: &str) {
    let mut c = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("the kernel completes the TCP handshake");
    let _ = c.write_all(request).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), c.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "{what}: neither served nor closed within 15s");
    assert!(
        buf.is_empty(),
        "{what} was served: {:?}",
        String::from_utf8_lossy(&buf)
    );
}

/// Like [`versioned_config`], but the credential keeps its name `c` across versions and
/// only its definition (the env var it reads) changes.
fn same_name_config(up: &Upstream, v: &str) -> String {
    format!(
        "{head}default: deny\nupstreams:\n  gated.test: {up}\ncredentials:\n  c:\n    source: env\n    env: TOK_{V}\nroutes:\n  - name: route-{v}\n    match: {{host: gated.test}}\n    auth: claw\n    credential: c\n",
        head = yaml_head("ops-reload-agent"),
        up = up.host_port(),
        V = v.to_uppercase()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_redefines_a_credential_applies_to_new_requests() {
    let up = Upstream::start();
    let sk = Sidekey::start(
        &same_name_config(&up, "v1"),
        &[("TOK_V1", TOK_V1), ("TOK_V2", TOK_V2)],
    );
    let mut n = 0;
    let p = wait_route(&sk, "route-v1", &mut n).await;
    assert_eq!(
        upstream_auth(&up, &p).as_deref(),
        Some(&*format!("Bearer {TOK_V1}"))
    );
    // The operator points credential `c` at another secret (a rotation done by
    // editing the config) and reloads.
    atomic_write(sk.dir.path(), CONFIG_NAME, &same_name_config(&up, "v2"));
    sk.signal("HUP");
    let p = wait_route(&sk, "route-v2", &mut n).await;
    assert_eq!(
        upstream_auth(&up, &p).as_deref(),
        Some(&*format!("Bearer {TOK_V2}")),
        "after the reload, credential `c` is defined as env TOK_V2, yet new requests still \
         inject the token cached from its old definition"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_timeout_also_bounds_a_websocket_upgrade() {
    let up = Upstream::start();
    let sk = Sidekey::start(
        &gated_config(&up, "timeouts: {upstream_response: 1s}\n"),
        &[("TOK", TOK)],
    );
    // An upgrade request whose upstream takes 8s to answer at all.
    let t0 = Instant::now();
    let r = proxy_get(
        sk.proxy_addr,
        "http://api.test/slow?ms=8000",
        &[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "an upgrade request waited {took:?} for an upstream that had not answered, \
         with upstream_response: 1s (status {} body {:?})",
        r.status,
        r.text()
    );
    assert_sidekey_error(&r, 504, "upstream_timeout");
}

/// Issue 12: a reload that changes a start-up setting keeps its running value and
/// logs a warning naming it; the rest of the file applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_changes_startup_settings_warns_naming_each() {
    let up = Upstream::start();
    let sk = Sidekey::start(&gated_config(&up, ""), &[("TOK", TOK)]);
    let audit_file = sk.dir.path().join("moved-audit.jsonl");
    let changed = gated_config(
        &up,
        &format!(
            "audit: {{file: {:?}}}\nlimits: {{max_connections: 9}}\n",
            audit_file.to_str().unwrap()
        ),
    );
    atomic_write(sk.dir.path(), CONFIG_NAME, &changed);
    sk.signal("HUP");
    wait_reloads(&sk, "success", 1.0).await;
    for setting in ["audit.file", "limits.max_connections"] {
        assert!(
            sk.wait_stderr(&format!("`{setting}` is read only at start-up")),
            "no warning naming {setting}: {}",
            sk.stderr_text()
        );
    }
    assert!(
        !sk.stderr_has("`listen` is read only"),
        "an unchanged setting is not named: {}",
        sk.stderr_text()
    );
    // The audit keeps going where it went at start-up.
    let before = sk.audit_records().len();
    let r = proxy_get(sk.proxy_addr, "http://api.test/after-reload", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(sk.wait_audit(before + 1).len() > before);
    assert!(
        !audit_file.exists(),
        "audit.file is not reopened by a reload"
    );
}
