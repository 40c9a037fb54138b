//! HTTPS end-to-end support: a recording TLS upstream with its own test CA, sidekey's
//! interception CA on disk, real clients (curl, the Python scripts in `tests/py/`), and
//! raw CONNECT / TLS-over-tunnel helpers for the cases no ordinary client produces.
//!
//! [`TlsUpstream`] is a real hyper server (HTTP/1.1 + HTTP/2 by ALPN) behind rustls on
//! `127.0.0.1:0`, presenting a leaf for the given DNS names (and 127.0.0.1) signed by a
//! fresh CA whose PEM is at [`TlsUpstream::ca_pem_path`]. It records every request like
//! the plain [`Upstream`](super::upstream::Upstream) (plus a `:authority` entry when the
//! request URI has one, as HTTP/2 requests do) and every TLS connection's SNI and ALPN.
//! Behaviours by path:
//! * `/sse` — `data: first\n\n`, then waits for [`TlsUpstream::release_gate`], then
//!   `data: second\n\n` and ends. [`TlsUpstream::sse_second_sent`] counts second events
//!   the upstream started to send (zero until the gate opens).
//! * `/ws` — WebSocket handshake (HTTP/1.1 101, RFC 6455 `Sec-WebSocket-Accept`), then
//!   echoes every text/binary frame unmasked, answers ping with pong and close with close.
//! * `/api/chat.postMessage` — Slack-shaped JSON echoing the posted `text` and `channel`
//!   (JSON or form body).
//! * anything else — 200 `{"ok":true,"path":PATH}`.
//!
//! A certificate problem is made by the test: trust another CA in sidekey's
//! `upstream_roots` ([`unrelated_ca_pem`]) or start the upstream for other names.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::body::ChanBody;
use super::test_ca::*;
use super::upstream::{Recorded, record};
use super::websocket::*;

// ---------------------------------------------------------------------------------------
// The TLS upstream
// ---------------------------------------------------------------------------------------

/// One TLS connection as the upstream accepted it.
#[derive(Debug, Clone)]
pub struct TlsConnRecord {
    pub sni: Option<String>,
    pub alpn: Option<String>,
}

type RespBody = BoxBody<Bytes, Infallible>;

struct TlsShared {
    requests: Mutex<Vec<Recorded>>,
    conns: Mutex<Vec<TlsConnRecord>>,
    handshake_failures: AtomicUsize,
    gate: watch::Receiver<bool>,
    sse_first_sent: AtomicUsize,
    sse_second_sent: AtomicUsize,
    ws_messages: AtomicUsize,
}

/// A running HTTPS upstream. Dropping it stops the server.
pub struct TlsUpstream {
    pub addr: SocketAddr,
    shared: Arc<TlsShared>,
    gate_tx: watch::Sender<bool>,
    stop: Option<oneshot::Sender<()>>,
    dir: tempfile::TempDir,
    ca_pem_path: PathBuf,
}

impl TlsUpstream {
    /// Serves a leaf for `names` + 127.0.0.1, signed by a fresh CA.
    pub fn start(names: &[&str]) -> TlsUpstream {
        let ca = TestCa::new("sidekey test upstream CA");
        let mut all: Vec<&str> = names.to_vec();
        all.push("127.0.0.1");
        let (chain, key) = ca.issue(&all);
        Self::serve(ca.pem, chain, key)
    }

    /// Serves a leaf for `wrong_names` (+ 127.0.0.1) only: a client trusting
    /// [`ca_pem_path`](Self::ca_pem_path) but expecting any other name sees a name
    /// mismatch. (The same as `start(wrong_names)`; named for intent.)
    pub fn start_for_wrong_name(wrong_names: &[&str]) -> TlsUpstream {
        Self::start(wrong_names)
    }

    /// Serves a leaf for `names` signed by a CA whose PEM is NOT what
    /// [`ca_pem_path`](Self::ca_pem_path) holds (that file holds an unrelated CA), so a
    /// client trusting `ca_pem_path` sees an unknown issuer.
    pub fn start_with_untrusted_cert(names: &[&str]) -> TlsUpstream {
        let hidden = TestCa::new("hidden test CA");
        let mut all: Vec<&str> = names.to_vec();
        all.push("127.0.0.1");
        let (chain, key) = hidden.issue(&all);
        Self::serve(unrelated_ca_pem(), chain, key)
    }

    fn serve(
        ca_pem: String,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> TlsUpstream {
        let dir = tempfile::Builder::new()
            .prefix("sidekey-tls-upstream-")
            .tempdir()
            .unwrap();
        let ca_pem_path = dir.path().join("upstream-ca.pem");
        std::fs::write(&ca_pem_path, &ca_pem).unwrap();

        let mut cfg = rustls::ServerConfig::builder_with_provider(sidekey::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));

        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tls upstream");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (gate_tx, gate_rx) = watch::channel(false);
        let shared = Arc::new(TlsShared {
            requests: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            handshake_failures: AtomicUsize::new(0),
            gate: gate_rx,
            sse_first_sent: AtomicUsize::new(0),
            sse_second_sent: AtomicUsize::new(0),
            ws_messages: AtomicUsize::new(0),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let sh = shared.clone();
        std::thread::Builder::new()
            .name(format!("tls-upstream-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tls upstream runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                    let accept = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            let sh = sh.clone();
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                let tls = match tokio::time::timeout(
                                    Duration::from_secs(30),
                                    acceptor.accept(stream),
                                )
                                .await
                                {
                                    Ok(Ok(tls)) => tls,
                                    _ => {
                                        sh.handshake_failures.fetch_add(1, Ordering::SeqCst);
                                        return;
                                    }
                                };
                                {
                                    let c = tls.get_ref().1;
                                    sh.conns.lock().unwrap().push(TlsConnRecord {
                                        sni: c.server_name().map(str::to_string),
                                        alpn: c
                                            .alpn_protocol()
                                            .map(|a| String::from_utf8_lossy(a).into_owned()),
                                    });
                                }
                                let svc = service_fn(move |req| handle(sh.clone(), req));
                                let _ = hyper_util::server::conn::auto::Builder::new(
                                    TokioExecutor::new(),
                                )
                                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
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
            .expect("spawn tls upstream thread");
        TlsUpstream {
            addr,
            shared,
            gate_tx,
            stop: Some(stop_tx),
            dir,
            ca_pem_path,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`, for `upstreams:` overrides.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// The PEM file of the CA a client should trust to reach this upstream directly.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// Every completed request so far.
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
                panic!(
                    "TLS upstream saw {} requests, expected {n}: {r:#?}",
                    r.len()
                );
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
            "expected exactly one TLS upstream request, got {r:#?}"
        );
        r.into_iter().next().unwrap()
    }

    /// Every TLS connection accepted so far (SNI, ALPN).
    pub fn connections(&self) -> Vec<TlsConnRecord> {
        self.shared.conns.lock().unwrap().clone()
    }

    /// TLS handshakes that failed (e.g. the client rejected the certificate).
    pub fn handshake_failures(&self) -> usize {
        self.shared.handshake_failures.load(Ordering::SeqCst)
    }

    /// Lets every `/sse` response send its second event.
    pub fn release_gate(&self) {
        let _ = self.gate_tx.send(true);
    }

    /// `/sse` first events the upstream started to send.
    pub fn sse_first_sent(&self) -> usize {
        self.shared.sse_first_sent.load(Ordering::SeqCst)
    }

    /// `/sse` second events the upstream started to send (0 while the gate is closed).
    pub fn sse_second_sent(&self) -> usize {
        self.shared.sse_second_sent.load(Ordering::SeqCst)
    }

    /// WebSocket data messages echoed so far.
    pub fn ws_messages(&self) -> usize {
        self.shared.ws_messages.load(Ordering::SeqCst)
    }

    /// The directory holding the CA file (kept alive with the upstream).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        let _ = self.gate_tx.send(true);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn json_body(status: StatusCode, v: &serde_json::Value) -> Response<RespBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).unwrap())).boxed())
        .unwrap()
}

fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (super::upstream::pct_decode(&k.replace('+', " ")) == name)
            .then(|| super::upstream::pct_decode(&v.replace('+', " ")))
    })
}

async fn handle(
    sh: Arc<TlsShared>,
    mut req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let rec = record(&mut req, true, None).await;
    let path = rec.path.clone();
    let kept = rec.body.clone();
    let ws_key = rec.header("sec-websocket-key").map(str::to_string);
    let content_type = rec.header("content-type").unwrap_or("").to_string();
    sh.requests.lock().unwrap().push(rec);

    if path == "/sse" {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let mut gate = sh.gate.clone();
        let sh2 = sh.clone();
        tokio::spawn(async move {
            // Counted before each send, so a count is never behind what a client saw.
            sh2.sse_first_sent.fetch_add(1, Ordering::SeqCst);
            if tx
                .send(Bytes::from_static(b"data: first\n\n"))
                .await
                .is_err()
            {
                return;
            }
            let _ = gate.wait_for(|open| *open).await;
            sh2.sse_second_sent.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(Bytes::from_static(b"data: second\n\n")).await;
        });
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(ChanBody::<Infallible>::new(rx).boxed())
            .unwrap());
    }
    if path == "/ws" {
        let Some(key) = ws_key else {
            return Ok(json_body(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"ok": false, "error": "not a websocket handshake"}),
            ));
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        let sh2 = sh.clone();
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let _ = ws_echo(TokioIo::new(upgraded), &sh2).await;
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", ws_accept(&key))
            .body(Full::new(Bytes::new()).boxed())
            .unwrap());
    }
    if path == "/api/chat.postMessage" {
        let text_body = String::from_utf8_lossy(&kept).into_owned();
        let (channel, text) = if content_type.starts_with("application/json") {
            let v: serde_json::Value = serde_json::from_str(&text_body).unwrap_or_default();
            (
                v["channel"].as_str().map(str::to_string),
                v["text"].as_str().map(str::to_string),
            )
        } else {
            (
                form_value(&text_body, "channel"),
                form_value(&text_body, "text"),
            )
        };
        return Ok(json_body(
            StatusCode::OK,
            &serde_json::json!({
                "ok": true,
                "channel": channel.unwrap_or_else(|| "C1".into()),
                "ts": "1.2",
                "message": {"text": text.unwrap_or_default(), "type": "message"},
            }),
        ));
    }
    Ok(json_body(
        StatusCode::OK,
        &serde_json::json!({"ok": true, "path": path}),
    ))
}

async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    sh: &TlsShared,
) -> std::io::Result<()> {
    loop {
        let f = ws_read_frame(&mut s).await?;
        match f.opcode() {
            0x8 => {
                s.write_all(&ws_encode(0x88, &f.payload, false)).await?;
                s.flush().await?;
                return Ok(());
            }
            0x9 => {
                s.write_all(&ws_encode(0x8A, &f.payload, false)).await?;
                s.flush().await?;
            }
            0xA => {}
            _ => {
                sh.ws_messages.fetch_add(1, Ordering::SeqCst);
                s.write_all(&ws_encode(f.first, &f.payload, false)).await?;
                s.flush().await?;
            }
        }
    }
}
