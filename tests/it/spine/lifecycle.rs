//! Spine: SIGTERM drains in-flight requests and exits 0; SIGHUP and file changes reload
//! the config, an invalid new file keeps the old one serving, and no kept-alive
//! connection is dropped (SPEC "Lifecycle").

use std::time::{Duration, Instant};

use crate::support::*;

const TOK: &str = "life-tok-1234";

fn config(up: &Upstream, with_b: bool) -> String {
    let b = if with_b {
        "  - name: b-route\n    match: {host: b.test}\n    auth: claw\n    credential: c\n"
    } else {
        ""
    };
    format!(
        "{}default: deny\nupstreams:\n  a.test: {up}\n  b.test: {up}\ncredentials:\n  c:\n    source: env\n    env: TOK\nroutes:\n  - name: a-route\n    match: {{host: a.test}}\n    auth: claw\n    credential: c\n{b}",
        yaml_head("life-agent"),
        up = up.host_port()
    )
}

/// Polls `url` through the proxy until it returns `status` or `timeout` passes.
async fn poll_status(sk: &Sidekey, url: &str, status: u16, timeout: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if proxy_get(sk.proxy_addr, url, &[]).await.status == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_request_and_exits_zero() {
    let up = Upstream::start();
    let mut sk = Sidekey::start(&config(&up, false), &[("TOK", TOK)]);
    let addr = sk.proxy_addr;
    let call =
        tokio::spawn(async move { proxy_get(addr, "http://a.test/slow?ms=1500", &[]).await });
    up.wait_requests(1, REQ_TIMEOUT);
    sk.signal("TERM");
    let resp = call.await.unwrap();
    assert_eq!(
        resp.status,
        200,
        "in-flight request during SIGTERM: {}",
        resp.text()
    );
    assert_eq!(resp.json()["path"], "/slow");
    let st = tokio::task::block_in_place(|| sk.wait_exit(Duration::from_secs(25)));
    let st = st.expect("sidekey did not exit within 25s of SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st}");
    assert!(
        sk.audit_records()
            .iter()
            .any(|r| r["path"] == "/slow" && r["status"] == 200),
        "audit record of the drained request missing:\n{}",
        sk.stdout_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_valid_config_and_keeps_old_on_invalid() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, false), &[("TOK", TOK)]);
    let mut conn = ProxyConn::open(sk.proxy_addr).await;
    let first = conn.request("GET", "http://a.test/1", &[], empty()).await;
    assert_eq!(first.status, 200);
    let b = proxy_get(sk.proxy_addr, "http://b.test/x", &[]).await;
    assert_sidekey_error(&b, 403, "route_denied");

    sk.dir.write_config(&config(&up, true));
    sk.signal("HUP");
    assert!(
        poll_status(&sk, "http://b.test/x", 200, Duration::from_secs(15)).await,
        "new route not active after SIGHUP"
    );
    let again = conn.request("GET", "http://a.test/2", &[], empty()).await;
    assert_eq!(again.status, 200, "kept-alive connection broken by reload");

    sk.dir.write_config("version: 2\nthis is: [not valid\n");
    sk.signal("HUP");
    let t0 = Instant::now();
    loop {
        let m = http_get(sk.admin_addr, "/metrics").await.text();
        if m.lines().any(|l| {
            l.starts_with("sidekey_config_reloads_total{")
                && l.contains("result=\"error\"")
                && l.split_whitespace()
                    .last()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 1.0)
        }) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no failed reload counted:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still = proxy_get(sk.proxy_addr, "http://b.test/y", &[]).await;
    assert_eq!(
        still.status,
        200,
        "old config must keep serving after a bad reload: {}",
        still.text()
    );
    let on_conn = conn.request("GET", "http://a.test/3", &[], empty()).await;
    assert_eq!(on_conn.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_change_reloads_without_signal() {
    let up = Upstream::start();
    let sk = Sidekey::start(&config(&up, false), &[("TOK", TOK)]);
    let b = proxy_get(sk.proxy_addr, "http://b.test/x", &[]).await;
    assert_sidekey_error(&b, 403, "route_denied");
    sk.dir.write_config(&config(&up, true));
    assert!(
        poll_status(&sk, "http://b.test/x", 200, Duration::from_secs(20)).await,
        "config file change was not picked up within 20s"
    );
}
