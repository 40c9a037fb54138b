//! `sidekey run --config F [--user U] -- CMD ARGS`: serve sidekey, wait until its
//! `/readyz` answers 200 (30 s at most), run CMD with the [`DevEnv`] (plus
//! `SIDEKEY_USER`), forward SIGINT/SIGTERM to it, and when it exits stop sidekey with
//! the usual drain and exit with CMD's status.
//!
//! Exit codes: CMD's (128 + N when a signal N ended it); 2 for an invalid config (CMD
//! never starts); 1 when sidekey cannot start or get ready; 127/126 when CMD cannot be
//! run (as a shell does). The listeners are close-on-exec, so CMD and anything it
//! leaves running never hold them: when sidekey exits, nothing listens.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{DevEnv, Listeners, reachable};
use crate::config::Config;

/// How long `run -- CMD` waits for `/readyz` before giving up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The variable that carries `--user` to CMD.
pub const USER_VAR: &str = "SIDEKEY_USER";

type Server = JoinHandle<anyhow::Result<()>>;

/// Entry point from the command line (the config is already loaded).
pub fn run_command(cfg: Config, user: Option<String>, argv: Vec<OsString>) -> ExitCode {
    let runtime = match crate::cli::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(supervise(cfg, user, argv))
}

async fn supervise(cfg: Config, user: Option<String>, argv: Vec<OsString>) -> ExitCode {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => return fail(format_args!("cannot handle signals: {e}")),
    };
    let listeners = match crate::server::Listeners::bind(&cfg).await {
        Ok(l) => l,
        Err(e) => return fail(format_args!("{e:#}")),
    };
    let proxy = listeners.proxy.as_ref().map(|l| l.local_addr());
    let (proxy, admin) = match (proxy, listeners.admin.local_addr()) {
        (Some(Ok(p)), Ok(a)) => (p, a),
        (Some(Err(e)), _) | (_, Err(e)) => return fail(format_args!("{e}")),
        (None, _) => return fail(format_args!("no proxy listener")),
    };
    let at = Listeners {
        proxy,
        admin,
        connect: super::connect_listen(&cfg),
    };
    let env = match DevEnv::new(&cfg, at) {
        Ok(env) => env,
        Err(e) => return fail(format_args!("{e}")),
    };
    let stop = CancellationToken::new();
    let mut server: Server = tokio::spawn(crate::server::run(
        cfg,
        listeners,
        stop.clone().cancelled_owned(),
    ));

    let ready = tokio::select! {
        r = wait_ready(admin, &mut server) => r,
        sig = signals.next() => Err(Early::Signal(sig)),
    };
    if let Err(why) = ready {
        return match why {
            Early::Signal(sig) => {
                stop_server(&stop, server).await;
                ExitCode::from(128 + sig.number())
            }
            Early::Stopped(e) => fail(format_args!("{e}")),
            Early::NotReady(reason) => {
                stop_server(&stop, server).await;
                fail(format_args!(
                    "not ready within {}s: {reason}",
                    READY_TIMEOUT.as_secs()
                ))
            }
        };
    }

    let mut child = match spawn(&argv, &env, user.as_deref()) {
        Ok(c) => c,
        Err((code, e)) => {
            stop_server(&stop, server).await;
            eprintln!("sidekey: cannot run {}: {e}", argv[0].to_string_lossy());
            return ExitCode::from(code);
        }
    };
    let pid = child.id();
    let status = loop {
        tokio::select! {
            st = child.wait() => break st,
            sig = signals.next() => forward(pid, sig),
            res = &mut server => {
                // sidekey stopped under CMD: end CMD rather than leave it unproxied.
                eprintln!("sidekey: {}; stopping {}", stopped(res), argv[0].to_string_lossy());
                forward(pid, Sig::Term);
                let _ = child.wait().await;
                return ExitCode::from(1);
            }
        }
    };
    stop_server(&stop, server).await;
    match status {
        Ok(st) => ExitCode::from(exit_code(st)),
        Err(e) => fail(format_args!("lost track of the command: {e}")),
    }
}

fn fail(why: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("sidekey: {why}");
    ExitCode::from(1)
}

/// Drain and stop sidekey (the same shutdown as SIGTERM on `sidekey run`).
async fn stop_server(stop: &CancellationToken, server: Server) {
    stop.cancel();
    if let Ok(Err(e)) = server.await {
        eprintln!("sidekey: {e:#}");
    }
}

fn stopped(res: Result<anyhow::Result<()>, tokio::task::JoinError>) -> String {
    match res {
        Ok(Ok(())) => "sidekey stopped".into(),
        Ok(Err(e)) => format!("sidekey stopped: {e:#}"),
        Err(e) => format!("sidekey stopped: {e}"),
    }
}

enum Early {
    Signal(Sig),
    Stopped(String),
    NotReady(String),
}

/// Poll `/readyz` until 200; the last reason it gave on time-out.
async fn wait_ready(admin: SocketAddr, server: &mut Server) -> Result<(), Early> {
    let addr = reachable(admin);
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let reason = match tokio::time::timeout(Duration::from_secs(2), readyz(addr)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(why)) => why,
            Err(_) => "GET /readyz did not answer within 2s".to_string(),
        };
        if server.is_finished() {
            return Err(Early::Stopped(stopped(server.await)));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Early::NotReady(reason));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `GET /readyz`: `Ok` on 200, else what it answered.
async fn readyz(addr: SocketAddr) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot reach the admin listener {addr}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("GET /readyz: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::get("/readyz")
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("GET /readyz: {e}"))?;
    if resp.status() == http::StatusCode::OK {
        return Ok(());
    }
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
        .unwrap_or_default();
    Err(format!("/readyz answered {status}: {body}"))
}

/// Start CMD with the inherited environment plus `env` (and `SIDEKEY_USER`). The
/// error carries the shell's exit code for it: 127 not found, 126 not runnable.
fn spawn(
    argv: &[OsString],
    env: &DevEnv,
    user: Option<&str>,
) -> Result<tokio::process::Child, (u8, std::io::Error)> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd.envs(env.vars.iter().map(|(k, v)| (k, v)));
    if let Some(u) = user {
        cmd.env(USER_VAR, u);
    }
    cmd.spawn().map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        (code, e)
    })
}

/// CMD's exit status as sidekey's: its code, or 128 + the signal that ended it.
fn exit_code(st: std::process::ExitStatus) -> u8 {
    if let Some(code) = st.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = st.signal() {
            return u8::try_from(128 + sig).unwrap_or(1);
        }
    }
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    Int,
    Term,
}

impl Sig {
    fn number(self) -> u8 {
        match self {
            Sig::Int => 2,
            Sig::Term => 15,
        }
    }
}

/// Send `sig` to CMD. A Ctrl-C typed at the terminal already reached CMD (it is in
/// sidekey's foreground process group), so SIGINT is not sent a second time then.
fn forward(pid: Option<u32>, sig: Sig) {
    let Some(pid) = pid else { return };
    #[cfg(unix)]
    {
        use nix::sys::signal::{Signal, kill};
        if sig == Sig::Int && terminal_delivers_to_us() {
            return;
        }
        let signal = match sig {
            Sig::Int => Signal::SIGINT,
            Sig::Term => Signal::SIGTERM,
        };
        let Ok(pid) = i32::try_from(pid) else { return };
        if let Err(e) = kill(nix::unistd::Pid::from_raw(pid), signal) {
            tracing::debug!(error = %e, "cannot forward {signal} to the command");
        }
    }
    #[cfg(not(unix))]
    let _ = (pid, sig);
}

/// Whether our stdin is a terminal whose foreground process group is ours (then the
/// terminal sends its SIGINT to CMD as well as to sidekey).
#[cfg(unix)]
fn terminal_delivers_to_us() -> bool {
    let stdin = std::io::stdin();
    matches!(nix::unistd::tcgetpgrp(&stdin), Ok(fg) if fg == nix::unistd::getpgrp())
}

/// SIGINT and SIGTERM, caught from start-up on, so neither stops sidekey before CMD.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) -> Sig {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => Sig::Int,
                _ = self.term.recv() => Sig::Term,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Sig::Int
        }
    }
}
