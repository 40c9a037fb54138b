//! Hardening: what a hostile agent can do with the bytes of a request (SPEC "Request
//! handling", "Errors", limits and timeouts).
//!
//! * Raw bytes on a TCP socket (as Smokescreen's tests do) for request smuggling and
//!   parser abuse: CL+TE, differing Content-Length, obfuscated Transfer-Encoding,
//!   control bytes in header values, oversized and too many headers, slowloris.
//!   For each: sidekey answers 400/431 (or closes the connection) and the recording
//!   upstream receives nothing.
//! * Identity hygiene: conflicting duplicates, look-alike names, case variants, and a
//!   CONNECT identity that an inner request tries to change.
//! * Path rules: a deny route for `/admin*` cannot be dodged by dot segments, escapes,
//!   empty segments, `;params` or the query string.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "tok-proto-5c1d9e77aa";

// ---------------------------------------------------------------------------------------
// Raw socket helpers
// ---------------------------------------------------------------------------------------

/// What came back on a raw connection.
#[derive(Debug)]
struct RawReply {
    bytes: Vec<u8>,
    /// The server closed (EOF or reset) before `wait` ran out.
    closed: bool,
    /// When the close was seen, from the first byte written.
    closed_after: Option<Duration>,
}

impl RawReply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Status of the first response, if any.
    fn status(&self) -> Option<u16> {
        let t = self.text();
        let line = t.lines().next()?;
        let mut parts = line.split_whitespace();
        if !parts.next()?.starts_with("HTTP/") {
            return None;
        }
        parts.next()?.parse().ok()
    }

    /// Status lines of every response in the bytes (to spot a second, smuggled one).
    fn status_lines(&self) -> Vec<String> {
        self.text()
            .split("\r\n")
            .filter(|l| l.starts_with("HTTP/1."))
            .map(str::to_string)
            .collect()
    }
}

/// Writes `req` on a fresh connection, then reads until the server closes or `wait`
/// passes. Write errors are ignored: the server may close early on bad input.
async fn raw_exchange(addr: SocketAddr, req: &[u8], wait: Duration) -> RawReply {
    let mut s = TcpStream::connect(addr).await.expect("connect to sidekey");
    let t0 = Instant::now();
    let _ = s.write_all(req).await;
    let _ = s.flush().await;
    read_until_close(&mut s, t0, wait).await
}

async fn read_until_close(s: &mut TcpStream, t0: Instant, wait: Duration) -> RawReply {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = wait.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return RawReply {
                bytes,
                closed: false,
                closed_after: None,
            };
        }
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => {
                return RawReply {
                    bytes,
                    closed: false,
                    closed_after: None,
                };
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return RawReply {
                    bytes,
                    closed: true,
                    closed_after: Some(t0.elapsed()),
                };
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

/// A proxy config for raw tests: `api.test` (claw, injects TOKEN) and `open.test`
/// (passthrough) both on `up`; 500 ms to send headers; `extra` top-level keys.
fn proto_cfg(up: &Upstream, extra: &str) -> String {
    format!(
        "{}default: deny\ntimeouts:\n  request_headers: 500ms\n{extra}upstreams:\n  api.test: {u}\n  open.test: {u}\ncredentials:\n  tok:\n    source: env\n    env: PROTO_TOKEN\nroutes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: tok\n  - name: open\n    match: {{host: open.test}}\n    auth: passthrough\n",
        yaml_head("proto-agent"),
        u = up.host_port()
    )
}

fn start_proto(up: &Upstream, extra: &str) -> Sidekey {
    Sidekey::start(&proto_cfg(up, extra), &[("PROTO_TOKEN", TOKEN)])
}

const WAIT: Duration = Duration::from_secs(5);

/// A bad request is refused: 400/431 (or closed without any response), never a
/// success, and the upstream saw nothing. Returns a description of what went wrong.
fn refused(label: &str, reply: &RawReply, up: &Upstream, before: usize) -> Option<String> {
    let reached = up.count() - before;
    let status = reply.status();
    let ok_status = matches!(status, Some(400) | Some(431)) || (status.is_none() && reply.closed);
    if reached == 0 && ok_status {
        return None;
    }
    Some(format!(
        "{label}: status {status:?}, closed {}, upstream received {reached} request(s) {:?}; reply {:?}",
        reply.closed,
        up.requests()[before..]
            .iter()
            .map(|r| r.path.clone())
            .collect::<Vec<_>>(),
        reply.text().chars().take(300).collect::<String>()
    ))
}

// ---------------------------------------------------------------------------------------
// Smuggling and parser abuse
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_baseline_request_is_proxied() {
    // The helpers themselves work: a well-formed raw request goes through.
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    let reply = raw_exchange(
        sk.proxy_addr,
        b"POST http://api.test/baseline HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        WAIT,
    )
    .await;
    assert_eq!(reply.status(), Some(200), "{}", reply.text());
    assert!(reply.closed);
    let r = up.only();
    assert_eq!(r.path, "/baseline");
    assert_eq!(r.body, b"hello");
}

/// CL+TE: hyper follows RFC 9112 section 6.3 (Transfer-Encoding wins, Content-Length
/// is dropped, the connection is closed after the response) before sidekey sees the
/// request, so sidekey cannot answer 400 here (docs/reference.md, "differences"). What must hold:
/// the request is framed by its chunked body alone, nothing hidden in it reaches the
/// upstream, and the connection is not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_together_with_transfer_encoding_is_framed_by_te_and_closed() {
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    let cases: [(&str, &[u8]); 3] = [
        (
            "CL then TE",
            b"POST http://open.test/clte HTTP/1.1\r\nHost: open.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://open.test/smuggled HTTP/1.1\r\nHost: open.test\r\n\r\n",
        ),
        (
            "TE then CL",
            b"POST http://open.test/tecl HTTP/1.1\r\nHost: open.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET http://open.test/smuggled HTTP/1.1\r\nHost: open.test\r\n\r\n",
        ),
        (
            "TE with a tab (legal OWS) and CL",
            b"POST http://open.test/tab HTTP/1.1\r\nHost: open.test\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
    ];
    let mut wrong = Vec::new();
    for (label, req) in cases {
        let before = up.count();
        let reply = raw_exchange(sk.proxy_addr, req, WAIT).await;
        let got: Vec<_> = up.requests().into_iter().skip(before).collect();
        if !reply.closed {
            wrong.push(format!("{label}: connection left open for reuse"));
        }
        if got.iter().any(|r| {
            r.path.contains("smuggled")
                || r.body_len != 0
                || r.header("content-length").is_some_and(|v| v != "0")
        }) || got.len() > 1
        {
            wrong.push(format!(
                "{label}: upstream saw {:?}",
                got.iter()
                    .map(|r| (&r.path, r.body_len))
                    .collect::<Vec<_>>()
            ));
        }
        if !matches!(reply.status(), Some(200 | 400)) {
            wrong.push(format!("{label}: status {:?}", reply.status()));
        }
    }
    assert!(wrong.is_empty(), "CL+TE:\n{}", wrong.join("\n"));
}

/// Whatever sidekey does with CL+TE, no second request hidden in the body may reach
/// the upstream, and the client connection must not be reused after the ambiguity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cl_te_cannot_smuggle_a_second_request() {
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    let smuggled = "GET http://api.test/smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n";
    // A CL-reader sees a 6-byte body "0\r\n\r\nG"; a TE-reader sees an empty chunked body
    // followed by a second request.
    let te_wins = format!(
        "POST http://open.test/first HTTP/1.1\r\nHost: open.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
    );
    // A TE-reader sees chunk "GET..." ; a CL-reader sees a 4-byte body then the rest.
    let body = format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len());
    let cl_wins = format!(
        "POST http://open.test/second HTTP/1.1\r\nHost: open.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{body}"
    );
    for req in [te_wins, cl_wins] {
        let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
        assert!(
            reply.status_lines().len() <= 1,
            "more than one response on an ambiguous connection: {:?}",
            reply.status_lines()
        );
        assert!(
            reply.closed,
            "connection kept open after an ambiguous CL+TE request"
        );
    }
    for r in up.requests() {
        assert!(
            !r.path.contains("smuggled"),
            "a smuggled request reached the upstream: {r:#?}"
        );
        assert!(
            !(r.header("content-length").is_some() && r.header("transfer-encoding").is_some()),
            "upstream got both framings: {:?}",
            r.headers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differing_or_malformed_content_lengths_are_refused() {
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    let heads = [
        "Content-Length: 4\r\nContent-Length: 5",
        "Content-Length: 4, 5",
        "Content-Length: +4",
        "Content-Length: 0x4",
        "Content-Length: -1",
        "Content-Length: 4 4",
        "Content-Length: 99999999999999999999999",
    ];
    let mut wrong = Vec::new();
    for h in heads {
        let req =
            format!("POST http://open.test/cl HTTP/1.1\r\nHost: open.test\r\n{h}\r\n\r\nabcde");
        let before = up.count();
        let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
        wrong.extend(refused(&format!("{h:?}"), &reply, &up, before));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obfuscated_transfer_encoding_is_refused() {
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    // Each goes with a Content-Length, as in a real CL.TE / TE.CL attack: the two
    // framings must never both be candidates.
    let te_lines = [
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding : chunked",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        "Transfer-Encoding:\r\n chunked",
        " Transfer-Encoding: chunked",
        "Transfer-Encoding: \x0bchunked",
        "Transfer-Encoding: chunked\x00",
    ];
    let mut wrong = Vec::new();
    for te in te_lines {
        let req = format!(
            "POST http://open.test/te HTTP/1.1\r\nHost: open.test\r\nX-Pad: 1\r\n{te}\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
        );
        let before = up.count();
        let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
        wrong.extend(refused(&format!("{te:?}"), &reply, &up, before));
    }
    // HTTP/1.0 has no chunked encoding at all.
    let before = up.count();
    let reply = raw_exchange(
        sk.proxy_addr,
        b"POST http://open.test/te10 HTTP/1.0\r\nHost: open.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        WAIT,
    )
    .await;
    wrong.extend(refused("HTTP/1.0 + TE", &reply, &up, before));
    assert!(
        wrong.is_empty(),
        "obfuscated Transfer-Encoding accepted:\n{}",
        wrong.join("\n")
    );
}

/// `Transfer_Encoding` / `Content_Length` are not framing headers to sidekey, but CGI,
/// WSGI and several frameworks fold `_` into `-`: an upstream (or a server behind it)
/// could read them as framing and desync. They must be refused or dropped, never
/// forwarded (the same rule sidekey already applies to identity look-alikes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_header_look_alikes_never_reach_the_upstream() {
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    let mut wrong = Vec::new();
    for line in [
        "Transfer_Encoding: chunked",
        "transfer_encoding: chunked",
        "Content_Length: 0",
        "Transfer-Encoding_: chunked",
    ] {
        let before = up.count();
        let req = format!(
            "POST http://open.test/fl HTTP/1.1\r\nHost: open.test\r\n{line}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n0\r\n\r\n"
        );
        let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
        for r in &up.requests()[before..] {
            for (k, v) in &r.headers {
                let n = k.replace('_', "-");
                if k.contains('_')
                    && (n.starts_with("transfer-encoding") || n.starts_with("content-length"))
                {
                    wrong.push(format!(
                        "{line:?}: upstream received {k}: {v} (reply {:?})",
                        reply.status()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_bytes_in_header_values_are_refused() {
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    let values: [&[u8]; 6] = [b"a\x00b", b"a\rb", b"a\nb", b"a\r\nb", b"a\x1bb", b"a\x7fb"];
    let mut wrong = Vec::new();
    for v in values {
        let mut req = b"GET http://api.test/ctl HTTP/1.1\r\nHost: api.test\r\nX-Note: ".to_vec();
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n\r\n");
        let before = up.count();
        let reply = raw_exchange(sk.proxy_addr, &req, WAIT).await;
        wrong.extend(refused(&format!("X-Note: {v:?}"), &reply, &up, before));
    }
    // The same bytes in the request target.
    for target in [
        &b"http://api.test/a\x00b"[..],
        b"http://api.test/a\rb",
        b"http://api.test/a\x1bb",
    ] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nHost: api.test\r\n\r\n");
        let before = up.count();
        let reply = raw_exchange(sk.proxy_addr, &req, WAIT).await;
        wrong.extend(refused(&format!("target {target:?}"), &reply, &up, before));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_is_431() {
    let up = Upstream::start();
    let sk = start_proto(&up, "limits:\n  max_header_bytes: 16384\n");
    // Under the limit: fine.
    let fits = format!(
        "GET http://open.test/fits HTTP/1.1\r\nHost: open.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(8000)
    );
    let reply = raw_exchange(sk.proxy_addr, fits.as_bytes(), WAIT).await;
    assert_eq!(reply.status(), Some(200), "{}", reply.text());
    let before = up.count();
    let big = format!(
        "GET http://open.test/big HTTP/1.1\r\nHost: open.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let reply = raw_exchange(sk.proxy_addr, big.as_bytes(), WAIT).await;
    assert_eq!(reply.status(), Some(431), "{}", reply.text());
    assert!(reply.closed, "connection must close after 431");
    assert_eq!(up.count(), before, "{:#?}", up.requests());
}

/// `limits.max_header_bytes` is accepted from 1024 up; a limit below 8 KiB must be
/// enforced as configured, not silently raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limit_below_8k_is_enforced_as_configured() {
    let up = Upstream::start();
    let sk = start_proto(&up, "limits:\n  max_header_bytes: 2048\n");
    let before = up.count();
    let req = format!(
        "GET http://open.test/over-2k HTTP/1.1\r\nHost: open.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(5000)
    );
    let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
    assert_eq!(
        up.count(),
        before,
        "a 5 KB header passed a 2 KB limit: {:#?}",
        up.requests()
    );
    assert_eq!(reply.status(), Some(431), "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_headers_are_refused_and_the_connection_closed() {
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    let mut req = String::from("GET http://open.test/many HTTP/1.1\r\nHost: open.test\r\n");
    for i in 0..1000 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
    assert!(
        matches!(reply.status(), Some(431) | Some(400)),
        "expected 431 or 400, got {:?}: {}",
        reply.status(),
        reply.text()
    );
    assert!(reply.closed, "connection must close after too many headers");
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

// ---------------------------------------------------------------------------------------
// Slow clients (timeouts.request_headers: 500ms)
// ---------------------------------------------------------------------------------------

/// Upper bound for "closed after the 500 ms header timeout" (timer + scheduling slack).
const CLOSE_BOUND: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_headers_trickled_past_the_timeout_are_cut_off() {
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    let mut s = TcpStream::connect(sk.proxy_addr).await.unwrap();
    let t0 = Instant::now();
    s.write_all(b"GET http://open.test/slow HTTP/1.1\r\nHost: open.test\r\n")
        .await
        .unwrap();
    // One header byte every 100 ms, forever: each byte arrives well within any
    // per-read timeout, but the head as a whole never completes.
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            let b = if i % 20 == 19 {
                b"\r\nX-T: " as &[u8]
            } else {
                b"a"
            };
            if wr.write_all(b).await.is_err() {
                return i;
            }
            i += 1;
            if t0.elapsed() > Duration::from_secs(8) {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed_after = loop {
        match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0)) | Ok(Err(_)) => break Some(t0.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    writer.abort();
    let closed_after = closed_after.expect("slowloris connection never closed");
    assert!(
        closed_after < CLOSE_BOUND,
        "closed only after {closed_after:?} (timeout 500ms)"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "unexpected reply to a slow client: {text:?}"
    );
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed_after_the_header_timeout() {
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    let reply = raw_exchange(sk.proxy_addr, b"", Duration::from_secs(6)).await;
    assert!(
        reply.closed && reply.closed_after.unwrap() < CLOSE_BOUND,
        "a connection that sends nothing is still open after {:?} (timeouts.request_headers: 500ms)",
        Duration::from_secs(6)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_http2_preface_is_closed_after_the_header_timeout() {
    let up = Upstream::start();
    let sk = start_proto(&up, "");
    for prefix in [
        &b"P"[..],
        b"PRI * HTTP/2.0\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        let reply = raw_exchange(sk.proxy_addr, prefix, Duration::from_secs(6)).await;
        assert!(
            reply.closed && reply.closed_after.unwrap() < CLOSE_BOUND,
            "a connection stalled after {:?} is still open after 6s",
            String::from_utf8_lossy(prefix)
        );
    }
}

/// The consequence of silent connections that are never closed: with
/// `max_connections: 2`, two idle sockets would lock every agent out for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_exhaust_max_connections() {
    let up = Upstream::start();
    let sk = start_proto(&up, "limits:\n  max_connections: 2\n");
    let _idle1 = TcpStream::connect(sk.proxy_addr).await.unwrap();
    let _idle2 = TcpStream::connect(sk.proxy_addr).await.unwrap();
    let t0 = Instant::now();
    let mut last = String::new();
    loop {
        let reply = raw_exchange(
            sk.proxy_addr,
            b"GET http://open.test/after-idle HTTP/1.1\r\nHost: open.test\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        if reply.status() == Some(200) {
            break;
        }
        last = format!("{:?} closed={}", reply.status(), reply.closed);
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "two silent connections still block a real request after 8s (timeout 500ms); last attempt: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = last;
    assert_eq!(up.only().path, "/after-idle");
}

// ---------------------------------------------------------------------------------------
// Identity hygiene
// ---------------------------------------------------------------------------------------

/// `who.test`: assistant route (per-user file credential); `open.test`: passthrough;
/// unmatched: passthrough to nowhere in particular.
fn identity_setup() -> (Sidekey, Upstream) {
    let up = Upstream::start();
    let dir = ConfigDir::new();
    dir.write("creds/alice.txt", "alice-tok-9d1f\n");
    dir.write("creds/bob.txt", "bob-tok-7e2a\n");
    let cfg = format!(
        "{}default: passthrough\nupstreams:\n  who.test: {u}\n  open.test: {u}\n  other.test: {u}\ncredentials:\n  per-user:\n    source: file\n    file: creds/{{user}}.txt\nroutes:\n  - name: who\n    match: {{host: who.test}}\n    auth: assistant\n    credential: per-user\n  - name: open\n    match: {{host: open.test}}\n    auth: passthrough\n",
        yaml_head("identity-agent"),
        u = up.host_port()
    );
    (Sidekey::start_in(dir, &cfg, &[]), up)
}

fn normalised_name(n: &str) -> String {
    n.to_ascii_lowercase().replace('_', "-")
}

#[track_caller]
fn assert_no_identity_headers(up: &Upstream) {
    for r in up.requests() {
        for (k, v) in &r.headers {
            assert_ne!(
                normalised_name(k),
                "x-sidekey-user",
                "upstream saw identity header {k}: {v} on {}",
                r.path
            );
            assert!(
                !k.contains("sidekey"),
                "upstream saw sidekey header {k}: {v} on {}",
                r.path
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differing_duplicate_identity_headers_are_400_in_any_case() {
    let (sk, up) = identity_setup();
    let variants = [
        "x-sidekey-user: alice\r\nx-sidekey-user: bob",
        "X-SIDEKEY-USER: alice\r\nx-sidekey-user: bob",
        "X-Sidekey-User: alice\r\nX-SIDEKEY-USER: ALICE",
        "x-sidekey-user: alice\r\nX-Other: 1\r\nx-sidekey-user: bob",
        "x-sidekey-user: alice\r\nx-sidekey-user: ",
    ];
    for host in ["who.test", "open.test", "other.test"] {
        for v in variants {
            let req = format!(
                "GET http://{host}/dup HTTP/1.1\r\nHost: {host}\r\n{v}\r\nConnection: close\r\n\r\n"
            );
            let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
            assert_eq!(
                reply.status(),
                Some(400),
                "{host} with {v:?}: {}",
                reply.text()
            );
            assert!(
                reply
                    .text()
                    .to_ascii_lowercase()
                    .contains("x-sidekey-error: bad_request"),
                "{host} with {v:?}: not sidekey's bad_request: {}",
                reply.text()
            );
        }
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_duplicates_are_one_identity() {
    let (sk, up) = identity_setup();
    let req = "GET http://who.test/same HTTP/1.1\r\nHost: who.test\r\nX-SIDEKEY-USER: alice\r\nx-sidekey-user: alice\r\nConnection: close\r\n\r\n";
    let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
    assert_eq!(reply.status(), Some(200), "{}", reply.text());
    let r = up.only();
    assert_eq!(r.header_all("authorization"), vec!["Bearer alice-tok-9d1f"]);
    assert_no_identity_headers(&up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_names_are_never_identity_and_never_forwarded() {
    let (sk, up) = identity_setup();
    let lookalikes = [
        "x_sidekey_user",
        "X_SIDEKEY_USER",
        "x-sidekey_user",
        "X_Sidekey-User",
    ];
    // Alone on an assistant route: not an identity.
    for name in lookalikes {
        let req = format!(
            "GET http://who.test/la HTTP/1.1\r\nHost: who.test\r\n{name}: alice\r\nConnection: close\r\n\r\n"
        );
        let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
        assert_eq!(reply.status(), Some(401), "{name}: {}", reply.text());
        assert!(
            reply.text().contains("identity_required"),
            "{name}: {}",
            reply.text()
        );
    }
    assert_eq!(up.count(), 0, "{:#?}", up.requests());
    // Next to the real header: the real one wins, the look-alike is dropped.
    for name in lookalikes {
        let req = format!(
            "GET http://who.test/both HTTP/1.1\r\nHost: who.test\r\nx-sidekey-user: alice\r\n{name}: bob\r\nConnection: close\r\n\r\n"
        );
        let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
        assert_eq!(reply.status(), Some(200), "{name}: {}", reply.text());
    }
    // Passthrough routes and the passthrough default forward nothing of it either.
    for host in ["open.test", "other.test"] {
        for name in lookalikes
            .iter()
            .chain(["x-sidekey-user", "X-SIDEKEY-USER"].iter())
        {
            let req = format!(
                "GET http://{host}/pass HTTP/1.1\r\nHost: {host}\r\n{name}: mallory\r\nConnection: close\r\n\r\n"
            );
            let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
            assert_eq!(reply.status(), Some(200), "{host} {name}: {}", reply.text());
        }
    }
    // And over h2c.
    let r = h2c_request(
        sk.proxy_addr,
        "GET",
        "http://open.test/h2",
        &[("x_sidekey_user", "mallory"), ("x-sidekey-user", "alice")],
        empty(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let n = lookalikes.len() + 2 * (lookalikes.len() + 2) + 1;
    let reqs = up.wait_requests(n, REQ_TIMEOUT);
    for r in reqs.iter().filter(|r| r.path == "/both") {
        assert_eq!(r.header_all("authorization"), vec!["Bearer alice-tok-9d1f"]);
    }
    assert_no_identity_headers(&up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_identity_binds_inner_requests() {
    let up = TlsUpstream::start(&["who.test"]);
    let dir = ConfigDir::new();
    dir.write("creds/alice.txt", "alice-tok-9d1f\n");
    dir.write("creds/bob.txt", "bob-tok-7e2a\n");
    let ca = SidekeyCa::init(dir.path());
    let cfg = format!(
        "{}default: deny\n{}upstreams:\n  who.test: {}\ncredentials:\n  per-user:\n    source: file\n    file: creds/{{user}}.txt\nroutes:\n  - name: who\n    match: {{host: who.test}}\n    auth: assistant\n    credential: per-user\n",
        yaml_head("identity-connect"),
        ca.tls_yaml(&[up.ca_pem_path()]),
        up.host_port()
    );
    let sk = Sidekey::start_in(dir, &cfg, &[]);

    // A CONNECT carrying two differing identities is refused outright.
    let reply = connect_raw(
        sk.proxy_addr,
        "who.test:443",
        &[("x-sidekey-user", "alice"), ("X-Sidekey-User", "bob")],
    )
    .await;
    assert_sidekey_error(&reply.resp(), 400, "bad_request");

    let tls = open_tunnel(
        sk.proxy_addr,
        "who.test:443",
        &[("x-sidekey-user", "alice")],
        "who.test",
        client_tls(&ca.cert, &["http/1.1"]),
    )
    .await;
    let h = |extra: &[(&'static str, &'static str)]| {
        let mut v = vec![("host", "who.test")];
        v.extend_from_slice(extra);
        v
    };
    let resps = send_over(
        tls,
        false,
        vec![
            tunnel_req("GET", "/switch", &h(&[("x-sidekey-user", "bob")]), empty()),
            tunnel_req("GET", "/case", &h(&[("x-sidekey-user", "ALICE")]), empty()),
            tunnel_req(
                "GET",
                "/two",
                &h(&[("x-sidekey-user", "alice"), ("x-sidekey-user", "bob")]),
                empty(),
            ),
            tunnel_req(
                "GET",
                "/lookalike",
                &h(&[("x_sidekey_user", "bob")]),
                empty(),
            ),
            tunnel_req("GET", "/inherit", &h(&[]), empty()),
        ],
    )
    .await;
    assert_sidekey_error(&resps[0], 400, "bad_request");
    assert_sidekey_error(&resps[1], 400, "bad_request");
    assert_sidekey_error(&resps[2], 400, "bad_request");
    assert_eq!(
        resps[3].status,
        200,
        "look-alike is ignored: {}",
        resps[3].text()
    );
    assert_eq!(resps[4].status, 200, "{}", resps[4].text());
    let reqs = up.wait_requests(2, REQ_TIMEOUT);
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for r in &reqs {
        assert!(r.path == "/lookalike" || r.path == "/inherit", "{}", r.path);
        assert_eq!(r.header_all("authorization"), vec!["Bearer alice-tok-9d1f"]);
        for (k, v) in &r.headers {
            assert_ne!(normalised_name(k), "x-sidekey-user", "{k}: {v}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Path rules
// ---------------------------------------------------------------------------------------

/// `api.test`: deny `/admin*`, then allow everything else with a credential.
fn path_setup() -> (Sidekey, Upstream) {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  api.test: {u}\ncredentials:\n  tok:\n    source: env\n    env: PROTO_TOKEN\nroutes:\n  - name: no-admin\n    match: {{host: api.test, path: \"/admin*\"}}\n    auth: deny\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: tok\n",
        yaml_head("path-agent"),
        u = up.host_port()
    );
    (Sidekey::start(&cfg, &[("PROTO_TOKEN", TOKEN)]), up)
}

/// Whether an origin path (as the upstream received it) lands on `/admin...` for a
/// server that decodes once, treats `\` as `/` and resolves dot segments.
fn lands_on_admin(origin_path: &str) -> bool {
    normalize_path(origin_path).starts_with("/admin")
}

/// Sends `GET http://api.test<path>` raw; returns violations.
async fn try_paths(
    sk: &Sidekey,
    up: &Upstream,
    paths: &[&str],
    view: fn(&str) -> bool,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for path in paths {
        let before = up.count();
        let req = format!(
            "GET http://api.test{path} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n"
        );
        let reply = raw_exchange(sk.proxy_addr, req.as_bytes(), WAIT).await;
        let reqs = up.requests();
        for r in &reqs[before..] {
            if view(&r.path) {
                wrong.push(format!(
                    "{path:?} reached the upstream as {:?} with a credential: {}",
                    r.path,
                    r.has_header("authorization")
                ));
            }
        }
        let sidekey_error = reply
            .text()
            .to_ascii_lowercase()
            .contains("x-sidekey-error:");
        let status = reply.status();
        if reqs.len() == before && !(sidekey_error || matches!(status, Some(400))) {
            wrong.push(format!(
                "{path:?}: nothing upstream but no refusal either: {status:?}"
            ));
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_route_cannot_be_dodged_by_path_tricks() {
    let (sk, up) = path_setup();
    // Sanity: the rule works and other paths are allowed.
    let r = proxy_get(sk.proxy_addr, "http://api.test/admin", &[]).await;
    assert_sidekey_error(&r, 403, "route_denied");
    let r = proxy_get(sk.proxy_addr, "http://api.test/users", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let paths = [
        "/admin",
        "/admin/",
        "/admin/users",
        "/x/../admin",
        "/x/./../admin/users",
        "/%61dmin",
        "/%61%64%6D%69%6E",
        "/adm%69n/users",
        "//admin",
        "///admin",
        "/.//admin",
        "/admin;x=1",
        "/admin;x=1/users",
        "/./admin",
        "/%2e/admin",
        "/%2E%2E/admin",
        "/x/%2e%2e/admin",
        "/x/.%2e/admin",
        "/x/%2e./admin",
        "/admin%2F..",
        "/admin%2f..%2f",
        "/x/..%2Fadmin",
        "/x/..%5Cadmin",
        "/x%2F..%2Fadmin",
        "/admin%00",
        "/admin%",
        "/admin%zz",
        "/x/../../../admin",
    ];
    let wrong = try_paths(&sk, &up, &paths, lands_on_admin).await;
    assert!(
        wrong.is_empty(),
        "deny route /admin* dodged:\n{}",
        wrong.join("\n")
    );
}

/// Servers in the Tomcat / Spring family drop `;params` from every segment *before*
/// resolving dot segments, so `/x/..;/admin` and `/;/admin` are `/admin` to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_route_cannot_be_dodged_by_path_parameters_on_dot_or_empty_segments() {
    let (sk, up) = path_setup();
    fn tomcat_view(p: &str) -> bool {
        let without: Vec<&str> = p
            .split('/')
            .map(|s| s.split(';').next().unwrap_or(""))
            .collect();
        lands_on_admin(&without.join("/"))
    }
    let paths = [
        "/x/..;/admin",
        "/x/..;x=1/admin/users",
        "/;/admin",
        "/;x/admin",
        "/.;/admin",
    ];
    let wrong = try_paths(&sk, &up, &paths, tomcat_view).await;
    assert!(
        wrong.is_empty(),
        "deny route /admin* dodged with ;params:\n{}",
        wrong.join("\n")
    );
}

/// An escaped `/` (or `\`) that starts a segment turns into an empty segment for any
/// server that decodes the path before routing (nginx, Go's `URL.Path`, many
/// frameworks): `/%2Fadmin` is `//admin`, i.e. `/admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_route_cannot_be_dodged_by_an_escaped_leading_slash() {
    let (sk, up) = path_setup();
    let paths = [
        "/%2Fadmin",
        "/%2fadmin/users",
        "/%5Cadmin",
        "/x/%2F%2Fadmin",
        "/%2F/admin",
    ];
    let wrong = try_paths(&sk, &up, &paths, lands_on_admin).await;
    assert!(
        wrong.is_empty(),
        "deny route /admin* dodged with escaped slashes:\n{}",
        wrong.join("\n")
    );
}

/// Paths are case-sensitive (as RFC 3986 and most upstreams treat them): a rule for
/// `/admin*` does not cover `/ADMIN`, and sidekey forwards `/ADMIN` unchanged. Operators
/// protecting a case-insensitive upstream must list each spelling (documented in
/// docs/hardening.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_case_sensitive_and_forwarded_unchanged() {
    let (sk, up) = path_setup();
    let r = proxy_get(sk.proxy_addr, "http://api.test/ADMIN", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = up.only();
    assert_eq!(
        rec.path, "/ADMIN",
        "sidekey must not change the case it matched on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_string_never_matches_a_path_rule() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  api.test: {u}\ncredentials:\n  tok:\n    source: env\n    env: PROTO_TOKEN\nroutes:\n  - name: no-admin\n    match: {{host: api.test, path: \"/admin*\"}}\n    auth: deny\n  - name: public\n    match: {{host: api.test, path: \"/public*\"}}\n    auth: claw\n    credential: tok\n",
        yaml_head("query-agent"),
        u = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &[("PROTO_TOKEN", TOKEN)]);
    // A query that looks like a denied path does not deny...
    let r = proxy_get(sk.proxy_addr, "http://api.test/public?/admin", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = up.only();
    assert_eq!(rec.path, "/public");
    assert_eq!(rec.query.as_deref(), Some("/admin"));
    // ...and a query that looks like an allowed path does not allow.
    for url in [
        "http://api.test/admin?/public",
        "http://api.test/other?/public",
    ] {
        let r = proxy_get(sk.proxy_addr, url, &[]).await;
        assert_sidekey_error(&r, 403, "route_denied");
    }
    assert_eq!(up.count(), 1, "{:#?}", up.requests());
    // The audit path never carries the query.
    for a in sk.wait_audit(3) {
        assert!(!a["path"].as_str().unwrap_or("").contains('?'), "{a}");
    }
}
