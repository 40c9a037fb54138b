//! A small HTTPS load client for `benches/load.sh` (wrk cannot speak through a CONNECT
//! proxy). Opens `--conns` keep-alive TLS connections before the timed window, then
//! each connection sends `GET --path` with `Host: --host` back to back for `--duration`.
//!
//!     # through an intercepting proxy: CONNECT, then TLS inside the tunnel
//!     tls_load --mode connect --proxy 127.0.0.1:15080 --target api.test:443 --ca ca.crt
//!     # straight to a TLS server (e.g. nginx terminating TLS)
//!     tls_load --mode direct --addr 127.0.0.1:8443 --sni api.test --ca up-ca.crt
//!
//! Options: `--conns 32 --duration 10s --path /v1/x --host <sni> --threads 1`.
//! Prints one line:
//!
//!     tls_load: rps=... p50_ms=... p99_ms=... errors=... requests=... conns=... suite=...
//!
//! `errors` counts non-2xx responses plus I/O failures (a failed connection is reopened,
//! inside the window). Latency is per request, from send to the full body read.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Clone, Debug)]
enum Mode {
    /// CONNECT `target` through `proxy`, then TLS inside the tunnel.
    Connect { proxy: SocketAddr, target: String },
    /// TLS straight to `addr`.
    Direct { addr: SocketAddr },
}

#[derive(Clone, Debug)]
struct Args {
    mode: Mode,
    sni: String,
    host: String,
    path: String,
    ca: String,
    conns: usize,
    duration: Duration,
    threads: usize,
}

const USAGE: &str = "usage: tls_load --mode connect --proxy HOST:PORT --target NAME:PORT --ca FILE \
                     | --mode direct --addr HOST:PORT --sni NAME --ca FILE \
                     [--conns 32] [--duration 10s] [--path /v1/x] [--host NAME] [--threads 1]";

fn parse_duration(s: &str) -> Result<Duration> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => bail!("bad duration unit in {s:?} (use ms, s or m)"),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn parse_args() -> Result<Args> {
    let mut mode = None;
    let (mut proxy, mut target, mut addr, mut sni, mut host, mut ca) =
        (None, None, None, None, None, None);
    let mut path = "/v1/x".to_string();
    let mut conns = 32usize;
    let mut duration = Duration::from_secs(10);
    let mut threads = 1usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench` to harness = false targets: ignore it.
        if flag == "--bench" {
            continue;
        }
        let mut val = || {
            it.next()
                .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--mode" => mode = Some(val()?),
            "--proxy" => proxy = Some(val()?),
            "--target" => target = Some(val()?),
            "--addr" => addr = Some(val()?),
            "--sni" => sni = Some(val()?),
            "--host" => host = Some(val()?),
            "--ca" => ca = Some(val()?),
            "--path" => path = val()?,
            "--conns" => conns = val()?.parse().context("--conns")?,
            "--duration" => duration = parse_duration(&val()?)?,
            "--threads" => threads = val()?.parse().context("--threads")?,
            "-h" | "--help" => bail!("{USAGE}"),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let ca = ca.ok_or_else(|| anyhow!("--ca is required\n{USAGE}"))?;
    let (mode, sni) = match mode.as_deref() {
        Some("connect") => {
            let proxy = proxy.ok_or_else(|| anyhow!("--mode connect needs --proxy"))?;
            let target = target.ok_or_else(|| anyhow!("--mode connect needs --target"))?;
            let name = target
                .rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_else(|| target.clone());
            let target = if target.contains(':') {
                target
            } else {
                format!("{target}:443")
            };
            let sni = sni.unwrap_or(name);
            let proxy = proxy.parse().with_context(|| format!("--proxy {proxy}"))?;
            (Mode::Connect { proxy, target }, sni)
        }
        Some("direct") => {
            let addr = addr.ok_or_else(|| anyhow!("--mode direct needs --addr"))?;
            let sni = sni.ok_or_else(|| anyhow!("--mode direct needs --sni"))?;
            let addr = addr.parse().with_context(|| format!("--addr {addr}"))?;
            (Mode::Direct { addr }, sni)
        }
        _ => bail!("--mode connect|direct is required\n{USAGE}"),
    };
    if conns == 0 || threads == 0 {
        bail!("--conns and --threads must be at least 1");
    }
    Ok(Args {
        mode,
        host: host.unwrap_or_else(|| sni.clone()),
        sni,
        path,
        ca,
        conns,
        duration,
        threads,
    })
}

fn tls_config(ca: &str) -> Result<Arc<ClientConfig>> {
    let pem = std::fs::read(ca).with_context(|| format!("reading --ca {ca}"))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.with_context(|| format!("parsing {ca}"))?)?;
    }
    if roots.is_empty() {
        bail!("{ca} holds no certificate");
    }
    // Explicit provider: ring and aws-lc-rs are both linked, so the process default is
    // ambiguous and `ClientConfig::builder()` would panic.
    let mut cfg = ClientConfig::builder_with_provider(sidekey::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Opens one connection: TCP, CONNECT if through a proxy, TLS handshake.
async fn open(args: &Args, tls: &TlsConnector) -> Result<TlsStream<TcpStream>> {
    let tcp = match &args.mode {
        Mode::Direct { addr } => TcpStream::connect(addr).await?,
        Mode::Connect { proxy, target } => {
            let mut tcp = TcpStream::connect(proxy).await?;
            tcp.write_all(
                format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
            )
            .await?;
            // Read the response head byte by byte: nothing may be consumed past it.
            let mut head = Vec::with_capacity(128);
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if tcp.read(&mut b).await? == 0 {
                    bail!("proxy closed the connection during CONNECT");
                }
                head.push(b[0]);
                if head.len() > 8192 {
                    bail!("CONNECT response head too long");
                }
            }
            let line = String::from_utf8_lossy(&head);
            let status = line.split_whitespace().nth(1).unwrap_or("");
            if status != "200" {
                bail!("CONNECT {target}: {}", line.lines().next().unwrap_or(""));
            }
            tcp
        }
    };
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(args.sni.clone())?;
    Ok(tls.connect(name, tcp).await?)
}

struct Conn {
    sender: http1::SendRequest<Empty<Bytes>>,
}

async fn handshake(stream: TlsStream<TcpStream>) -> Result<Conn> {
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender })
}

/// One request; Ok(status).
async fn request(args: &Args, c: &mut Conn) -> Result<u16> {
    c.sender.ready().await?;
    let req = Request::get(&args.path)
        .header(http::header::HOST, &args.host)
        .body(Empty::<Bytes>::new())?;
    let resp = c.sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

struct Shared {
    start: AtomicBool,
    stop: AtomicBool,
    errors: AtomicU64,
}

/// Runs one keep-alive connection until `stop`; returns the latencies (µs) of requests
/// that completed inside the window.
async fn worker(
    args: Arc<Args>,
    tls: TlsConnector,
    mut conn: Conn,
    shared: Arc<Shared>,
) -> Vec<u32> {
    let mut lat = Vec::with_capacity(1 << 16);
    while !shared.start.load(Ordering::Acquire) {
        tokio::task::yield_now().await;
    }
    while !shared.stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        match request(&args, &mut conn).await {
            Ok(status) => {
                if shared.stop.load(Ordering::Relaxed) {
                    break; // finished after the window closed
                }
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !(200..300).contains(&status) {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                if shared.stop.load(Ordering::Relaxed) {
                    break;
                }
                shared.errors.fetch_add(1, Ordering::Relaxed);
                // Reopen; back off briefly so a dead server does not spin the loop.
                loop {
                    match async { handshake(open(&args, &tls).await?).await }.await {
                        Ok(c) => {
                            conn = c;
                            break;
                        }
                        Err(_) => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            if shared.stop.load(Ordering::Relaxed) {
                                return lat;
                            }
                        }
                    }
                }
            }
        }
    }
    lat
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

async fn run(args: Args) -> Result<()> {
    let args = Arc::new(args);
    let cfg = tls_config(&args.ca)?;
    let tls = TlsConnector::from(cfg);

    // Connect and handshake every connection, and send one warm-up request on each
    // (this also fills the proxy's upstream pool), all before the timed window.
    let mut conns = Vec::with_capacity(args.conns);
    let mut suite = String::from("?");
    for i in 0..args.conns {
        let stream = open(&args, &tls)
            .await
            .with_context(|| format!("opening connection {}", i + 1))?;
        if i == 0 {
            let (_, session) = stream.get_ref();
            if let Some(s) = session.negotiated_cipher_suite() {
                suite = format!("{:?}", s.suite());
            }
        }
        conns.push(handshake(stream).await?);
    }
    let warm = futures_util::future::join_all(conns.iter_mut().map(|c| request(&args, c))).await;
    for r in warm {
        let status = r.context("warm-up request")?;
        if !(200..300).contains(&status) {
            bail!("warm-up request got HTTP {status}");
        }
    }

    let shared = Arc::new(Shared {
        start: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        errors: AtomicU64::new(0),
    });
    let handles: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(worker(args.clone(), tls.clone(), c, shared.clone())))
        .collect();
    let t0 = Instant::now();
    shared.start.store(true, Ordering::Release);
    tokio::time::sleep(args.duration).await;
    shared.stop.store(true, Ordering::Release);
    let elapsed = t0.elapsed();

    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await?);
    }
    lat.sort_unstable();
    let rps = lat.len() as f64 / elapsed.as_secs_f64();
    println!(
        "tls_load: rps={rps:.1} p50_ms={:.3} p99_ms={:.3} errors={} requests={} conns={} suite={suite}",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        shared.errors.load(Ordering::Relaxed),
        lat.len(),
        args.conns,
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tls_load: {e:#}");
            return ExitCode::from(2);
        }
    };
    let rt = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls_load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
