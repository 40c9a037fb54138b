//! An upstream that asks its callers to slow down, and counts every request it sees.
//!
//! * `/retry-after/{status}/{value}` — answers `status` with `Retry-After: value`
//!   (`value` percent-decoded, so an HTTP-date can be sent);
//! * anything else — 200 `{"ok":true}`.
//!
//! Each request's path and `Authorization` header are recorded, so a test can count
//! the upstream's hits and see which credential (if any) arrived.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub authorization: Option<String>,
}

pub struct SlowDownUpstream {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

fn answer(path: &str) -> Response<Full<Bytes>> {
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    if let (Some("retry-after"), Some(status), Some(value)) =
        (parts.next(), parts.next(), parts.next())
    {
        let status = status
            .parse::<u16>()
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        return Response::builder()
            .status(status)
            .header("retry-after", value.as_ref())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                b"{\"ok\":false,\"error\":\"slow down\"}",
            )))
            .unwrap();
    }
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
        .unwrap()
}

impl SlowDownUpstream {
    pub async fn start() -> SlowDownUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let h = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let h = h.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let h = h.clone();
                        async move {
                            let hit = Hit {
                                path: req.uri().path().to_string(),
                                authorization: req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .map(String::from),
                            };
                            let resp = answer(&hit.path);
                            h.lock().unwrap().push(hit);
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        SlowDownUpstream { addr, hits }
    }

    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}
