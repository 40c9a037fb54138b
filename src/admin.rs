//! The admin listener: `/metrics`, `/healthz`, `/readyz`. Never proxied.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::proxy::Shared;

/// Readiness as the admin listener reports it.
#[derive(Default)]
pub struct Readiness {
    pub shutting_down: AtomicBool,
}

/// Serve until `stop` fires. The server stops it only after the proxy has drained,
/// so `/readyz` answers 503 and `/metrics` stays scrapable during the drain.
pub async fn serve(
    shared: Arc<Shared>,
    ready: Arc<Readiness>,
    listener: TcpListener,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let shared = shared.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = route(&shared, &ready, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn route(shared: &Shared, ready: &Readiness, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if ready.shutting_down.load(Ordering::Relaxed) {
                return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
            }
            match readiness(shared) {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("not ready: {why}\n"),
                ),
            }
        }
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(shared.metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

/// What `/readyz` checks beyond "not shutting down".
pub(crate) fn readiness(shared: &Shared) -> Result<(), String> {
    let rt = shared.runtime();
    if rt.config.tls.is_some() && rt.ca.is_none() {
        return Err("CA not loaded".into());
    }
    shared.credentials.readiness()
}
