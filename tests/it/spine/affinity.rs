//! Spine: connection affinity (`src/proxy/affinity.rs`). A keep-alive client connection
//! keeps one plain-HTTP/1 upstream connection for its requests; an upstream that closes
//! it between requests costs a new dial, not an error; identity stays per request.
//!
//! The upstream here is a raw HTTP/1.1 server that numbers its connections, so a test
//! can see which upstream connection carried which request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// One request as the numbered upstream saw it.
#[derive(Clone, Debug)]
struct Seen {
    conn: usize,
    client: String,
    authorization: String,
}

/// A raw upstream that numbers connections; with `close_after`, it closes each
/// connection after that many responses without announcing it (no `Connection: close`),
/// like an upstream whose keep-alive timer fired.
struct NumberedUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<Mutex<usize>>,
}

impl NumberedUpstream {
    async fn start(close_after: Option<usize>) -> NumberedUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        let (seen2, accepted2) = (seen.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = {
                    let mut n = accepted2.lock().unwrap();
                    *n += 1;
                    *n
                };
                tokio::spawn(serve(stream, conn, close_after, seen2.clone()));
            }
        });
        NumberedUpstream {
            addr,
            seen,
            accepted,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

/// Answer bodiless requests on one connection until it closes (or `close_after`).
async fn serve(
    mut stream: tokio::net::TcpStream,
    conn: usize,
    close_after: Option<usize>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf = Vec::new();
    let mut answered = 0;
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let header = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        seen.lock().unwrap().push(Seen {
            conn,
            client: header("x-client"),
            authorization: header("authorization"),
        });
        let body = r#"{"ok":true}"#;
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        answered += 1;
        if close_after.is_some_and(|n| answered >= n) {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

const TOK: &str = "affinity-tok-5Rw8Kd";

fn config(up: &NumberedUpstream) -> String {
    format!(
        "{head}default: deny\nupstreams:\n  api.test: {up}\n  user.test: {up}\ncredentials:\n  bot:\n    source: env\n    env: AFF_TOKEN\n  user:\n    source: file\n    file: \"creds/{{user}}.txt\"\nroutes:\n  - {{name: claw, match: {{host: api.test}}, auth: claw, credential: bot}}\n  - {{name: assistant, match: {{host: user.test}}, auth: assistant, credential: user}}\n",
        head = yaml_head("affinity-agent"),
        up = up.addr
    )
}

fn start(up: &NumberedUpstream) -> Sidekey {
    let dir = ConfigDir::new();
    dir.write("creds/alice.txt", "alice-tok-1111\n");
    dir.write("creds/bob.txt", "bob-tok-2222\n");
    Sidekey::start_in(dir, &config(up), &[("AFF_TOKEN", TOK)])
}

async fn get(conn: &mut ProxyConn, url: &str, headers: &[(&str, &str)]) {
    let resp = conn.request("GET", url, headers, empty()).await;
    assert_eq!(resp.status, 200, "{url}: {}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keep_alive_client_gets_its_own_upstream_connection() {
    let up = NumberedUpstream::start(None).await;
    let sk = start(&up);
    let mut a = ProxyConn::open(sk.proxy_addr).await;
    let mut b = ProxyConn::open(sk.proxy_addr).await;
    // Interleaved: a pool would hand the one idle connection to whoever asks next.
    for _ in 0..3 {
        get(&mut a, "http://api.test/v1/a", &[("x-client", "a")]).await;
        get(&mut b, "http://api.test/v1/b", &[("x-client", "b")]).await;
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(
        up.connections(),
        2,
        "one upstream connection per client: {seen:?}"
    );
    let conn_of = |c: &str| -> Vec<usize> {
        let mut v: Vec<usize> = seen
            .iter()
            .filter(|s| s.client == c)
            .map(|s| s.conn)
            .collect();
        v.dedup();
        v
    };
    let (ca, cb) = (conn_of("a"), conn_of("b"));
    assert_eq!(
        ca.len(),
        1,
        "client a's requests on one connection: {seen:?}"
    );
    assert_eq!(
        cb.len(),
        1,
        "client b's requests on one connection: {seen:?}"
    );
    assert_ne!(ca, cb, "the clients do not share a connection: {seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.authorization == format!("Bearer {TOK}")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_between_requests_is_not_an_error() {
    let up = NumberedUpstream::start(Some(1)).await;
    let sk = start(&up);
    let mut a = ProxyConn::open(sk.proxy_addr).await;
    for i in 0..3 {
        get(
            &mut a,
            &format!("http://api.test/v1/{i}"),
            &[("x-client", "a")],
        )
        .await;
        // Let the upstream's close arrive before the next request.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And at once, racing the close: still answered (dialled again, or resent once).
    for i in 3..6 {
        get(
            &mut a,
            &format!("http://api.test/v1/{i}"),
            &[("x-client", "a")],
        )
        .await;
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(
        up.connections(),
        6,
        "a fresh connection after each close: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sharing_a_client_connection_keep_their_own_credentials() {
    let up = NumberedUpstream::start(None).await;
    let sk = start(&up);
    let mut conn = ProxyConn::open(sk.proxy_addr).await;
    for user in ["alice", "bob", "alice"] {
        let h = [("x-sidekey-user", user), ("x-client", user)];
        get(&mut conn, "http://user.test/v1/me", &h).await;
    }
    // Another host on the same client connection goes through the pool.
    get(&mut conn, "http://api.test/v1/x", &[("x-client", "bot")]).await;
    get(
        &mut conn,
        "http://user.test/v1/me",
        &[("x-sidekey-user", "bob"), ("x-client", "bob")],
    )
    .await;
    let seen = up.seen();
    assert_eq!(seen.len(), 5, "{seen:?}");
    let want = |who: &str| match who {
        "alice" => "Bearer alice-tok-1111".to_string(),
        "bob" => "Bearer bob-tok-2222".to_string(),
        _ => format!("Bearer {TOK}"),
    };
    for s in &seen {
        assert_eq!(s.authorization, want(&s.client), "{seen:?}");
    }
    let user_conns: Vec<usize> = seen
        .iter()
        .filter(|s| s.client != "bot")
        .map(|s| s.conn)
        .collect();
    assert!(
        user_conns.iter().all(|c| *c == user_conns[0]),
        "the users' requests share the client's upstream connection: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_does_not_hold_up_other_http2_streams() {
    let up = Upstream::start();
    let cfg = format!(
        "{head}default: deny\nupstreams:\n  api.test: {up}\ncredentials:\n  bot:\n    source: env\n    env: AFF_TOKEN\nroutes:\n  - {{name: claw, match: {{host: api.test}}, auth: claw, credential: bot}}\n",
        head = yaml_head("affinity-h2"),
        up = up.host_port()
    );
    let sk = Sidekey::start(&cfg, &[("AFF_TOKEN", TOK)]);
    let stream = tokio::net::TcpStream::connect(sk.proxy_addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let get = |path: &str| {
        http::Request::get(format!("http://api.test{path}"))
            .version(http::Version::HTTP_2)
            .body(empty())
            .unwrap()
    };
    // Stream 1: the upstream sends one event, then waits for the gate.
    let mut gated = sender
        .send_request(get("/gated"))
        .await
        .unwrap()
        .into_body();
    let first = next_data(&mut gated, Duration::from_secs(5)).await;
    assert!(first.is_some(), "first event");
    // Stream 2, same client connection, while stream 1's body is still open.
    let other = tokio::time::timeout(Duration::from_secs(5), sender.send_request(get("/v1/x")))
        .await
        .expect("stream 2 answered while stream 1 streams")
        .unwrap();
    assert_eq!(other.status(), 200);
    up.release_gate();
}
