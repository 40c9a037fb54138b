//! Heap allocations per proxied request: a counting global allocator around the system
//! one, sidekey's `server::run` in this process with a loopback upstream and a
//! keep-alive client, all on one current-thread runtime. Every case sends the same
//! requests; the `direct` case (client straight to the upstream) is what the client
//! and the upstream allocate themselves, so each sidekey case's own share is its count
//! minus `direct`'s. The audit writer and metrics are counted with sidekey.
//!
//!     cargo bench --bench alloc            # REQUESTS=5000 by default

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// plain atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TOKEN: &str = "bench-token-0123456789abcdef";

fn main() -> anyhow::Result<()> {
    let requests: u64 = std::env::var("REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    // SAFETY: set before any other thread exists (the runtime is built below).
    unsafe { std::env::set_var("BENCH_TOKEN", TOKEN) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(requests))
}

/// A request of one case: the address the client connects to, the request target,
/// and the end user (a trusted `x-sidekey-user` header) if any.
struct Case {
    name: &'static str,
    connect: SocketAddr,
    target: String,
    user: Option<&'static str>,
}

async fn run(requests: u64) -> anyhow::Result<()> {
    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let up = upstream.local_addr()?;
    tokio::spawn(serve_upstream(upstream));

    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("creds"))?;
    std::fs::write(dir.path().join("creds/alice.txt"), "user-token-alice-0123")?;
    let yaml = format!(
        "version: 1\nagent: bench\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n\
         audit: {{file: audit.jsonl}}\n\
         upstreams: {{api.test: '{up}', user.test: '{up}'}}\n\
         credentials:\n  bot: {{source: env, env: BENCH_TOKEN}}\n  \
         user: {{source: file, file: 'creds/{{user}}.txt'}}\n\
         routes:\n  - {{name: claw, match: {{host: api.test}}, auth: claw, credential: bot}}\n  \
         - {{name: assistant, match: {{host: user.test}}, auth: assistant, credential: user}}\n  \
         - {{name: gateway, gateway: {{prefix: /gw, upstream: 'http://{up}'}}, auth: claw, credential: bot}}\n"
    );
    let path = dir.path().join("sidekey.yaml");
    std::fs::write(&path, yaml)?;
    let cfg = sidekey::config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listeners = sidekey::server::Listeners::bind(&cfg).await?;
    let proxy = listeners
        .proxy
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no proxy listener"))?
        .local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sidekey::server::run(cfg, listeners, async {
        let _ = stopped.await;
    }));

    let cases = [
        Case {
            name: "direct (client + upstream)",
            connect: up,
            target: "/v1/items?limit=10".into(),
            user: None,
        },
        Case {
            name: "claw (forward proxy, env credential)",
            connect: proxy,
            target: "http://api.test/v1/items?limit=10".into(),
            user: None,
        },
        Case {
            name: "assistant (per-user file credential, cached)",
            connect: proxy,
            target: "http://user.test/v1/items?limit=10".into(),
            user: Some("alice"),
        },
        Case {
            name: "gateway (/gw prefix, env credential)",
            connect: proxy,
            target: "/gw/v1/items?limit=10".into(),
            user: None,
        },
    ];
    println!("{requests} requests per case, one keep-alive connection, sequential\n");
    println!("| case | allocations / request | bytes / request | sidekey's own (allocs, bytes) |");
    println!("|---|---|---|---|");
    let mut direct = None;
    for case in &cases {
        let (allocs, bytes) = measure(case, requests).await?;
        let own = match direct {
            None => {
                direct = Some((allocs, bytes));
                "—".to_string()
            }
            Some((a, b)) => format!("{:.1}, {:.0}", allocs - a, bytes - b),
        };
        println!("| {} | {allocs:.1} | {bytes:.0} | {own} |", case.name);
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// Allocations and bytes per request over `requests` calls on one connection, after
/// a warm-up that fills the caches and the connection pools.
async fn measure(case: &Case, requests: u64) -> anyhow::Result<(f64, f64)> {
    let stream = TcpStream::connect(case.connect).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    for _ in 0..200 {
        call(&mut send, case).await?;
    }
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..requests {
        call(&mut send, case).await?;
    }
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let n = requests as f64;
    Ok(((a1 - a0) as f64 / n, (b1 - b0) as f64 / n))
}

async fn call(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    case: &Case,
) -> anyhow::Result<()> {
    send.ready().await?;
    // The Host header names the target's authority (absolute form) or the listener.
    let host = match case.target.strip_prefix("http://") {
        Some(rest) => rest.split('/').next().unwrap_or_default().to_string(),
        None => case.connect.to_string(),
    };
    let mut req = Request::get(case.target.as_str())
        .header("host", host)
        .header("user-agent", "alloc-bench");
    if let Some(user) = case.user {
        req = req.header("x-sidekey-user", user);
    }
    let req = req.body(Empty::new())?;
    let resp = send.send_request(req).await?;
    anyhow::ensure!(
        resp.status() == 200,
        "{}: status {}",
        case.name,
        resp.status()
    );
    resp.into_body().collect().await?;
    Ok(())
}

async fn serve_upstream(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let svc = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
                        .unwrap_or_default(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
