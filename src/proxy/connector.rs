//! Dialling upstreams: resolve once, check every address, dial what was checked.
//!
//! The connector is what the pooled client calls for a new connection. It applies the
//! `upstreams:` overrides, refuses non-public destinations the operator did not write
//! in the config (see `egress.rs`), never dials sidekey's own listeners, and speaks TLS
//! with SNI and certificate checks for the *original* host name, whatever IP it dialled.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::egress;
use crate::config::Config;

/// Why a connection could not be made. The proxy maps these to contract errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Egress(String),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("cannot connect to {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("connect to {0} timed out")]
    Timeout(String),
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("bad upstream URI")]
    BadUri,
}

struct Inner {
    overrides: std::collections::HashMap<String, SocketAddr>,
    intended: std::collections::HashSet<String>,
    allow: Vec<ipnet::IpNet>,
    own: Vec<SocketAddr>,
    timeout: Duration,
    tls: TlsConnector,
    /// Same roots, ALPN `http/1.1` only: for upgrades, which HTTP/2 cannot carry.
    tls_http1: TlsConnector,
}

#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

impl Connector {
    pub fn new(
        cfg: &Config,
        own: Vec<SocketAddr>,
        tls: Arc<rustls::ClientConfig>,
        tls_http1: Arc<rustls::ClientConfig>,
    ) -> Self {
        Connector {
            inner: Arc::new(Inner {
                overrides: cfg.upstreams.clone(),
                intended: egress::intended_hosts(cfg),
                allow: cfg.egress_allow.clone(),
                own,
                timeout: cfg.timeouts.connect,
                tls: TlsConnector::from(tls),
                tls_http1: TlsConnector::from(tls_http1),
            }),
        }
    }

    /// Whether `other` is this connector (built from the same config), not a copy of it.
    pub(crate) fn same(&self, other: &Connector) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Resolve `host:port` into the addresses that may be dialled, or why none may.
    pub async fn plan(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
        let inner = &self.inner;
        let (addrs, intended) = if let Some(addr) = inner.overrides.get(host) {
            (vec![*addr], true)
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            (
                vec![SocketAddr::new(ip, port)],
                inner.intended.contains(host),
            )
        } else {
            let found =
                tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| ConnectError::Resolve {
                        host: crate::audit::bounded(host).into_owned(),
                        reason: e.to_string(),
                    })?;
            (found.collect::<Vec<_>>(), inner.intended.contains(host))
        };
        if addrs.is_empty() {
            return Err(ConnectError::Resolve {
                host: crate::audit::bounded(host).into_owned(),
                reason: "no addresses".into(),
            });
        }
        for addr in &addrs {
            if self.is_own(addr) {
                return Err(ConnectError::Egress(format!(
                    "{host} is sidekey's own listener"
                )));
            }
            if !intended && let Err(reason) = egress::allowed(addr.ip(), &inner.allow) {
                return Err(ConnectError::Egress(format!(
                    "{host} resolves to a {reason} address"
                )));
            }
        }
        Ok(addrs)
    }

    fn is_own(&self, addr: &SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.inner.own.iter().any(|own| {
            own.port() == addr.port()
                && (own.ip() == ip
                    || ip.is_loopback()
                    || ip.is_unspecified()
                    || own.ip().is_unspecified())
        })
    }

    /// Dial the planned addresses in order; the first that answers wins.
    pub async fn dial(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let addrs = self.plan(host, port).await?;
        let attempt = async {
            let mut last = String::from("no address");
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(s);
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(ConnectError::Connect {
                host: crate::audit::bounded(host).into_owned(),
                reason: last,
            })
        };
        tokio::time::timeout(self.inner.timeout, attempt)
            .await
            .map_err(|_| ConnectError::Timeout(crate::audit::bounded(host).into_owned()))?
    }

    /// TLS over `tcp`, verifying the certificate for `host`.
    pub async fn tls(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
        Self::handshake(&self.inner.tls, self.inner.timeout, host, tcp).await
    }

    /// TLS offering only HTTP/1.1.
    pub async fn tls_http1(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
        Self::handshake(&self.inner.tls_http1, self.inner.timeout, host, tcp).await
    }

    async fn handshake(
        tls: &TlsConnector,
        timeout: Duration,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| {
            ConnectError::Tls {
                host: crate::audit::bounded(host).into_owned(),
                reason: "invalid server name".into(),
            }
        })?;
        let handshake = tls.connect(name, tcp);
        match tokio::time::timeout(timeout, handshake).await {
            Err(_) => Err(ConnectError::Timeout(
                crate::audit::bounded(host).into_owned(),
            )),
            Ok(Err(e)) => Err(ConnectError::Tls {
                host: crate::audit::bounded(host).into_owned(),
                reason: tls_reason(&e),
            }),
            Ok(Ok(s)) => Ok(s),
        }
    }

    async fn connect(self, uri: http::Uri) -> Result<Conn, ConnectError> {
        let host = uri
            .host()
            .ok_or(ConnectError::BadUri)?
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = self.dial(&host, port).await?;
        if !https {
            return Ok(Conn::Plain(TokioIo::new(tcp)));
        }
        let tls = self.tls(&host, tcp).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Conn::Tls(Box::new(TokioIo::new(tls)), h2))
    }
}

/// A readable reason from a rustls error, e.g. "invalid peer certificate: UnknownIssuer".
fn tls_reason(e: &io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(c)) => format!("invalid peer certificate: {c:?}"),
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

/// An upstream connection: plain TCP or TLS (with whether ALPN chose h2).
pub enum Conn {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>, bool),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Plain(_) => Connected::new(),
            Conn::Tls(_, true) => Connected::new().negotiated_h2(),
            Conn::Tls(_, false) => Connected::new(),
        }
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }
}
