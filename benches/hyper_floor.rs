//! The floor under sidekey's plain-HTTP numbers in `benches/load.sh`: a reverse proxy
//! on the same stack (hyper 1.x server, hyper-util's pooled client, a current-thread
//! tokio runtime) that does nothing but set `Authorization` and forward. No identity,
//! policy, audit, metrics or scrubbing: what is left is the cost of the stack itself,
//! so `load.sh` can say how much of the gap to nginx is sidekey's and how much hyper's.
//!
//!     hyper_floor <listen addr> <upstream host:port> <token>

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, token] = args.as_slice() else {
        return Err("usage: hyper_floor <listen addr> <upstream host:port> <token>".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream = upstream.clone();
    let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))?;
    auth.set_sensitive(true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let client: Client<_, Body> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build_http();
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let (client, upstream, auth) = (client.clone(), upstream.clone(), auth.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    forward(client.clone(), upstream.clone(), auth.clone(), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

async fn forward(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
    upstream: String,
    auth: HeaderValue,
    req: Request<Incoming>,
) -> Result<http::Response<Incoming>, Box<dyn std::error::Error + Send + Sync>> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = Uri::try_from(format!("http://{upstream}{path}"))?;
    parts.headers.remove(http::header::HOST);
    parts.headers.insert(http::header::AUTHORIZATION, auth);
    let req = Request::from_parts(parts, body.boxed_unsync());
    Ok(client.request(req).await?)
}
