//! A recording upstream: a real hyper server on `127.0.0.1:0` (HTTP/1.1, h2c too).
//!
//! Every request is recorded (method, path, raw query, all headers in order, body byte
//! count, the first 1 MiB of the body, and whether the body matched the test byte
//! pattern). Bodies are streamed and counted, never held whole.
//!
//! Behaviours by path prefix:
//! * `/slow?ms=N` — sleep N ms, then the default answer.
//! * `/download?bytes=N` — stream N pattern bytes in 64 KiB chunks (no Content-Length).
//! * `/echo-auth` — body is the received `Authorization` value (text/plain).
//! * `/hop-headers` — answer with `Connection: x-resp-hop`, `X-Resp-Hop`, `Keep-Alive`
//!   and `X-Resp-Normal` response headers.
//! * `/status?code=N` — answer with status N and the default JSON body.
//! * `/gated` — send `data: first\n\n`, wait for [`Upstream::release_gate`], then
//!   send `data: second\n\n` (an SSE stream for streaming-through tests).
//! * anything else — 200 `{"ok":true,"path":PATH}`.
//!
//! A test that needs other answers (a token endpoint, a JWKS document, a 401 for some
//! tokens) gives [`Upstream::builder`] a [`Responder`]: it sees each [`Recorded`]
//! request and returns the answer, or `None` for the behaviours above. The `openbao`
//! and `jwt_support` servers are such responders.
//!
//! The server runs on its own thread and runtime, so it works from sync and async tests.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{mpsc, oneshot, watch};

use super::body::{CHUNK, ChanBody, pattern_chunk, pattern_matches};

/// Bytes of each request body kept verbatim.
pub const KEEP_BODY: usize = 1024 * 1024;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Every header in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// The first [`KEEP_BODY`] bytes of the body.
    pub body: Vec<u8>,
    /// Whether every body byte matched the test pattern (true for an empty body).
    pub body_is_pattern: bool,
    pub version: String,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// Query parameters, percent-decoded (`+` left as is).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let Some(q) = &self.query else { return vec![] };
        q.split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (pct_decode(k), pct_decode(v))
            })
            .collect()
    }

    /// Every value of query parameter `name`.
    pub fn query_all(&self, name: &str) -> Vec<String> {
        self.query_pairs()
            .into_iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect()
    }
}

pub fn pct_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

type RespBody = BoxBody<Bytes, Infallible>;

/// What a [`Responder`] returns.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Option<Response<Bytes>>> + Send>>;

/// A custom answer: given the request as recorded, `Some(response)`, or `None` for the
/// built-in behaviours. It may wait (a slow token endpoint).
pub type Responder = Arc<dyn Fn(Recorded) -> ResponseFuture + Send + Sync>;

/// Wraps a synchronous answer function as a [`Responder`].
pub fn responder(
    f: impl Fn(&Recorded) -> Option<Response<Bytes>> + Send + Sync + 'static,
) -> Responder {
    Arc::new(move |rec| {
        let out = f(&rec);
        let fut: ResponseFuture = Box::pin(async move { out });
        fut
    })
}

/// A JSON answer with `status`, for responders.
pub fn json_response(status: u16, v: &serde_json::Value) -> Response<Bytes> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Bytes::from(v.to_string()))
        .expect("JSON response")
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    live_body_bytes: AtomicU64,
    gate: watch::Receiver<bool>,
    responder: Option<Responder>,
}

/// Options for [`Upstream::builder`].
#[derive(Default)]
pub struct UpstreamBuilder {
    port: u16,
    responder: Option<Responder>,
}

impl UpstreamBuilder {
    /// Listen on this loopback port (to bring up a server sidekey was already told
    /// about); default: a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Answer with `r` where it returns `Some`.
    pub fn responder(mut self, r: Responder) -> Self {
        self.responder = Some(r);
        self
    }

    pub fn start(self) -> Upstream {
        Upstream::serve(self)
    }
}

/// A running recording upstream. Dropping it stops the server.
pub struct Upstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    gate_tx: watch::Sender<bool>,
    stop: Option<oneshot::Sender<()>>,
}

impl Upstream {
    /// The recording upstream with the built-in behaviours, on a free port.
    pub fn start() -> Upstream {
        Self::builder().start()
    }

    pub fn builder() -> UpstreamBuilder {
        UpstreamBuilder::default()
    }

    fn serve(opts: UpstreamBuilder) -> Upstream {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", opts.port))
            .unwrap_or_else(|e| panic!("bind upstream on 127.0.0.1:{}: {e}", opts.port));
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (gate_tx, gate_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            live_body_bytes: AtomicU64::new(0),
            gate: gate_rx,
            responder: opts.responder,
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let sh = shared.clone();
        std::thread::Builder::new()
            .name(format!("upstream-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("upstream runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                    let accept = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            let sh = sh.clone();
                            tokio::spawn(async move {
                                let svc = service_fn(move |req| handle(sh.clone(), req));
                                let _ = hyper_util::server::conn::auto::Builder::new(
                                    TokioExecutor::new(),
                                )
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                            });
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_background();
            })
            .expect("spawn upstream thread");
        Upstream {
            addr,
            shared,
            gate_tx,
            stop: Some(stop_tx),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`, for `upstreams:` overrides.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`, for gateway upstreams.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every completed request so far (recorded once its body has been read).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Waits until at least `n` requests are recorded, or panics after `timeout`.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let t0 = Instant::now();
        loop {
            let r = self.requests();
            if r.len() >= n {
                return r;
            }
            if t0.elapsed() > timeout {
                panic!("upstream saw {} requests, expected {n}: {r:#?}", r.len());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The single request recorded; panics if there is not exactly one.
    pub fn only(&self) -> Recorded {
        let r = self.requests();
        assert_eq!(
            r.len(),
            1,
            "expected exactly one upstream request, got {r:#?}"
        );
        r.into_iter().next().unwrap()
    }

    /// Body bytes received so far across all requests, counted as frames arrive.
    pub fn live_body_bytes(&self) -> u64 {
        self.shared.live_body_bytes.load(Ordering::SeqCst)
    }

    /// Lets every `/gated` response send its second event.
    pub fn release_gate(&self) {
        let _ = self.gate_tx.send(true);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.gate_tx.send(true);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn json_resp(status: StatusCode, path: &str) -> Response<RespBody> {
    let body = serde_json::to_vec(&serde_json::json!({"ok": true, "path": path})).unwrap();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}

/// Reads `req`'s body to the end and records the request (shared with the TLS
/// upstream). `with_authority` adds a `:authority` entry when the URI has one (HTTP/2).
/// `live` counts body bytes as they arrive.
pub async fn record(
    req: &mut Request<Incoming>,
    with_authority: bool,
    live: Option<&AtomicU64>,
) -> Recorded {
    let mut headers = Vec::new();
    for (k, v) in req.headers().iter() {
        headers.push((
            k.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        ));
    }
    // HTTP/2 carries the host in `:authority` (the URI), not a Host header: record it
    // under the pseudo-header name so tests can check what the upstream was asked for.
    if with_authority && let Some(a) = req.uri().authority() {
        headers.push((":authority".to_string(), a.as_str().to_string()));
    }
    let mut body_len = 0u64;
    let mut kept = Vec::new();
    let mut is_pattern = true;
    while let Some(frame) = req.body_mut().frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            if is_pattern && !pattern_matches(body_len, &data) {
                is_pattern = false;
            }
            if kept.len() < KEEP_BODY {
                let take = (KEEP_BODY - kept.len()).min(data.len());
                kept.extend_from_slice(&data[..take]);
            }
            body_len += data.len() as u64;
            if let Some(live) = live {
                live.fetch_add(data.len() as u64, Ordering::SeqCst);
            }
        }
    }
    Recorded {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        headers,
        body_len,
        body: kept,
        body_is_pattern: is_pattern,
        version: format!("{:?}", req.version()),
    }
}

async fn handle(
    sh: Arc<Shared>,
    mut req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let rec = record(&mut req, false, Some(&sh.live_body_bytes)).await;
    let path = rec.path.clone();
    let query = rec.query.clone();
    let auth = rec.header("authorization").map(str::to_string);
    match &sh.responder {
        Some(r) => {
            sh.requests.lock().unwrap().push(rec.clone());
            if let Some(resp) = r(rec).await {
                return Ok(resp.map(|b| Full::new(b).boxed()));
            }
        }
        None => sh.requests.lock().unwrap().push(rec),
    }

    let q = query.as_deref();
    if path.starts_with("/slow") {
        let ms: u64 = param(q, "ms").and_then(|v| v.parse().ok()).unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(json_resp(StatusCode::OK, &path));
    }
    if path.starts_with("/download") {
        let total: u64 = param(q, "bytes").and_then(|v| v.parse().ok()).unwrap_or(0);
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        tokio::spawn(async move {
            let mut off = 0u64;
            while off < total {
                let len = (total - off).min(CHUNK as u64) as usize;
                if tx.send(pattern_chunk(off, len)).await.is_err() {
                    return;
                }
                off += len as u64;
            }
        });
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "application/octet-stream")
            .body(ChanBody::<Infallible>::new(rx).boxed())
            .unwrap());
    }
    if path.starts_with("/echo-auth") {
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(auth.unwrap_or_default())).boxed())
            .unwrap());
    }
    if path.starts_with("/hop-headers") {
        return Ok(Response::builder()
            .status(200)
            .header("connection", "x-resp-hop")
            .header("x-resp-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("x-resp-normal", "1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{\"ok\":true}")).boxed())
            .unwrap());
    }
    if path.starts_with("/status") {
        let code: u16 = param(q, "code").and_then(|v| v.parse().ok()).unwrap_or(200);
        return Ok(json_resp(
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            &path,
        ));
    }
    if path.starts_with("/gated") {
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        let mut gate = sh.gate.clone();
        tokio::spawn(async move {
            if tx
                .send(Bytes::from_static(b"data: first\n\n"))
                .await
                .is_err()
            {
                return;
            }
            let _ = gate.wait_for(|open| *open).await;
            let _ = tx.send(Bytes::from_static(b"data: second\n\n")).await;
        });
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(ChanBody::<Infallible>::new(rx).boxed())
            .unwrap());
    }
    Ok(json_resp(StatusCode::OK, &path))
}

/// A loopback port with nothing listening, for a child process to bind.
///
/// Picked below the kernel's ephemeral range (`ip_local_port_range`, 32768 and up
/// by default): a port taken from that range by binding port 0 and released can be
/// handed straight back out as the source port of any outgoing connection, or to the
/// next `bind(0)`, before the child binds it. Below it only another explicit pick can
/// collide, and the bind check rules out one that is already taken.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = fastrand::u16(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// A loopback port with nothing listening (see [`free_port`]).
pub fn dead_port() -> u16 {
    free_port()
}
