//! Raw CONNECT and TLS inside the tunnel, for the cases no ordinary client produces,
//! and a polling wait for conditions that settle asynchronously.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::ReqBody;
use super::client::{REQ_TIMEOUT, Resp, read_all};

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
