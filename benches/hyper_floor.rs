//! The floor under sidekey's plain-HTTP numbers in `benches/load.sh`: a reverse proxy
//! on the same stack (hyper 1.x server, hyper-util's pooled client, a current-thread
//! tokio runtime) that does nothing but set `Authorization` and forward. No identity,
//! policy, audit, metrics or scrubbing: what is left is the cost of the stack itself,
//! so `load.sh` can say how much of the gap to nginx is sidekey's and how much hyper's.
//!
//!     hyper_floor <listen addr> <upstream host:port> <token> [pool|affinity|inline]
//!
//! The upstream hop, by mode:
//! * `pool` (default): hyper-util's pooled `Client` (a spawned task per upstream
//!   connection, a checkout and a channel hop per request), as sidekey does today.
//! * `affinity`: each downstream connection holds one upstream connection for its life
//!   (hyper's low-level `client::conn::http1`), its connection future still spawned.
//! * `inline`: the same, but the upstream connection future is driven inside the
//!   downstream connection's own task (no spawned task, no cross-task wake-up).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = UnsyncBoxBody<Bytes, hyper::Error>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ConnFuture = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Pool,
    Affinity,
    Inline,
}

/// What one downstream connection holds of the upstream: its sender and, in `inline`
/// mode, the connection future its own task drives.
#[derive(Default)]
struct Slot {
    sender: Option<SendRequest<Body>>,
    conn: Option<ConnFuture>,
}

type SharedSlot = Arc<Mutex<Slot>>;

#[derive(Clone)]
struct Ctx {
    mode: Mode,
    client: Client<HttpConnector, Body>,
    upstream: Arc<str>,
    auth: HeaderValue,
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, token, mode) = match args.as_slice() {
        [l, u, t] => (l, u, t, Mode::Pool),
        [l, u, t, m] => (l, u, t, parse_mode(m)?),
        _ => {
            return Err(
                "usage: hyper_floor <listen> <upstream host:port> <token> [pool|affinity|inline]"
                    .into(),
            );
        }
    };
    let listen: SocketAddr = listen.parse()?;
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
        let ctx = Ctx {
            mode,
            client,
            upstream: upstream.as_str().into(),
            auth,
        };
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(ctx.clone(), stream));
        }
    })
}

fn parse_mode(m: &str) -> Result<Mode, BoxError> {
    match m {
        "pool" => Ok(Mode::Pool),
        "affinity" => Ok(Mode::Affinity),
        "inline" => Ok(Mode::Inline),
        other => Err(format!("unknown mode {other:?} (pool|affinity|inline)").into()),
    }
}

async fn serve(ctx: Ctx, stream: tokio::net::TcpStream) {
    let slot = SharedSlot::default();
    let svc_slot = slot.clone();
    let svc = service_fn(move |req: Request<Incoming>| forward(ctx.clone(), svc_slot.clone(), req));
    let server =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    let _ = Driven {
        server: Box::pin(server),
        slot,
    }
    .await;
}

/// The downstream connection, plus (in `inline` mode) its upstream connection, polled
/// together by one task. The upstream future is polled after the server's, so one that
/// a request just installed is driven in the same pass.
struct Driven<S> {
    server: Pin<Box<S>>,
    slot: SharedSlot,
}

impl<S: Future> Future for Driven<S> {
    type Output = S::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<S::Output> {
        if let Poll::Ready(out) = self.server.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(conn) = slot.conn.as_mut()
            && conn.as_mut().poll(cx).is_ready()
        {
            slot.conn = None;
        }
        Poll::Pending
    }
}

async fn forward(
    ctx: Ctx,
    slot: SharedSlot,
    req: Request<Incoming>,
) -> Result<http::Response<Incoming>, BoxError> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let upstream = &ctx.upstream;
    parts.uri = Uri::try_from(format!("http://{upstream}{path}"))?;
    parts.headers.remove(http::header::HOST);
    parts
        .headers
        .insert(http::header::AUTHORIZATION, ctx.auth.clone());
    let mut req = Request::from_parts(parts, body.boxed_unsync());
    if ctx.mode == Mode::Pool {
        return Ok(ctx.client.request(req).await?);
    }
    // Low-level conn: origin-form URI and an explicit Host.
    let host = HeaderValue::from_str(upstream)?;
    req.headers_mut().insert(http::header::HOST, host);
    *req.uri_mut() = Uri::try_from(path_of(req.uri()))?;
    affine(&ctx, &slot, req).await
}

fn path_of(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string())
}

/// Send on this downstream connection's own upstream connection; a reused one that
/// turns out closed before the request went out is replaced once (as the pool does).
async fn affine(
    ctx: &Ctx,
    slot: &SharedSlot,
    mut req: Request<Body>,
) -> Result<http::Response<Incoming>, BoxError> {
    let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).sender.take();
    let (mut sender, mut reused) = match taken {
        Some(mut s) => match s.ready().await {
            Ok(()) => (s, true),
            Err(_) => (connect(ctx, slot).await?, false),
        },
        None => (connect(ctx, slot).await?, false),
    };
    loop {
        match sender.try_send_request(req).await {
            Ok(resp) => {
                slot.lock().unwrap_or_else(|e| e.into_inner()).sender = Some(sender);
                return Ok(resp);
            }
            Err(mut e) => match e.take_message() {
                // Never sent, on a reused connection: once more on a fresh one.
                Some(back) if reused => {
                    req = back;
                    sender = connect(ctx, slot).await?;
                    reused = false;
                }
                _ => return Err(e.into_error().into()),
            },
        }
    }
}

async fn connect(ctx: &Ctx, slot: &SharedSlot) -> Result<SendRequest<Body>, BoxError> {
    let tcp = tokio::net::TcpStream::connect(&*ctx.upstream).await?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    if ctx.mode == Mode::Inline {
        slot.lock().unwrap_or_else(|e| e.into_inner()).conn = Some(Box::pin(conn));
    } else {
        tokio::spawn(conn);
    }
    Ok(sender)
}
