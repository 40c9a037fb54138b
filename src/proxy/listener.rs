//! The proxy listener: accept, bound the connection count, serve HTTP/1.1 and HTTP/2.
//!
//! Protocol limits are set explicitly here (header bytes, header read timeout, HTTP/2
//! streams) rather than left to library defaults. Every connection watches the
//! shutdown token and, when it fires, finishes its in-flight requests and closes.

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{ConnGuard, ConnInfo, Shared, phases};

/// Accept until shutdown; each connection is served on its own task.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let limit = Arc::new(Semaphore::new(
        shared.runtime().config.limits.max_connections,
    ));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shared.shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(ConnInfo {
            peer,
            guard: Some(ConnGuard::new(
                permit,
                shared.metrics.open_connections.clone(),
            )),
            loopback: peer.ip().to_canonical().is_loopback(),
            intercepted: None,
            affinity: Default::default(),
        });
        let shared2 = shared.clone();
        let deadline = shared.runtime().config.timeouts.request_headers;
        shared.tasks.spawn(async move {
            if !opening_bytes(&stream, deadline).await {
                return;
            }
            serve_connection(shared2, TokioIo::new(stream), conn).await;
        });
    }
}

/// Wait (bounded by the request-header timeout) until the client has said enough to
/// tell HTTP/1 from HTTP/2. Protocol detection itself has no timer, so without this a
/// connection that sends nothing (or half a preface) would hold its slot forever.
async fn opening_bytes(stream: &tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let wait = async {
        // The preface and the header of the client's first frame (its SETTINGS).
        let mut buf = [0u8; 24 + 9];
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n == buf.len() => return true,
                Ok(n) if !PREFACE.starts_with(&buf[..n.min(PREFACE.len())]) => return true,
                // A partial HTTP/2 preface: peek returns at once while bytes are
                // pending, so poll gently until the rest arrives.
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or(false)
}

/// [`serve_connection`] behind a nameable type: an intercepted tunnel serves a
/// connection from inside a request, and the recursion needs one boxed step.
pub fn serve_connection_boxed<I>(
    shared: Arc<Shared>,
    io: I,
    conn: Arc<ConnInfo>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    Box::pin(serve_connection(shared, io, conn))
}

/// Serve one client connection (plain, or TLS inside an intercepted tunnel).
pub async fn serve_connection<I>(shared: Arc<Shared>, io: I, conn: Arc<ConnInfo>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let limits = {
        let rt = shared.runtime();
        (rt.config.limits.clone(), rt.config.timeouts.clone())
    };
    let (limits, timeouts) = limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.request_headers)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256)
        // A peer that stops answering pings is dropped instead of holding its slot.
        .keep_alive_interval(Some(timeouts.idle))
        .keep_alive_timeout(std::time::Duration::from_secs(20));
    let svc_shared = shared.clone();
    let service = service_fn(move |req| phases::handle(svc_shared.clone(), conn.clone(), req));
    let serving = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(serving);
    tokio::select! {
        res = serving.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = shared.shutdown.cancelled() => {
            serving.as_mut().graceful_shutdown();
            if let Err(e) = serving.await {
                tracing::debug!(error = %e, "connection ended with an error during shutdown");
            }
        }
    }
}
