//! The HTTP client of the tests, built on hyper's connection API so the request line is
//! sent exactly as given: absolute-form through the forward proxy, origin-form to the
//! gateway. One fresh connection per request (or [`ProxyConn`] for keep-alive).
//!
//! Most helpers panic with what went wrong, which fails the calling test; [`try_request`]
//! returns the error instead (for polling a server that is still starting). Sync code
//! runs any of them with [`block_on`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::{ReqBody, pattern_matches};

/// Generous bound on any single exchange in the tests.
pub const REQ_TIMEOUT: Duration = Duration::from_secs(60);

/// A fully read response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

/// Sends `req` over a new HTTP/1.1 connection to `addr` and returns the streaming
/// response. The request URI is written as given.
pub async fn send_raw(addr: SocketAddr, req: Request<ReqBody>) -> Response<Incoming> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to sidekey");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http1 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender.send_request(req).await
    };
    match tokio::time::timeout(REQ_TIMEOUT, fut).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => panic!("request failed: {e:?}"),
        Err(_) => panic!("no response headers within {REQ_TIMEOUT:?}"),
    }
}

/// Sends `req` over a fresh HTTP/1.1 connection to `addr` and reads the whole response,
/// within [`REQ_TIMEOUT`]; any failure (connect, protocol, timeout) is returned.
pub async fn try_request(addr: SocketAddr, req: Request<ReqBody>) -> Result<Resp, String> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake with {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request to {addr}: {e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("response body from {addr}: {e}"))?;
        Ok(Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.to_bytes().to_vec(),
        })
    };
    tokio::time::timeout(REQ_TIMEOUT, fut)
        .await
        .map_err(|_| format!("no complete response from {addr} within {REQ_TIMEOUT:?}"))?
}

/// Runs `fut` to completion on a fresh current-thread runtime on its own thread, so
/// sync tests and helpers can use this async client (inside an async test too).
/// A panic in `fut` fails the caller with the same message.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("test client runtime")
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Builds a request. A `host` header is added from the URL's authority unless the
/// caller supplies one (or `url` is origin-form, then from `default_host`).
pub fn build(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
    default_host: Option<&str>,
) -> Request<ReqBody> {
    let uri: http::Uri = url
        .parse()
        .unwrap_or_else(|e| panic!("bad test URL {url}: {e}"));
    let mut b = Request::builder().method(method).uri(uri.clone());
    let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
    if !has_host {
        if let Some(a) = uri.authority() {
            b = b.header("host", a.as_str());
        } else if let Some(h) = default_host {
            b = b.header("host", h);
        }
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).expect("build request")
}

/// Reads a whole response body within [`REQ_TIMEOUT`].
pub async fn read_all(resp: Response<Incoming>) -> Resp {
    let (parts, body) = resp.into_parts();
    let collected = tokio::time::timeout(REQ_TIMEOUT, body.collect())
        .await
        .expect("response body not complete in time")
        .expect("response body error");
    Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: collected.to_bytes().to_vec(),
    }
}

/// A forward-proxy request: absolute-form `url` (e.g. `http://api.test/x`) sent to the
/// proxy listener.
pub async fn proxy_request(
    proxy: SocketAddr,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Resp {
    read_all(send_raw(proxy, build(method, url, headers, body, None)).await).await
}

pub async fn proxy_get(proxy: SocketAddr, url: &str, headers: &[(&str, &str)]) -> Resp {
    proxy_request(proxy, "GET", url, headers, super::body::empty()).await
}

/// Like [`proxy_request`] but returns the response with its body still streaming.
pub async fn proxy_stream(
    proxy: SocketAddr,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Response<Incoming> {
    send_raw(proxy, build(method, url, headers, body, None)).await
}

/// A gateway request: origin-form `path` (e.g. `/slack/chat.postMessage?x=1`) sent to
/// the proxy listener with `Host: <proxy addr>`.
pub async fn gateway_request(
    proxy: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Resp {
    let host = proxy.to_string();
    read_all(send_raw(proxy, build(method, path, headers, body, Some(&host))).await).await
}

/// Plain GET of `http://addr/path` in origin-form (admin endpoints).
pub async fn http_get(addr: SocketAddr, path: &str) -> Resp {
    let host = addr.to_string();
    read_all(
        send_raw(
            addr,
            build("GET", path, &[], super::body::empty(), Some(&host)),
        )
        .await,
    )
    .await
}

/// Consumes a body, returning (byte count, whether every byte matched the pattern).
pub async fn count_pattern(body: Incoming, timeout: Duration) -> (u64, bool) {
    let fut = async move {
        let mut body = body;
        let mut n = 0u64;
        let mut ok = true;
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("body error while streaming");
            if let Ok(d) = frame.into_data() {
                if ok && !pattern_matches(n, &d) {
                    ok = false;
                }
                n += d.len() as u64;
            }
        }
        (n, ok)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .expect("body not complete in time")
}

/// Reads the next data frame of a streaming body (skipping trailers), within `timeout`.
pub async fn next_data(body: &mut Incoming, timeout: Duration) -> Option<Bytes> {
    let fut = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("body error");
            if let Ok(d) = frame.into_data()
                && !d.is_empty()
            {
                return Some(d);
            }
        }
        None
    };
    tokio::time::timeout(timeout, fut)
        .await
        .expect("no body data in time")
}

/// Runs `curl` through the proxy (`curl -sS -x http://PROXY`), for tests that want a real
/// client. Returns (status, response headers text, body).
pub fn curl_via_proxy(proxy: SocketAddr, args: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("h.txt");
    let mut cmd = std::process::Command::new(super::Tool::Curl.path());
    cmd.arg("-sS")
        .arg("--max-time")
        .arg("30")
        .arg("--noproxy")
        .arg("")
        .arg("-x")
        .arg(format!("http://{proxy}"))
        .arg("-D")
        .arg(&hdr)
        .arg("-w")
        .arg("\n%{http_code}")
        .args(args);
    super::processes::client_env(&mut cmd, &[]);
    let out = cmd.output().expect("run curl");
    let mut body = out.stdout;
    let pos = body
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("curl -w output");
    let code: u16 = String::from_utf8_lossy(&body[pos + 1..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(pos);
    let headers = std::fs::read_to_string(&hdr).unwrap_or_default();
    (code, headers, body)
}

/// One kept-alive HTTP/1.1 connection to the proxy, for several requests in a row.
pub struct ProxyConn {
    sender: hyper::client::conn::http1::SendRequest<ReqBody>,
}

impl ProxyConn {
    pub async fn open(addr: SocketAddr) -> ProxyConn {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to sidekey");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("http1 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        ProxyConn { sender }
    }

    /// Sends one request on this connection and reads the whole response.
    pub async fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: ReqBody,
    ) -> Resp {
        let req = build(method, url, headers, body, None);
        let fut = async {
            self.sender
                .ready()
                .await
                .expect("connection closed by sidekey");
            self.sender.send_request(req).await
        };
        let resp = match tokio::time::timeout(REQ_TIMEOUT, fut).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => panic!("request on kept-alive connection failed: {e:?}"),
            Err(_) => panic!("no response within {REQ_TIMEOUT:?}"),
        };
        read_all(resp).await
    }
}

/// An HTTP/2 prior-knowledge (h2c) request to `addr`; `url` may be absolute or origin-form
/// (then `:authority` is `addr`).
pub async fn h2c_request(
    addr: SocketAddr,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Resp {
    let url = if url.starts_with('/') {
        format!("http://{addr}{url}")
    } else {
        url.to_string()
    };
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to sidekey");
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut b = Request::builder()
            .method(method)
            .uri(url.as_str())
            .version(http::Version::HTTP_2);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        sender.send_request(b.body(body).unwrap()).await
    };
    let resp = match tokio::time::timeout(REQ_TIMEOUT, fut).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("h2c request failed: {e:?}"),
        Err(_) => panic!("no h2c response within {REQ_TIMEOUT:?}"),
    };
    read_all(resp).await
}
