//! A local token endpoint for the minted-credential tests: a real hyper server on
//! `127.0.0.1:0` whose answers come from a test closure that sees the whole request
//! (and so can VERIFY what sidekey sent: an app JWT, an RFC 7523 assertion, an RFC 8693
//! `subject_token`). Every call is recorded; an answer can be delayed to widen races.
//!
//! The server runs on its own thread and runtime, so it works from any test.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::oneshot;

/// One request as the token endpoint received it.
#[derive(Debug, Clone)]
pub struct MintCall {
    pub method: String,
    pub path: String,
    /// Header names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl MintCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as `application/x-www-form-urlencoded` pairs, decoded.
    pub fn form(&self) -> HashMap<String, String> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        String::from_utf8_lossy(&self.body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `Authorization: Bearer` value, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

type Handler = dyn Fn(&MintCall) -> (u16, serde_json::Value) + Send + Sync;

/// A running token endpoint. Dropping it stops the server (an outage).
pub struct MintServer {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<MintCall>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl MintServer {
    /// Answers every request with `handler`'s (status, JSON body), after `delay`.
    pub fn start(
        delay: Duration,
        handler: impl Fn(&MintCall) -> (u16, serde_json::Value) + Send + Sync + 'static,
    ) -> MintServer {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let calls: Arc<Mutex<Vec<MintCall>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let rec = calls.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let (rec, handler) = (rec.clone(), handler.clone());
                        tokio::spawn(async move {
                            let svc = service_fn(move |req| {
                                answer(rec.clone(), handler.clone(), delay, req)
                            });
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
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
        });
        MintServer {
            addr,
            calls,
            stop: Some(stop_tx),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<MintCall> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl Drop for MintServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn answer(
    rec: Arc<Mutex<Vec<MintCall>>>,
    handler: Arc<Handler>,
    delay: Duration,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let call = MintCall {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    tokio::time::sleep(delay).await;
    let (status, json) = handler(&call);
    rec.lock().unwrap().push(call);
    let mut r = Response::new(Full::new(Bytes::from(json.to_string())));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
