//! `server::run` in-process ([`InProcess`]): the same request path as the binary, with
//! listeners and shutdown injected by the test (issue 12: one harness, the server run
//! in-process where a test does not need the binary).

use std::time::Duration;

use crate::support::*;

const TOKEN: &str = "in-process-claw-token-5c1e";

fn config(up: &Upstream) -> String {
    format!(
        "{head}default: deny\nupstreams:\n  api.test: {up}\ncredentials:\n  bot: {{source: file, file: bot.txt}}\nroutes:\n  - {{name: api, match: {{host: api.test, methods: [GET]}}, auth: claw, credential: bot}}\n",
        head = yaml_head("in-process-agent"),
        up = up.host_port()
    )
}

fn start(up: &Upstream) -> InProcess {
    let dir = ConfigDir::new();
    dir.write("bot.txt", TOKEN);
    InProcess::start_in(dir, &config(up))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injects_refuses_and_audits_like_the_binary() {
    let up = Upstream::start();
    let mut sk = start(&up);
    let r = proxy_get(sk.proxy_addr, "http://api.test/v1/items", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = up.wait_requests(1, Duration::from_secs(10));
    assert_eq!(
        seen[0].header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let denied = proxy_get(sk.proxy_addr, "http://other.test/", &[]).await;
    assert_sidekey_error(&denied, 403, "route_denied");
    let audit = sk.wait_audit(2);
    let id = |r: &Resp| r.header("x-sidekey-request-id").map(str::to_string);
    let rec = |want: Option<String>| {
        audit
            .iter()
            .find(|a| a["request_id"].as_str().map(str::to_string) == want)
            .cloned()
            .unwrap_or_else(|| panic!("no record for {want:?}: {audit:?}"))
    };
    let ok = rec(id(&r));
    assert_eq!(
        (ok["route"].as_str(), ok["credential"].as_str()),
        (Some("api"), Some("bot"))
    );
    assert_eq!(rec(id(&denied))["decision"], "deny");
    assert!(
        !std::fs::read_to_string(sk.dir.path().join("audit.jsonl"))
            .unwrap_or_default()
            .contains(TOKEN)
    );
    sk.stop().expect("server::run returns Ok after shutdown");
}

/// Nothing lost on shutdown: a call in flight when the shutdown future resolves is
/// answered and audited before `server::run` returns, and the listener is closed after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_call_in_flight_then_returns() {
    let up = Upstream::start();
    let mut sk = start(&up);
    let proxy = sk.proxy_addr;
    let call =
        tokio::spawn(async move { proxy_get(proxy, "http://api.test/slow?ms=1500", &[]).await });
    up.wait_requests(1, Duration::from_secs(10));
    let stopped = tokio::task::spawn_blocking(move || {
        let result = sk.stop();
        let text = std::fs::read_to_string(sk.dir.path().join("audit.jsonl"));
        (result, text)
    });
    let r = call.await.expect("call task");
    assert_eq!(r.status, 200, "{}", r.text());
    let (result, text) = stopped.await.expect("stop task");
    result.expect("server::run returns Ok");
    let text = text.expect("audit file");
    assert!(
        text.contains("\"path\":\"/slow\""),
        "the drained call was audited: {text}"
    );
    assert!(
        tokio::net::TcpStream::connect(proxy).await.is_err(),
        "the listener is closed once run returns"
    );
}
