//! Hardening: the injected secret never reaches the agent or the logs (SPEC "No error
//! body, log line or metric ever contains a secret value", response scrubbing), and
//! nothing an agent or upstream sends can forge or bloat a log line.
//!
//! A small raw upstream ([`RawUpstream`]) writes exactly the bytes a test scripts, so an
//! upstream can echo the credential split across chunk boundaries, in a header, in the
//! reason phrase, in trailers, gzip-compressed, or answer with a redirect. A raw client
//! reads sidekey's answer byte for byte, so a leak anywhere in the response is seen.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The claw token. Lower-case, so it could even be a header name.
const TOKEN: &str = "tok-leak-3f9a2c71b8e4";
/// Alice's per-user token.
const ALICE_TOKEN: &str = "alice-leak-77d0c3e915";
/// The password of the Basic route.
const BASIC_TOKEN: &str = "basic-leak-51aa0e6f22";
/// The token of the query-injected route.
const QUERY_TOKEN: &str = "query-leak-0b9d4c3a18";

// ---------------------------------------------------------------------------------------
// Encodings of a secret (what sidekey promises to mask)
// ---------------------------------------------------------------------------------------

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn b64(s: &str) -> String {
    base64(s.as_bytes()).trim_end_matches('=').to_string()
}

fn b64url(s: &str) -> String {
    b64(s).replace('+', "-").replace('/', "_")
}

/// Every form of `secret` that must never reach the agent or a log.
fn forms(secret: &str) -> Vec<String> {
    vec![secret.to_string(), pct(secret), b64(secret), b64url(secret)]
}

fn find(hay: &[u8], needle: &str) -> bool {
    let n = needle.as_bytes();
    !n.is_empty() && hay.windows(n.len()).any(|w| w == n)
}

/// Which forms of which secrets occur in `hay`.
fn leaks(hay: &[u8], secrets: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for s in secrets {
        for f in forms(s) {
            if find(hay, &f) {
                out.push(f);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// A scripted raw upstream
// ---------------------------------------------------------------------------------------

type Script = dyn Fn(&str) -> Vec<Vec<u8>> + Send + Sync;

/// An HTTP/1.1 upstream that records each request head and answers with the segments
/// its script returns for that head, written one by one (flushed, 15 ms apart, so
/// each arrives at sidekey in its own read), then closes the connection.
struct RawUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl RawUpstream {
    fn start(script: impl Fn(&str) -> Vec<Vec<u8>> + Send + Sync + 'static) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let heads: Arc<Mutex<Vec<String>>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (h, st) = (heads.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let (h, script) = (h.clone(), script.clone());
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                            let mut head = Vec::new();
                            let mut b = [0u8; 1];
                            while !head.ends_with(b"\r\n\r\n") {
                                match s.read(&mut b) {
                                    Ok(1) => head.push(b[0]),
                                    _ => return,
                                }
                            }
                            let head = String::from_utf8_lossy(&head).into_owned();
                            h.lock().unwrap().push(head.clone());
                            for seg in script(&head) {
                                if s.write_all(&seg).is_err() || s.flush().is_err() {
                                    return;
                                }
                                std::thread::sleep(Duration::from_millis(15));
                            }
                            let _ = s.shutdown(std::net::Shutdown::Write);
                            // Drain until the peer closes, so nothing is reset early.
                            let mut sink = [0u8; 1024];
                            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RawUpstream { addr, heads, stop }
    }

    fn host_port(&self) -> String {
        self.addr.to_string()
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// The value of `name` in the `i`th request head.
    fn header(&self, i: usize, name: &str) -> Option<String> {
        let heads = self.heads();
        heads.get(i)?.split("\r\n").find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The Authorization value in a request head (what sidekey injected).
fn auth_of(head: &str) -> String {
    head.split("\r\n")
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// The request target of a head (`GET /x HTTP/1.1` -> `/x`).
fn target_of(head: &str) -> String {
    head.split_whitespace().nth(1).unwrap_or("").to_string()
}

/// `s` cut into pieces at the given byte offsets.
fn cut(s: &[u8], at: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut prev = 0;
    for &a in at {
        let a = a.min(s.len());
        out.push(s[prev..a].to_vec());
        prev = a;
    }
    out.push(s[prev..].to_vec());
    out
}

/// A chunked HTTP/1.1 response head plus one chunk per piece, then `trailers`.
fn chunked(status_line: &str, headers: &str, pieces: &[Vec<u8>], trailers: &str) -> Vec<Vec<u8>> {
    let mut segs = vec![
        format!(
            "{status_line}\r\n{headers}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
    ];
    for p in pieces.iter().filter(|p| !p.is_empty()) {
        let mut c = format!("{:x}\r\n", p.len()).into_bytes();
        c.extend_from_slice(p);
        c.extend_from_slice(b"\r\n");
        segs.push(c);
    }
    segs.push(format!("0\r\n{trailers}\r\n").into_bytes());
    segs
}

// ---------------------------------------------------------------------------------------
// A raw client that decodes what it reads
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct RawResp {
    /// Everything read, as is.
    raw: Vec<u8>,
    status_line: String,
    status: u16,
    headers: Vec<(String, String)>,
    /// De-chunked body.
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Everything the agent can see, decoded: status line, header names and values,
    /// body, trailers.
    fn visible(&self) -> Vec<u8> {
        let mut v = self.status_line.clone().into_bytes();
        for (k, val) in self.headers.iter().chain(&self.trailers) {
            v.extend_from_slice(format!("\n{k}: {val}").as_bytes());
        }
        v.push(b'\n');
        v.extend_from_slice(&self.body);
        v
    }
}

fn parse_fields(block: &str) -> Vec<(String, String)> {
    block
        .split("\r\n")
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn parse_response(raw: Vec<u8>) -> RawResp {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return RawResp {
            raw,
            ..Default::default()
        };
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let (status_line, fields) = head.split_once("\r\n").unwrap_or((&head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = parse_fields(fields);
    let rest = &raw[end + 4..];
    let is_chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    if is_chunked {
        let mut i = 0;
        while let Some(nl) = rest[i..].windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[i..i + nl]).into_owned();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            i += nl + 2;
            if size == 0 {
                let t = String::from_utf8_lossy(&rest[i..]).into_owned();
                trailers = parse_fields(&t);
                break;
            }
            let stop = (i + size).min(rest.len());
            body.extend_from_slice(&rest[i..stop]);
            i = stop + 2;
            if i >= rest.len() {
                break;
            }
        }
    } else {
        body = rest.to_vec();
    }
    RawResp {
        status_line: status_line.to_string(),
        status,
        headers,
        body,
        trailers,
        raw,
    }
}

/// Sends `GET url` (absolute-form) with `headers` and `Connection: close` and reads the
/// whole raw answer.
async fn raw_get(proxy: SocketAddr, url: &str, headers: &[(&str, &str)]) -> RawResp {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("");
    let mut req =
        format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nTE: trailers\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let fut = async {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        raw
    };
    let raw = tokio::time::timeout(REQ_TIMEOUT, fut)
        .await
        .expect("no complete answer in time");
    parse_response(raw)
}

// ---------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------

/// Routes, all on upstream `raw` unless named otherwise:
/// `claw.test` (bearer TOKEN), `basic.test` (Basic bot:BASIC_TOKEN), `query.test`
/// (`?api_key=QUERY_TOKEN`), `who.test` (alice's file token), `keep.test` (bearer TOKEN,
/// keeps cookies), `open.test` (passthrough), `other.test` (passthrough, on `other`).
fn leak_cfg(raw: &str, other: &str, agent: &str) -> (ConfigDir, String) {
    let dir = ConfigDir::new();
    dir.write("creds/alice.txt", format!("{ALICE_TOKEN}\n"));
    let cfg = format!(
        "{head}default: deny\nupstreams:\n  claw.test: {raw}\n  basic.test: {raw}\n  query.test: {raw}\n  who.test: {raw}\n  keep.test: {raw}\n  open.test: {raw}\n  other.test: {other}\n\
credentials:\n  claw:\n    source: env\n    env: LEAK_TOKEN\n  basic:\n    source: env\n    env: LEAK_BASIC\n    inject: {{basic: {{username: bot}}}}\n  query:\n    source: env\n    env: LEAK_QUERY\n    inject: {{query: api_key}}\n  per-user:\n    source: file\n    file: creds/{{user}}.txt\n\
routes:\n  - name: claw\n    match: {{host: claw.test}}\n    auth: claw\n    credential: claw\n  - name: basic\n    match: {{host: basic.test}}\n    auth: claw\n    credential: basic\n  - name: query\n    match: {{host: query.test}}\n    auth: claw\n    credential: query\n  - name: who\n    match: {{host: who.test}}\n    auth: assistant\n    credential: per-user\n  - name: keep\n    match: {{host: keep.test}}\n    auth: claw\n    credential: claw\n    keep_client_headers: [cookie]\n  - name: open\n    match: {{host: open.test}}\n    auth: passthrough\n  - name: other\n    match: {{host: other.test}}\n    auth: passthrough\n",
        head = yaml_head(agent)
    );
    (dir, cfg)
}

fn leak_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("LEAK_TOKEN", TOKEN),
        ("LEAK_BASIC", BASIC_TOKEN),
        ("LEAK_QUERY", QUERY_TOKEN),
    ]
}

fn start_leak(raw: &RawUpstream, other: &str, agent: &str, extra_env: &[(&str, &str)]) -> Sidekey {
    let (dir, cfg) = leak_cfg(&raw.host_port(), other, agent);
    let mut env = leak_env();
    env.extend_from_slice(extra_env);
    Sidekey::start_in(dir, &cfg, &env)
}

const ALL_SECRETS: [&str; 4] = [TOKEN, ALICE_TOKEN, BASIC_TOKEN, QUERY_TOKEN];

/// An upstream that echoes what it received back in every place a response has.
fn echo_everywhere() -> RawUpstream {
    RawUpstream::start(|head| {
        let auth = auth_of(head);
        let target = target_of(head);
        if target.starts_with("/gzip") {
            let gz = gzip_stored(format!("auth={auth}").as_bytes(), &[12]);
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                gz.len()
            )
            .into_bytes();
            r.extend_from_slice(&gz);
            return vec![r];
        }
        let echo = format!("auth={auth} target={target}");
        let body = format!(
            "data: {echo}\n\ndata: b64={} b64url={} pct={}\n\n",
            base64(auth.as_bytes()),
            b64url(&auth),
            pct(&auth)
        );
        let bytes = body.into_bytes();
        // Cut every 5 bytes so each secret straddles several chunks.
        let at: Vec<usize> = (1..bytes.len() / 5).map(|i| i * 5).collect();
        chunked(
            "HTTP/1.1 200 OK",
            &format!(
                "Content-Type: text/event-stream\r\nSet-Cookie: upstream-session=1\r\nX-Echo-Auth: {auth}\r\nX-Echo-Target: {target}\r\nLocation: https://cb.example/done?{}\r\n",
                target.split('?').nth(1).unwrap_or("")
            ),
            &cut(&bytes, &at),
            &format!("X-Trailer-Auth: {auth}\r\n"),
        )
    })
}

// ---------------------------------------------------------------------------------------
// Masking in bodies
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_token_in_a_plain_body_is_masked_with_the_same_length() {
    let up = Upstream::start();
    let cfg = format!(
        "{}default: deny\nupstreams:\n  api.test: {}\ncredentials:\n  claw:\n    source: env\n    env: LEAK_TOKEN\nroutes:\n  - name: api\n    match: {{host: api.test}}\n    auth: claw\n    credential: claw\n",
        yaml_head("leak-plain"),
        up.host_port()
    );
    let sk = Sidekey::start(&cfg, &[("LEAK_TOKEN", TOKEN)]);
    let r = proxy_get(sk.proxy_addr, "http://api.test/echo-auth", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        up.only().header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str()),
        "the upstream did get the token"
    );
    assert_eq!(r.text(), format!("Bearer {}", "*".repeat(TOKEN.len())));
    if let Some(cl) = r.header("content-length") {
        assert_eq!(
            cl,
            r.body.len().to_string(),
            "content-length must stay valid"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_split_across_chunks_of_an_sse_stream_is_masked() {
    let sse = format!(
        "data: {{\"echo\":\"Bearer {TOKEN}\"}}\n\ndata: b64 {}\n\ndata: url {}\n\ndata: pct {}\n\ndata: done\n\n",
        b64(TOKEN),
        b64url(TOKEN),
        pct(TOKEN)
    );
    let expected = sse
        .replace(TOKEN, &"*".repeat(TOKEN.len()))
        .replace(&b64(TOKEN), &"*".repeat(b64(TOKEN).len()))
        .replace(&b64url(TOKEN), &"*".repeat(b64url(TOKEN).len()))
        .replace(&pct(TOKEN), &"*".repeat(pct(TOKEN).len()));
    let bytes = sse.clone().into_bytes();
    // Cut inside every form: 3 bytes into each.
    let mut at = Vec::new();
    for f in forms(TOKEN) {
        let pos = sse.find(&f).unwrap();
        at.extend([pos + 3, pos + f.len() / 2, pos + f.len() - 1]);
    }
    at.sort();
    let pieces = cut(&bytes, &at);
    let chunked_up = {
        let pieces = pieces.clone();
        RawUpstream::start(move |_| {
            chunked(
                "HTTP/1.1 200 OK",
                "Content-Type: text/event-stream\r\n",
                &pieces,
                "",
            )
        })
    };
    // The same pieces with a Content-Length: separate TCP writes, not chunks.
    let sized_up = {
        let pieces = pieces.clone();
        let len = bytes.len();
        RawUpstream::start(move |_| {
            let mut segs = vec![
                format!("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
                    .into_bytes(),
            ];
            segs.extend(pieces.iter().filter(|p| !p.is_empty()).cloned());
            segs
        })
    };
    for (label, up) in [("chunked", &chunked_up), ("content-length", &sized_up)] {
        let sk = start_leak(up, "127.0.0.1:9", "leak-sse", &[]);
        let r = raw_get(sk.proxy_addr, "http://claw.test/stream", &[]).await;
        assert_eq!(
            r.status,
            200,
            "{label}: {}",
            String::from_utf8_lossy(&r.raw)
        );
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            expected,
            "{label}: the body must be the upstream's with each form masked in place"
        );
        assert_eq!(r.body.len(), bytes.len(), "{label}: same length");
        if let Some(cl) = r.header("content-length") {
            assert_eq!(cl, bytes.len().to_string(), "{label}");
        }
        assert!(leaks(&r.visible(), &[TOKEN]).is_empty(), "{label}");
    }
}

// ---------------------------------------------------------------------------------------
// Masking everywhere else in a response
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credentials_never_reach_the_agent_anywhere_in_the_response() {
    let raw = echo_everywhere();
    let sk = start_leak(&raw, "127.0.0.1:9", "leak-everywhere", &[]);
    let cases = [
        ("http://claw.test/e", vec![], TOKEN),
        ("http://basic.test/e", vec![], BASIC_TOKEN),
        ("http://query.test/e?x=1", vec![], QUERY_TOKEN),
        (
            "http://who.test/e",
            vec![("x-sidekey-user", "alice")],
            ALICE_TOKEN,
        ),
    ];
    let mut wrong = Vec::new();
    for (i, (url, headers, secret)) in cases.iter().enumerate() {
        let r = raw_get(sk.proxy_addr, url, headers).await;
        if r.status != 200 {
            wrong.push(format!(
                "{url}: status {} {}",
                r.status,
                String::from_utf8_lossy(&r.raw)
            ));
            continue;
        }
        // The upstream really got the secret (so there was something to leak).
        let head = &raw.heads()[i];
        assert!(
            find(head.as_bytes(), secret) || find(head.as_bytes(), &b64(&format!("bot:{secret}"))),
            "{url}: upstream did not receive the credential: {head}"
        );
        let found = leaks(&r.visible(), &ALL_SECRETS);
        if !found.is_empty() {
            wrong.push(format!(
                "{url}: agent saw {found:?} in {:?}",
                String::from_utf8_lossy(&r.visible())
            ));
        }
        // The Basic value is masked as a whole, not just the password.
        if *secret == BASIC_TOKEN {
            let basic = base64(format!("bot:{BASIC_TOKEN}").as_bytes());
            assert!(!find(&r.visible(), &basic), "{url}: Basic value visible");
        }
        // Masks keep lengths: the echoed header is as long as what was sent.
        let sent = auth_of(head);
        if !sent.is_empty() {
            assert_eq!(
                r.header("x-echo-auth").map(str::len),
                Some(sent.len()),
                "{url}: masked header must keep its length"
            );
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A request that asks for an upgrade (`Connection: upgrade`, `Upgrade: websocket`) takes
/// sidekey's WebSocket path. When the upstream does not switch protocols and answers an
/// ordinary response instead, that response must get the same hygiene as any other on
/// an injecting route: secrets masked, cookies dropped, compressed bodies refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_an_upgrade_does_not_bypass_response_hygiene() {
    let raw = echo_everywhere();
    let sk = start_leak(&raw, "127.0.0.1:9", "leak-upgrade", &[]);
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
    ];
    let mut wrong = Vec::new();
    for url in [
        "http://claw.test/ws",
        "http://basic.test/ws",
        "http://query.test/ws",
    ] {
        let r = raw_get(sk.proxy_addr, url, &upgrade).await;
        let basic = base64(format!("bot:{BASIC_TOKEN}").as_bytes());
        let mut found = leaks(&r.visible(), &ALL_SECRETS);
        if find(&r.visible(), &basic) {
            found.push(basic);
        }
        if !found.is_empty() {
            wrong.push(format!(
                "{url}: status {} and the agent saw {found:?}",
                r.status
            ));
        }
        if !r.header_all("set-cookie").is_empty() {
            wrong.push(format!(
                "{url}: Set-Cookie passed: {:?}",
                r.header_all("set-cookie")
            ));
        }
    }
    let r = raw_get(sk.proxy_addr, "http://claw.test/gzip", &upgrade).await;
    if r.status != 502 {
        wrong.push(format!(
            "gzip with an upgrade request: status {} content-encoding {:?}",
            r.status,
            r.header("content-encoding")
        ));
    }
    assert!(
        wrong.is_empty(),
        "the upgrade path skips response hygiene:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_the_reason_phrase_never_reaches_the_agent() {
    let raw = RawUpstream::start(|_| {
        vec![
            format!("HTTP/1.1 200 {TOKEN}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .into_bytes(),
        ]
    });
    let sk = start_leak(&raw, "127.0.0.1:9", "leak-reason", &[]);
    let r = raw_get(sk.proxy_addr, "http://claw.test/reason", &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
    assert!(
        leaks(&r.raw, &[TOKEN]).is_empty(),
        "the token came back in the status line: {:?}",
        r.status_line
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_as_a_response_header_name_never_reaches_the_agent() {
    let raw = RawUpstream::start(|_| {
        vec![format!("HTTP/1.1 200 OK\r\nx-{TOKEN}: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").into_bytes()]
    });
    let sk = start_leak(&raw, "127.0.0.1:9", "leak-name", &[]);
    let r = raw_get(sk.proxy_addr, "http://claw.test/name", &[]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
    assert!(
        leaks(&r.raw, &[TOKEN]).is_empty(),
        "the token came back as a header name: {:?}",
        r.headers
    );
}

// ---------------------------------------------------------------------------------------
// Compressed bodies
// ---------------------------------------------------------------------------------------

/// CRC-32 (IEEE), for building gzip members in the test.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks cut at `at`:
/// the token is split by block headers, so it is not contiguous in the wire bytes,
/// yet any gzip decoder gives it back whole.
fn gzip_stored(data: &[u8], at: &[usize]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let pieces = cut(data, at);
    for (i, p) in pieces.iter().enumerate() {
        out.push(if i + 1 == pieces.len() { 1 } else { 0 });
        let len = p.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(p);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Decodes a gzip member made only of stored blocks (enough for what the test sends).
fn gunzip_stored(gz: &[u8]) -> Option<Vec<u8>> {
    if gz.len() < 18 || gz[0] != 0x1f || gz[1] != 0x8b {
        return None;
    }
    let mut i = 10;
    let mut out = Vec::new();
    loop {
        let hdr = *gz.get(i)?;
        let len = u16::from_le_bytes([*gz.get(i + 1)?, *gz.get(i + 2)?]) as usize;
        i += 5;
        out.extend_from_slice(gz.get(i..i + len)?);
        i += len;
        if hdr & 1 == 1 {
            return Some(out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_response_on_an_injecting_route_is_502() {
    let encodings = [
        "Content-Encoding: gzip",
        "Content-Encoding: GZIP",
        "Content-Encoding: x-gzip",
        "Content-Encoding: br",
        "Content-Encoding: deflate",
        "Content-Encoding: identity, gzip",
        "Content-Encoding: identity\r\nContent-Encoding: gzip",
    ];
    let mut wrong = Vec::new();
    for enc in encodings {
        let enc_owned = enc.to_string();
        let raw = RawUpstream::start(move |head| {
            let echo = format!("{{\"authorization\":\"{}\"}}", auth_of(head));
            let pos = echo.find("tok-").unwrap_or(0);
            let gz = gzip_stored(echo.as_bytes(), &[pos + 4, pos + 10]);
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{enc_owned}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                gz.len()
            )
            .into_bytes();
            r.extend_from_slice(&gz);
            vec![r]
        });
        let sk = start_leak(&raw, "127.0.0.1:9", "leak-gzip", &[]);
        let r = raw_get(sk.proxy_addr, "http://claw.test/gzip", &[]).await;
        assert_eq!(
            raw.header(0, "accept-encoding").as_deref(),
            Some("identity"),
            "sidekey must ask for an uncompressed body on an injecting route"
        );
        let decoded = gunzip_stored(&r.body).unwrap_or_default();
        let leaked = !leaks(&decoded, &[TOKEN]).is_empty();
        let is_502 = r.status == 502 && r.header("x-sidekey-error") == Some("upstream_error");
        if !is_502 || leaked {
            wrong.push(format!(
                "{enc:?}: status {} (x-sidekey-error {:?}); token recoverable by gunzip: {leaked}",
                r.status,
                r.header("x-sidekey-error")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "compressed bodies on an injecting route:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_response_on_a_passthrough_route_passes_untouched() {
    let body = gzip_stored(b"{\"hello\":\"world\"}", &[]);
    let sent = body.clone();
    let raw = RawUpstream::start(move |_| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            sent.len()
        )
        .into_bytes();
        r.extend_from_slice(&sent);
        vec![r]
    });
    let sk = start_leak(&raw, "127.0.0.1:9", "leak-gzip-pass", &[]);
    let r = raw_get(
        sk.proxy_addr,
        "http://open.test/gzip",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.body, body);
    assert_eq!(raw.header(0, "accept-encoding").as_deref(), Some("gzip"));
}

// ---------------------------------------------------------------------------------------
// Cookies and redirects
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_set_cookie_is_dropped_on_injecting_routes_unless_kept() {
    let raw = RawUpstream::start(|_| {
        vec![b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; HttpOnly\r\nSet-Cookie: other=1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec()]
    });
    let sk = start_leak(&raw, "127.0.0.1:9", "leak-cookie", &[]);
    let injecting = raw_get(sk.proxy_addr, "http://claw.test/c", &[]).await;
    assert_eq!(injecting.status, 200);
    assert!(
        injecting.header_all("set-cookie").is_empty(),
        "Set-Cookie on an injecting route: {:?}",
        injecting.headers
    );
    let kept = raw_get(sk.proxy_addr, "http://keep.test/c", &[]).await;
    assert_eq!(kept.header_all("set-cookie").len(), 2, "{:?}", kept.headers);
    let open = raw_get(sk.proxy_addr, "http://open.test/c", &[]).await;
    assert_eq!(open.header_all("set-cookie").len(), 2, "{:?}", open.headers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_passed_back_not_followed_and_the_next_hop_gets_its_own_policy() {
    let other = Upstream::start();
    let raw = RawUpstream::start(|head| {
        let target = target_of(head);
        let (status, location) = if target.contains("same") {
            ("307 Temporary Redirect", "/landing-same".to_string())
        } else {
            ("302 Found", "http://other.test/landing".to_string())
        };
        vec![format!("HTTP/1.1 {status}\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()]
    });
    let sk = start_leak(&raw, &other.host_port(), "leak-redirect", &[]);
    let r = raw_get(sk.proxy_addr, "http://claw.test/go", &[]).await;
    assert_eq!(r.status, 302, "{}", String::from_utf8_lossy(&r.raw));
    assert_eq!(r.header("location"), Some("http://other.test/landing"));
    let r = raw_get(sk.proxy_addr, "http://claw.test/same", &[]).await;
    assert_eq!(r.status, 307);
    assert_eq!(r.header("location"), Some("/landing-same"));
    assert_eq!(
        raw.heads().len(),
        2,
        "sidekey followed a redirect: {:#?}",
        raw.heads()
    );
    assert_eq!(other.count(), 0, "sidekey followed the cross-host redirect");
    // The agent follows it itself: other.test's route (passthrough) applies, so no
    // credential goes with it.
    let f = proxy_get(sk.proxy_addr, "http://other.test/landing", &[]).await;
    assert_eq!(f.status, 200, "{}", f.text());
    let rec = other.only();
    assert!(!rec.has_header("authorization"), "{:?}", rec.headers);
    for (_, v) in &rec.headers {
        assert!(leaks(v.as_bytes(), &ALL_SECRETS).is_empty(), "{v}");
    }
}

// ---------------------------------------------------------------------------------------
// Log and audit forging
// ---------------------------------------------------------------------------------------

const MAX_FIELD: usize = 1024;

/// Every line on stdout and stderr is one JSON object; returns them all.
#[track_caller]
fn all_lines_are_json(sk: &Sidekey) -> Vec<Value> {
    let mut out = Vec::new();
    for (stream, text) in [("stdout", sk.stdout_text()), ("stderr", sk.stderr_text())] {
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{stream} line is not JSON ({e}): {line:?}"));
            assert!(v.is_object(), "{stream} line is not an object: {line}");
            out.push(v);
        }
    }
    out
}

fn longest_string(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(longest_string).max().unwrap_or(0),
        Value::Object(o) => o.values().map(longest_string).max().unwrap_or(0),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_user_ids_and_paths_cannot_forge_or_bloat_log_lines() {
    let up = Upstream::start();
    let dir = ConfigDir::new();
    let cfg = format!(
        "{}default: passthrough\nupstreams:\n  who.test: {u}\n  api.test: {u}\ncredentials:\n  per-user:\n    source: file\n    file: creds/{{user}}.txt\nroutes:\n  - name: who\n    match: {{host: who.test}}\n    auth: assistant\n    credential: per-user\n  - name: deny-long\n    match: {{host: api.test, path: \"/deny/*\"}}\n    auth: deny\n",
        yaml_head("forge-agent"),
        u = up.host_port()
    );
    let sk = Sidekey::start_in(dir, &cfg, &[("SIDEKEY_LOG", "debug")]);
    let forged_user = r#"x"}\n{"fake":1,"user":"root"#;
    let odd_users = [
        forged_user.to_string(),
        "a\\\"b\\u000a{\"fake\":1}".to_string(),
        "ünï\u{2028}cödé".to_string(),
        "u".repeat(256),
    ];
    for u in &odd_users {
        if http::HeaderValue::from_str(u).is_err() {
            // Not sendable as a visible-ASCII header: send the raw bytes instead.
            let req = format!(
                "GET http://who.test/u HTTP/1.1\r\nHost: who.test\r\nx-sidekey-user: {u}\r\nConnection: close\r\n\r\n"
            );
            let mut s = TcpStream::connect(sk.proxy_addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(REQ_TIMEOUT, s.read_to_end(&mut sink)).await;
            continue;
        }
        let r = proxy_get(sk.proxy_addr, "http://who.test/u", &[("x-sidekey-user", u)]).await;
        assert!(r.status >= 400, "{u:?}: {}", r.status);
    }
    // Control bytes and over-long ids over raw sockets.
    for u in [
        &b"evil\x1b[31mred"[..],
        b"a\x7fb",
        b"a\x0bb",
        &[b'l'; 300][..],
    ] {
        let mut req =
            b"GET http://who.test/u HTTP/1.1\r\nHost: who.test\r\nx-sidekey-user: ".to_vec();
        req.extend_from_slice(u);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let mut s = TcpStream::connect(sk.proxy_addr).await.unwrap();
        s.write_all(&req).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(REQ_TIMEOUT, s.read_to_end(&mut reply)).await;
        assert!(
            reply.starts_with(b"HTTP/1.1 400"),
            "user id {:?}: {:?}",
            String::from_utf8_lossy(u),
            String::from_utf8_lossy(&reply)
        );
    }
    // Escaped newlines and JSON in paths; a very long path; a very long host.
    let paths = [
        "/deny/x%0A%7B%22fake%22:1%7D".to_string(),
        "/deny/x%0D%0A%7B%22fake%22:1%7D%22%5C".to_string(),
        format!("/deny/{}", "p".repeat(6000)),
    ];
    for p in &paths {
        let r = proxy_get(sk.proxy_addr, &format!("http://api.test{p}"), &[]).await;
        assert_sidekey_error(&r, 403, "route_denied");
    }
    let long_host = format!("{}.invalid", "h".repeat(3000));
    let r = proxy_get(sk.proxy_addr, &format!("http://{long_host}/x"), &[]).await;
    assert!(
        r.status >= 400 && r.header("x-sidekey-error").is_some(),
        "{}",
        r.status
    );
    assert!(
        r.text().len() < 4096,
        "error body echoes the whole host: {} bytes",
        r.text().len()
    );

    // One audit record per request that reached sidekey's phases.
    let _ = sk.wait_audit(odd_users.len() + paths.len());
    let lines = all_lines_are_json(&sk);
    let mut wrong = Vec::new();
    for v in &lines {
        if v.get("fake").is_some() {
            wrong.push(format!("forged key in {v}"));
        }
        let longest = longest_string(v);
        if longest > MAX_FIELD + 256 {
            let shown: String = v.to_string().chars().take(300).collect();
            wrong.push(format!("a value of {longest} bytes: {shown}…"));
        }
    }
    // Audit fields that carry client text are bounded to 1 KiB + an ellipsis.
    for a in sk.audit_records() {
        for f in ["user", "host", "path"] {
            if let Some(s) = a[f].as_str()
                && s.len() > MAX_FIELD + "…".len()
            {
                wrong.push(format!("audit {f} of {} bytes", s.len()));
            }
        }
    }
    // The forged user id is recorded verbatim (escaped by JSON, not interpreted).
    if !sk
        .audit_records()
        .iter()
        .any(|a| a["user"].as_str() == Some(forged_user))
    {
        wrong.push("forged user id not recorded verbatim".into());
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------
// The sweep: many hostile things at once, then grep every byte sidekey wrote
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_no_secret_in_any_byte_sidekey_wrote() {
    let other = Upstream::start();
    let raw = echo_everywhere();
    let (dir, cfg) = leak_cfg(&raw.host_port(), &other.host_port(), "sweep-agent");
    // Extra hostile pieces: an upstream that is down, a route whose stored token is not
    // a valid header value, and a passthrough default.
    let cfg = cfg
        .replace("default: deny", "default: passthrough")
        .replace(
            "  other.test:",
            &format!("  down.test: 127.0.0.1:{}\n  other.test:", dead_port()),
        )
        + "  - name: down\n    match: {host: down.test}\n    auth: claw\n    credential: claw\n";
    let mut env = leak_env();
    // `SIDEKEY_SWEEP_LOG=trace` runs the sweep with every library's trace logs too.
    let level = std::env::var("SIDEKEY_SWEEP_LOG").unwrap_or_else(|_| "debug".into());
    env.push(("SIDEKEY_LOG", &level));
    let mut sk = Sidekey::start_in(dir, &cfg, &env);
    let p = sk.proxy_addr;

    // Echoing upstreams on every injecting route, with the agent's own credentials too.
    for (url, hdrs) in [
        (
            "http://claw.test/a?token=agent-supplied",
            vec![("authorization", "Bearer agent-own")],
        ),
        ("http://basic.test/b", vec![("cookie", "sid=agent")]),
        ("http://query.test/c?api_key=agent-key", vec![]),
        ("http://who.test/d", vec![("x-sidekey-user", "alice")]),
        ("http://keep.test/e", vec![("cookie", "a=b")]),
    ] {
        let r = raw_get(p, url, &hdrs).await;
        assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.raw));
        assert!(
            leaks(&r.visible(), &ALL_SECRETS).is_empty(),
            "{url}: {:?}",
            r.visible()
        );
    }
    // Failures of every kind.
    let fails = [
        proxy_get(p, "http://down.test/x", &[]).await,
        proxy_get(p, "http://who.test/x", &[]).await,
        proxy_get(p, "http://who.test/x", &[("x-sidekey-user", "nobody")]).await,
        proxy_get(
            p,
            "http://who.test/x",
            &[("x-sidekey-user", "alice"), ("x-sidekey-user", "bob")],
        )
        .await,
        proxy_get(p, "http://169.254.169.254/latest/meta-data/", &[]).await,
        proxy_get(p, "http://claw.test/x", &[("host", "evil.test")]).await,
        proxy_get(p, "http://claw.test/a/%2e%2e%2fb", &[]).await,
    ];
    for f in &fails {
        assert!(
            f.header("x-sidekey-error").is_some(),
            "{} {}",
            f.status,
            f.text()
        );
        assert!(leaks(&f.body, &ALL_SECRETS).is_empty(), "{}", f.text());
    }
    // Smuggling and parser abuse on raw sockets.
    for req in [
        &b"POST http://claw.test/s HTTP/1.1\r\nHost: claw.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"GET http://claw.test/s HTTP/1.1\r\nHost: claw.test\r\nX-A: a\x00b\r\n\r\n",
        b"GET http://claw.test/s HTTP/1.1\r\nHost: claw.test\r\nx-sidekey-user: \x1b[2J\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(p).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
        assert!(leaks(&sink, &ALL_SECRETS).is_empty());
    }
    // A compressed echo of the credential on an injecting route is refused.
    let r = raw_get(p, "http://claw.test/gzip", &[]).await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.raw));
    assert!(leaks(&r.visible(), &ALL_SECRETS).is_empty());
    // The metrics endpoint too.
    let metrics = http_get(sk.admin_addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(leaks(&metrics.body, &ALL_SECRETS).is_empty());

    // Let every audit record land, then stop sidekey so every byte is captured.
    let t0 = Instant::now();
    while sk.audit_records().len() < 12 && t0.elapsed() < AUDIT_TIMEOUT {
        std::thread::sleep(Duration::from_millis(20));
    }
    sk.shutdown(Duration::from_secs(10));
    let mut everything = sk.stdout_text().into_bytes();
    everything.extend_from_slice(sk.stderr_text().as_bytes());
    assert!(
        everything.len() > 1000,
        "sidekey wrote almost nothing: {everything:?}"
    );
    eprintln!(
        "sweep: sidekey wrote {} bytes at log level {level}",
        everything.len()
    );
    let mut secrets: Vec<String> = ALL_SECRETS.iter().map(|s| s.to_string()).collect();
    secrets.push(base64(format!("bot:{BASIC_TOKEN}").as_bytes()));
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let found = leaks(&everything, &refs);
    assert!(
        found.is_empty(),
        "secrets in sidekey's output: {found:?}\n{}",
        String::from_utf8_lossy(&everything)
    );
    for line in String::from_utf8_lossy(&everything).lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.is_object());
    }
}
