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
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::body::{ChanBody, ReqBody, pattern_matches};
use super::client::{REQ_TIMEOUT, Resp, read_all};
use super::upstream::{KEEP_BODY, Recorded};

/// Bound on a client process (curl, Python) run by a test.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// A test CA (rcgen)
// ---------------------------------------------------------------------------------------

/// A throwaway CA that signs leaf certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

fn validity(p: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(30);
}

impl TestCa {
    /// A fresh self-signed CA (CA:TRUE, keyCertSign) with a unique subject.
    pub fn new(label: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("{label} {:016x}", fastrand::u64(..)),
        );
        dn.push(DnType::OrganizationName, "sidekey tests");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut p);
        let cert = p.self_signed(&key).expect("self-sign CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf (not a CA) for `names` (DNS names or IP literals), serverAuth.
    pub fn issue(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(sans).expect("leaf SANs");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        p.distinguished_name = dn;
        p.is_ca = IsCa::NoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p);
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = p.signed_by(&key, &self.issuer).expect("sign leaf");
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// The PEM of a CA that has signed nothing any test server presents.
pub fn unrelated_ca_pem() -> String {
    TestCa::new("unrelated test CA").pem
}

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
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let mut headers = Vec::new();
    for (k, v) in req.headers().iter() {
        headers.push((
            k.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        ));
    }
    // HTTP/2 carries the host in `:authority` (the URI), not a Host header: record it
    // under the pseudo-header name so tests can check what the upstream was asked for.
    if let Some(a) = req.uri().authority() {
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
        }
    }
    let rec = Recorded {
        method: req.method().to_string(),
        path: path.clone(),
        query,
        headers,
        body_len,
        body: kept.clone(),
        body_is_pattern: is_pattern,
        version: format!("{:?}", req.version()),
    };
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

// ---------------------------------------------------------------------------------------
// WebSocket (RFC 6455) pieces
// ---------------------------------------------------------------------------------------

/// SHA-1 (FIPS 180-4), only for `Sec-WebSocket-Accept`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(chunk[4 * i..4 * i + 4].try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999u32),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn ws_accept(key: &str) -> String {
    let mut s = key.trim().as_bytes().to_vec();
    s.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    super::base64(&sha1(&s))
}

/// One WebSocket frame header byte 0, and payload.
pub struct WsFrame {
    pub first: u8,
    pub payload: Vec<u8>,
}

impl WsFrame {
    pub fn opcode(&self) -> u8 {
        self.first & 0x0f
    }
}

/// Reads one frame, unmasking it if masked.
pub async fn ws_read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<WsFrame> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await?;
    let masked = h[1] & 0x80 != 0;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).await?;
        len = u64::from_be_bytes(b);
    }
    if len > 16 * 1024 * 1024 {
        return Err(std::io::Error::other("websocket frame too large"));
    }
    let mut mask = [0u8; 4];
    if masked {
        s.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok(WsFrame {
        first: h[0],
        payload,
    })
}

/// Encodes a frame; `mask` (client side) masks the payload with a random key.
pub fn ws_encode(first: u8, payload: &[u8], mask: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mbit = if mask { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mbit | len as u8);
    } else if len <= 0xffff {
        out.push(mbit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if mask {
        let key = fastrand::u32(..).to_be_bytes();
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
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

// ---------------------------------------------------------------------------------------
// sidekey's interception CA
// ---------------------------------------------------------------------------------------

/// `ca.crt` + `ca.key` written by `sidekey ca init --out DIR`.
#[derive(Debug, Clone)]
pub struct SidekeyCa {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl SidekeyCa {
    /// Runs `sidekey ca init --out <dir>/ca` and checks both files exist.
    pub fn init(dir: &Path) -> SidekeyCa {
        let out = dir.join("ca");
        let (code, stdout, stderr) =
            super::Sidekey::run_args(&["ca", "init", "--out", out.to_str().unwrap()], &[]);
        assert_eq!(
            code, 0,
            "sidekey ca init failed\nstdout: {stdout}\nstderr: {stderr}"
        );
        let ca = SidekeyCa {
            cert: out.join("ca.crt"),
            key: out.join("ca.key"),
        };
        assert!(ca.cert.is_file(), "ca init wrote no {}", ca.cert.display());
        assert!(ca.key.is_file(), "ca init wrote no {}", ca.key.display());
        ca
    }

    /// A `tls:` block with this CA and `upstream_roots` set to the given PEM paths.
    pub fn tls_yaml(&self, roots: &[&Path]) -> String {
        let roots: Vec<String> = roots
            .iter()
            .map(|p| format!("{:?}", p.to_str().unwrap()))
            .collect();
        format!(
            "tls:\n  ca_cert: {:?}\n  ca_key: {:?}\n  upstream_roots: [{}]\n",
            self.cert.to_str().unwrap(),
            self.key.to_str().unwrap(),
            roots.join(", ")
        )
    }

    /// Runs `sidekey ca env --ca ca.crt --bundle-out <dir>/bundle.pem`; returns the
    /// exported (NAME, VALUE) pairs.
    pub fn env(&self, bundle_out: &Path) -> Vec<(String, String)> {
        let (code, stdout, stderr) = super::Sidekey::run_args(
            &[
                "ca",
                "env",
                "--ca",
                self.cert.to_str().unwrap(),
                "--bundle-out",
                bundle_out.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(
            code, 0,
            "sidekey ca env failed\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
            .lines()
            .filter_map(|l| {
                let rest = l.trim().strip_prefix("export ")?;
                let (k, v) = rest.split_once('=')?;
                let v = v
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .unwrap_or(v)
                    .replace(r"'\''", "'");
                Some((k.to_string(), v))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Client processes: environment, curl, Python
// ---------------------------------------------------------------------------------------

/// Variables that steer proxies or CA trust in clients; cleared for every client process
/// (this machine presets several), then set explicitly by the test.
pub const CLIENT_ENV_CLEARED: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "WS_PROXY",
    "WSS_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "NIX_SSL_CERT_FILE",
    "PIP_CERT",
    "HTTPLIB2_CA_CERTS",
    "CARGO_HTTP_CAINFO",
    "GIT_SSL_CAINFO",
    "AWS_CA_BUNDLE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
    "SLACK_BOT_TOKEN",
];

fn client_env(cmd: &mut Command, env: &[(&str, &str)]) {
    for k in CLIENT_ENV_CLEARED {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// Output of one client process.
#[derive(Debug)]
pub struct ProcOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn pump_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Runs `cmd` to completion within [`CLIENT_TIMEOUT`] (killed and panicking after).
pub fn run_proc(mut cmd: Command) -> ProcOut {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let out = pump_all(child.stdout.take().unwrap());
    let err = pump_all(child.stderr.take().unwrap());
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if t0.elapsed() > CLIENT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let o = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
            let e = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            panic!("{cmd:?} did not finish within {CLIENT_TIMEOUT:?}\nstdout: {o}\nstderr: {e}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    ProcOut {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
    }
}

/// What curl observed.
#[derive(Debug)]
pub struct CurlOut {
    /// curl's exit code (0 ok; 56 for a refused CONNECT, 60 for an untrusted cert...).
    pub exit: i32,
    /// The final response status (0 if none).
    pub status: u16,
    /// The CONNECT response status (0 if none).
    pub connect_status: u16,
    /// `1.1` or `2`.
    pub http_version: String,
    /// Response header blocks as curl dumped them (`-D`).
    pub headers: String,
    pub body: Vec<u8>,
    pub stderr: String,
}

impl CurlOut {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("curl body is not JSON ({e}): {:?} / {self:?}", self.text()))
    }

    /// The last value of response header `name` in the final header block.
    pub fn header(&self, name: &str) -> Option<String> {
        let last_block = self
            .headers
            .split("\r\n\r\n")
            .filter(|b| !b.trim().is_empty())
            .last()?;
        last_block.lines().rev().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Runs `curl -sS` with `args` (the test passes `--proxy`, `--cacert`...), every proxy
/// and CA variable cleared.
pub fn curl(args: &[&str]) -> CurlOut {
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("h.txt");
    let mut cmd = Command::new("curl");
    cmd.arg("-sS")
        .arg("--max-time")
        .arg("60")
        .arg("-D")
        .arg(&hdr)
        .arg("-w")
        .arg("\n%{http_code} %{http_version} %{http_connect}")
        .args(args);
    client_env(&mut cmd, &[]);
    let out = run_proc(cmd);
    let mut body = out.stdout.into_bytes();
    let pos = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let tail = String::from_utf8_lossy(&body[(pos + 1).min(body.len())..]).into_owned();
    body.truncate(pos);
    let mut parts = tail.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let http_version = parts.next().unwrap_or("").to_string();
    let connect_status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    CurlOut {
        exit: out.code,
        status,
        connect_status,
        http_version,
        headers: std::fs::read_to_string(&hdr).unwrap_or_default(),
        body,
        stderr: out.stderr,
    }
}

/// The Python interpreter with the test clients installed: `SIDEKEY_TEST_PYTHON`, else
/// `$CARGO_MANIFEST_DIR/.venv/bin/python`. Panics (never skips) when missing.
pub fn python() -> PathBuf {
    let p = match std::env::var_os("SIDEKEY_TEST_PYTHON") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    };
    assert!(
        p.exists(),
        "the Python test clients are missing: {} does not exist. Run scripts/test.sh \
         (creates .venv from scripts/requirements-test.txt) or set SIDEKEY_TEST_PYTHON \
         to a python with httpx[http2], requests, slack_sdk and websockets.",
        p.display()
    );
    p
}

/// `tests/py/<name>`.
pub fn py_script(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(name);
    assert!(p.is_file(), "missing Python test script {}", p.display());
    p
}

fn py_command(script: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(py_script(script)).args(args);
    client_env(&mut cmd, env);
    cmd.env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// Runs `tests/py/<script>` to completion with a clean client environment plus `env`.
pub fn run_py(script: &str, args: &[&str], env: &[(&str, &str)]) -> ProcOut {
    run_proc(py_command(script, args, env))
}

/// Runs a script that must succeed; returns its last stdout line as JSON.
#[track_caller]
pub fn run_py_json(script: &str, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let out = run_py(script, args, env);
    assert_eq!(
        out.code, 0,
        "{script} {args:?} failed (exit {})\nstdout: {}\nstderr: {}",
        out.code, out.stdout, out.stderr
    );
    last_json_line(&out)
}

/// The last stdout line of `out`, parsed as JSON.
#[track_caller]
pub fn last_json_line(out: &ProcOut) -> serde_json::Value {
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output\nstderr: {}", out.stderr));
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nstderr: {}", out.stderr))
}

/// A running Python client whose stdout lines the test reads as they come.
pub struct PyChild {
    child: Child,
    lines: std_mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    what: String,
}

impl PyChild {
    pub fn spawn(script: &str, args: &[&str], env: &[(&str, &str)]) -> PyChild {
        let mut cmd = py_command(script, args, env);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = pump_all(child.stderr.take().unwrap());
        PyChild {
            child,
            lines: rx,
            stderr,
            what: format!("{script} {args:?}"),
        }
    }

    /// The next stdout line as JSON, within `timeout`; panics (with stderr) otherwise.
    pub fn next_json(&mut self, timeout: Duration) -> serde_json::Value {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line:?}", self.what)),
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(Vec::new));
                let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
                panic!(
                    "{}: no output line within {timeout:?} ({e})\nstderr: {err}",
                    self.what
                )
            }
        }
    }

    /// Waits for the exit; returns (exit code, remaining stdout lines, stderr).
    pub fn finish(mut self, timeout: Duration) -> (i32, Vec<String>, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st;
            }
            if t0.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not exit within {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut rest = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            rest.push(l);
        }
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(Vec::new));
        let err = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
        (status.code().unwrap_or(-1), rest, err)
    }
}

impl Drop for PyChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw CONNECT and TLS inside the tunnel
// ---------------------------------------------------------------------------------------

/// The reply to a raw CONNECT, and the connection (positioned after the reply head and
/// any body) for whatever comes next.
pub struct ConnectReply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub stream: TcpStream,
}

impl ConnectReply {
    /// The reply as a [`Resp`], for [`assert_sidekey_error`](super::assert_sidekey_error).
    pub fn resp(&self) -> Resp {
        Resp {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
        }
    }
}

/// Sends `CONNECT authority HTTP/1.1` with `headers` to the proxy and reads the reply
/// head (and, for a non-2xx reply, its Content-Length body).
pub async fn connect_raw(
    proxy: SocketAddr,
    authority: &str,
    headers: &[(&str, &str)],
) -> ConnectReply {
    let fut = async {
        let mut stream = TcpStream::connect(proxy).await.expect("connect to sidekey");
        let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("send CONNECT");
        // Read byte by byte up to the blank line: after a 200 the next bytes belong to
        // the tunnel, so nothing past the head may be consumed.
        let mut buf = Vec::new();
        let mut b = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut b).await.expect("read CONNECT reply");
            assert!(
                n == 1,
                "connection closed inside the CONNECT reply head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.push(b[0]);
            assert!(buf.len() < 64 * 1024, "CONNECT reply head too large");
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad CONNECT status line {status_line:?}"));
        let mut map = HeaderMap::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                map.append(
                    http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v.trim()).unwrap(),
                );
            }
        }
        let mut body = Vec::new();
        if !(200..300).contains(&status) {
            let len: usize = map
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            body.resize(len, 0);
            stream
                .read_exact(&mut body)
                .await
                .expect("read CONNECT reply body");
        }
        ConnectReply {
            status,
            headers: map,
            body,
            stream,
        }
    };
    tokio::time::timeout(REQ_TIMEOUT, fut)
        .await
        .expect("no CONNECT reply in time")
}

/// A client config trusting exactly the CA(s) in `ca_pem`, offering `alpn`.
pub fn client_tls(ca_pem: &Path, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ca_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(sidekey::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

/// A client config that accepts any certificate (to send an SNI the server's
/// certificate does not cover), offering `alpn`.
pub fn client_tls_no_verify(alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let provider = sidekey::tls::provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS client handshake over `stream` with SNI `sni`.
pub async fn tls_connect(
    stream: TcpStream,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    tokio::time::timeout(
        REQ_TIMEOUT,
        tokio_rustls::TlsConnector::from(cfg).connect(name, stream),
    )
    .await
    .expect("TLS handshake did not finish in time")
}

/// CONNECT `authority` (with `connect_headers`), then TLS with SNI `sni` using `cfg`:
/// the open TLS stream inside the tunnel. Panics if the CONNECT is not answered 200.
pub async fn open_tunnel(
    proxy: SocketAddr,
    authority: &str,
    connect_headers: &[(&str, &str)],
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let reply = connect_raw(proxy, authority, connect_headers).await;
    assert_eq!(
        reply.status,
        200,
        "CONNECT {authority} refused: {:?} {}",
        reply.headers,
        String::from_utf8_lossy(&reply.body)
    );
    tls_connect(reply.stream, sni, cfg)
        .await
        .unwrap_or_else(|e| panic!("TLS inside the tunnel to {authority} failed: {e}"))
}

/// Sends `reqs` one after another over `tls` (HTTP/2 if ALPN chose h2, else HTTP/1.1
/// keep-alive) and reads each response whole. HTTP/1.1 requests should be origin-form
/// with a `host` header; HTTP/2 requests absolute-form (for `:authority`).
pub async fn send_over<S>(tls: S, h2: bool, reqs: Vec<Request<ReqBody>>) -> Vec<Resp>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut out = Vec::new();
    if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake inside the tunnel");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        for req in reqs {
            let resp = tokio::time::timeout(REQ_TIMEOUT, sender.send_request(req))
                .await
                .expect("no h2 response in time")
                .expect("h2 request inside the tunnel failed");
            out.push(read_all(resp).await);
        }
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("http1 handshake inside the tunnel");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        for req in reqs {
            let fut = async {
                sender.ready().await?;
                sender.send_request(req).await
            };
            let resp = tokio::time::timeout(REQ_TIMEOUT, fut)
                .await
                .expect("no response in time")
                .expect("request inside the tunnel failed");
            out.push(read_all(resp).await);
        }
    }
    out
}

/// Builds a request with the given headers (no automatic `host`).
pub fn tunnel_req(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: ReqBody,
) -> Request<ReqBody> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).expect("build request")
}

/// Whether the TLS stream negotiated h2.
pub fn negotiated_h2(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> bool {
    tls.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// Waits until `cond` holds (polling), panicking with `what` after `timeout`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
