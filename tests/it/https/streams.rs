//! Streaming through HTTPS interception and the gateway, with real clients (SPEC "Ways
//! in": "streaming bodies (SSE, chunked, large uploads) without buffering whole bodies,
//! WebSocket upgrade through gateway and interception").

use std::time::Duration;

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOT: &str = "xoxb-streams-3307-bot";
const STEP: Duration = Duration::from_secs(60);

/// sidekey intercepting slack.com (claw for every path) plus a gateway `/ws` to
/// `https://slack.com`, both reaching the TLS upstream through `upstreams:`.
fn setup() -> (Sidekey, SidekeyCa, TlsUpstream) {
    let up = TlsUpstream::start(&["slack.com"]);
    let dir = ConfigDir::new();
    let ca = SidekeyCa::init(dir.path());
    let yaml = format!(
        "{head}default: deny\n{tls}upstreams:\n  slack.com: {up}\ncredentials:\n  slack-bot:\n    source: env\n    env: SLACK_BOT_TOKEN\nroutes:\n  - name: slack-ws-gateway\n    gateway: {{prefix: /ws, upstream: \"https://slack.com\"}}\n    auth: claw\n    credential: slack-bot\n  - name: slack\n    match: {{host: slack.com}}\n    auth: claw\n    credential: slack-bot\n",
        head = yaml_head("https-streams-agent"),
        tls = ca.tls_yaml(&[up.ca_pem_path()]),
        up = up.host_port(),
    );
    let sk = Sidekey::start_in(dir, &yaml, &[("SLACK_BOT_TOKEN", BOT)]);
    (sk, ca, up)
}

#[test]
fn websocket_accept_and_sha1_known_vectors() {
    let hex = |b: [u8; 20]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        hex(sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(
        hex(sha1(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
    // RFC 6455 section 1.3.
    assert_eq!(
        ws_accept("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

// ---------------------------------------------------------------------------------------
// Server-sent events
// ---------------------------------------------------------------------------------------

fn sse_through_interception(http2: bool) {
    let (sk, ca, up) = setup();
    let proxy = sk.proxy_url();
    let mut args = vec![
        "--proxy",
        proxy.as_str(),
        "--ca",
        ca.cert.to_str().unwrap(),
        "https://slack.com/sse",
    ];
    if http2 {
        args.insert(0, "--http2");
    }
    let mut py = PyChild::spawn("sse_stream.py", &args, &[]);

    let first = py.next_json(STEP);
    assert_eq!(first["event"], "first", "{first}");
    assert_eq!(
        first["http_version"],
        if http2 { "HTTP/2" } else { "HTTP/1.1" },
        "{first}"
    );
    // The gate is closed: the upstream has not sent the second event, so the client got
    // the first one while the response was still open (streamed, not buffered).
    assert_eq!(
        up.sse_second_sent(),
        0,
        "the upstream cannot have sent the second event before the gate opened"
    );
    assert_eq!(up.sse_first_sent(), 1);

    up.release_gate();
    let second = py.next_json(STEP);
    assert_eq!(second["event"], "second", "{second}");
    let (code, rest, stderr) = py.finish(STEP);
    assert_eq!(code, 0, "sse_stream.py failed: {rest:?}\n{stderr}");
    let done: serde_json::Value = serde_json::from_str(rest.last().expect("final line")).unwrap();
    assert_eq!(done["done"], true, "{done}");
    assert_eq!(
        done["events"],
        serde_json::json!(["first", "second"]),
        "{done}"
    );
    assert_eq!(done["status"], 200, "{done}");

    let r = up.only();
    assert_eq!(r.path, "/sse");
    assert_eq!(r.header_all("authorization"), vec![format!("Bearer {BOT}")]);
}

#[test]
fn sse_streams_through_interception_http1() {
    sse_through_interception(false);
}

#[test]
fn sse_streams_through_interception_http2() {
    sse_through_interception(true);
}

// ---------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------

#[track_caller]
fn assert_ws_upstream(up: &TlsUpstream) {
    let reqs = up.requests();
    let r = reqs
        .iter()
        .find(|r| r.path == "/ws")
        .unwrap_or_else(|| panic!("upstream saw no /ws handshake: {reqs:#?}"));
    assert_eq!(r.method, "GET");
    assert_eq!(r.version, "HTTP/1.1", "a WebSocket handshake is HTTP/1.1");
    assert_eq!(
        r.header("upgrade").map(str::to_ascii_lowercase).as_deref(),
        Some("websocket"),
        "{:?}",
        r.headers
    );
    assert!(
        r.header("sec-websocket-key").is_some(),
        "the client's key must reach the upstream: {:?}",
        r.headers
    );
    assert_eq!(
        r.header_all("authorization"),
        vec![format!("Bearer {BOT}")],
        "the handshake carries the injected credential"
    );
    assert_eq!(r.header("host"), Some("slack.com"), "{:?}", r.headers);
    assert_eq!(up.ws_messages(), 1, "exactly one message echoed");
    assert!(
        up.connections()
            .iter()
            .all(|c| c.sni.as_deref() == Some("slack.com")),
        "{:?}",
        up.connections()
    );
}

#[test]
fn websocket_echo_through_interception_with_python_websockets() {
    let (sk, ca, up) = setup();
    let proxy = sk.proxy_url();
    let v = run_py_json(
        "ws_echo.py",
        &[
            "--proxy",
            &proxy,
            "--ca",
            ca.cert.to_str().unwrap(),
            "--message",
            "hello through the tunnel",
            "wss://slack.com/ws",
        ],
        &[],
    );
    assert_eq!(v["echo"], "hello through the tunnel", "{v}");
    assert_eq!(v["status"], 101, "{v}");
    assert_ws_upstream(&up);
}

#[test]
fn websocket_echo_through_gateway_with_python_websockets() {
    let (sk, _ca, up) = setup();
    let url = format!("ws://{}/ws/ws", sk.proxy_addr);
    let v = run_py_json(
        "ws_echo.py",
        &["--message", "hello through the gateway", &url],
        &[],
    );
    assert_eq!(v["echo"], "hello through the gateway", "{v}");
    assert_eq!(v["status"], 101, "{v}");
    assert_ws_upstream(&up);
    // Audit records are written in batches: wait for this one before reading.
    let a = sk
        .wait_audit(1)
        .into_iter()
        .find(|r| r["route"] == "slack-ws-gateway");
    let a = a.unwrap_or_else(|| {
        panic!(
            "no audit record for the gateway upgrade:\n{}",
            sk.stdout_text()
        )
    });
    assert_eq!(a["status"], 101, "{a}");
    assert_eq!(a["host"], "slack.com", "{a}");
    assert_eq!(a["auth_context"], "system_service", "{a}");
}

/// Reads an HTTP/1.1 response head (up to the blank line) without consuming more.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(REQ_TIMEOUT, s.read(&mut b))
            .await
            .expect("response head in time")
            .expect("read response head");
        assert_eq!(
            n,
            1,
            "closed inside the head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(b[0]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn head_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_interception_raw_frames() {
    let (sk, ca, up) = setup();
    let mut tls = open_tunnel(
        sk.proxy_addr,
        "slack.com:443",
        &[],
        "slack.com",
        client_tls(&ca.cert, &["http/1.1"]),
    )
    .await;
    let key = "x3JJHMbDL1EzLkh9GBhXDw==";
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: slack.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer client-should-vanish\r\n\r\n"
    );
    tls.write_all(handshake.as_bytes()).await.unwrap();
    let head = read_head(&mut tls).await;
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "expected 101 Switching Protocols, got {head:?}"
    );
    assert_eq!(
        head_header(&head, "sec-websocket-accept"),
        Some(ws_accept(key).as_str()),
        "{head}"
    );
    assert!(
        head_header(&head, "x-sidekey-request-id").is_some_and(|v| !v.is_empty()),
        "every response carries x-sidekey-request-id: {head}"
    );

    let msg = "raw frame through sidekey ".repeat(20); // > 125 bytes: 16-bit length
    tls.write_all(&ws_encode(0x81, msg.as_bytes(), true))
        .await
        .unwrap();
    let f = tokio::time::timeout(REQ_TIMEOUT, ws_read_frame(&mut tls))
        .await
        .expect("echo in time")
        .expect("read echo frame");
    assert_eq!(f.opcode(), 0x1, "text frame");
    assert_eq!(String::from_utf8_lossy(&f.payload), msg);

    tls.write_all(&ws_encode(0x88, &1000u16.to_be_bytes(), true))
        .await
        .unwrap();
    let f = tokio::time::timeout(REQ_TIMEOUT, ws_read_frame(&mut tls))
        .await
        .expect("close in time")
        .expect("read close frame");
    assert_eq!(f.opcode(), 0x8, "close frame echoed");
    assert_ws_upstream(&up);
}

// ---------------------------------------------------------------------------------------
// Large uploads inside the tunnel
// ---------------------------------------------------------------------------------------

const BIG: u64 = 20 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_chunked_upload_through_interception_http1_and_http2() {
    let (sk, ca, up) = setup();
    for h2 in [false, true] {
        let alpn: &[&str] = if h2 { &["h2"] } else { &["http/1.1"] };
        let tls = open_tunnel(
            sk.proxy_addr,
            "slack.com:443",
            &[],
            "slack.com",
            client_tls(&ca.cert, alpn),
        )
        .await;
        assert_eq!(negotiated_h2(&tls), h2);
        let (uri, headers): (String, Vec<(&str, &str)>) = if h2 {
            ("https://slack.com/upload-h2".into(), vec![])
        } else {
            ("/upload-h1".into(), vec![("host", "slack.com")])
        };
        let resps = send_over(
            tls,
            h2,
            vec![tunnel_req("POST", &uri, &headers, pattern_body(BIG))],
        )
        .await;
        assert_eq!(resps[0].status, 200, "{}", resps[0].text());
    }
    let reqs = up.wait_requests(2, REQ_TIMEOUT);
    for path in ["/upload-h1", "/upload-h2"] {
        let r = reqs.iter().find(|r| r.path == path).unwrap();
        assert_eq!(r.body_len, BIG, "{path}: byte count");
        assert!(r.body_is_pattern, "{path}: bytes altered");
        assert_eq!(r.header_all("authorization"), vec![format!("Bearer {BOT}")]);
    }
}
