//! Running sidekey: [`run`] takes bound listeners and a shutdown future, so tests can
//! bind `127.0.0.1:0` and stop it at will. The same function serves `sidekey connect`
//! (no proxy listener: the connect pages and the admin listener only). It owns the lifecycle: reload on SIGHUP or
//! a change of the config file, and graceful shutdown within `shutdown_grace`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admin::{self, Readiness};
use crate::audit::AuditSink;
use crate::config::{self, Config};
use crate::credentials::CredentialStore;
use crate::metrics::Metrics;
use crate::proxy::{Runtime, Shared, listener};

pub struct Listeners {
    /// The proxy listener; `None` for `sidekey connect` (connect pages only).
    pub proxy: Option<TcpListener>,
    pub admin: TcpListener,
    /// `connect.listen`, when set.
    pub connect: Option<TcpListener>,
}

impl Listeners {
    /// `sidekey run`: the proxy, admin and (when `connect.listen` is set) connect listeners.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        use anyhow::Context;
        let proxy = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot bind listen {}", cfg.listen))?;
        let mut l = Self::bind_connect(cfg).await?;
        l.proxy = Some(proxy);
        Ok(l)
    }

    /// `sidekey connect`: the admin and connect listeners only.
    pub async fn bind_connect(cfg: &Config) -> anyhow::Result<Self> {
        use anyhow::Context;
        let admin = TcpListener::bind(cfg.admin_listen)
            .await
            .with_context(|| format!("cannot bind admin_listen {}", cfg.admin_listen))?;
        let connect = match cfg.connect.as_ref().and_then(|c| c.listen) {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot bind connect.listen {addr}"))?,
            ),
            None => None,
        };
        Ok(Listeners {
            proxy: None,
            admin,
            connect,
        })
    }
}

/// Serve until `shutdown` completes, then drain for up to `shutdown_grace`.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let admin_addr = listeners.admin.local_addr()?;
    let connect_addr = match &listeners.connect {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let proxy_addr = match &listeners.proxy {
        Some(l) => l.local_addr()?,
        None => connect_addr.unwrap_or(admin_addr),
    };
    let own: Vec<_> = [Some(proxy_addr), Some(admin_addr), connect_addr]
        .into_iter()
        .flatten()
        .collect();
    let metrics = Arc::new(Metrics::new()?);
    let audit = AuditSink::start(config.audit_file.as_deref())?;
    let file = config.file.clone();
    let loaded_text = config.source_text.clone().into_bytes();
    let runtime = Runtime::build(config, own.clone()).await?;
    metrics.set_routes(runtime.config.routes.iter().map(|r| &r.name));
    let credentials = CredentialStore::new(&runtime.config, metrics.clone())?;
    let shared = Arc::new(Shared::new(
        runtime,
        credentials,
        audit.clone(),
        metrics,
        proxy_addr,
    ));
    crate::telemetry::start(&shared).await;
    let ready = Arc::new(Readiness::default());

    match (&listeners.proxy, connect_addr) {
        (Some(_), None) => tracing::info!(proxy = %proxy_addr, admin = %admin_addr, "listening"),
        (Some(_), Some(c)) => {
            tracing::info!(proxy = %proxy_addr, admin = %admin_addr, connect = %c, "listening")
        }
        (None, c) => {
            let c = c.map(|c| c.to_string()).unwrap_or_default();
            tracing::info!(admin = %admin_addr, connect = %c, "listening (connect pages only)")
        }
    }
    let proxy_task = listeners
        .proxy
        .map(|l| tokio::spawn(listener::serve(shared.clone(), l)));
    let admin_stop = tokio_util::sync::CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        shared.clone(),
        ready.clone(),
        listeners.admin,
        admin_stop.clone(),
    ));
    let connect_task = listeners.connect.map(|l| {
        tokio::spawn(crate::connect::serve(
            shared.clone(),
            l,
            shared.shutdown.clone(),
        ))
    });
    let reload_task = tokio::spawn(watch_reloads(shared.clone(), file, loaded_text, own));
    let trim_task = tokio::spawn(crate::memory::trim_when_idle(
        shared.metrics.clone(),
        shared.shutdown.clone(),
    ));

    shutdown.await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    ready.shutting_down.store(true, Ordering::Relaxed);
    let grace = shared.runtime().config.shutdown_grace;
    shared.shutdown.cancel();
    shared.tasks.close();
    if let Some(t) = proxy_task {
        let _ = t.await;
    }
    if let Some(t) = connect_task {
        let _ = t.await;
    }
    if tokio::time::timeout(grace, shared.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?grace, "shutdown grace elapsed with requests still in flight");
    }
    reload_task.abort();
    let _ = trim_task.await;
    admin_stop.cancel();
    let _ = admin_task.await;
    audit.flush();
    if let Some(t) = shared.telemetry.get() {
        t.clone().shutdown().await;
    }
    Ok(())
}

/// Reload on SIGHUP, and when the config file's content changes (this also catches a
/// Kubernetes ConfigMap symlink swap, which changes no inode we could watch).
async fn watch_reloads(
    shared: Arc<Shared>,
    file: PathBuf,
    loaded: Vec<u8>,
    own: Vec<std::net::SocketAddr>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    // Compare with the text the running config came from, so an edit made between
    // start-up and this watcher's first look is not missed.
    let mut last = Some(loaded);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(h) => h.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<bool>();
        let forced = tokio::select! {
            s = signalled => s,
            _ = tick.tick() => false,
        };
        let now = std::fs::read(&file).ok();
        if !forced && (now.is_none() || now == last) {
            continue;
        }
        last = now;
        reload(&shared, &file, &own).await;
    }
}

async fn reload(shared: &Shared, file: &std::path::Path, own: &[std::net::SocketAddr]) {
    let metrics = &shared.metrics;
    let cfg = match config::load(file) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.errors {
                tracing::error!(file = %file.display(), problem = %e, "config reload rejected; keeping the old config");
            }
            metrics.config_reloads.with_label_values(&["error"]).inc();
            return;
        }
    };
    let problems = cfg.runtime_problems();
    if !problems.is_empty() {
        for e in &problems {
            tracing::error!(file = %file.display(), problem = %e, "config reload rejected; keeping the old config");
        }
        metrics.config_reloads.with_label_values(&["error"]).inc();
        return;
    }
    let old = shared.runtime();
    for setting in config::startup_changes(&old.config, &cfg) {
        tracing::warn!(
            setting,
            "`{setting}` is read only at start-up: the running value stays until a restart; the rest of the new config applies"
        );
    }
    match Runtime::build(cfg, own.to_vec()).await {
        Ok(rt) => {
            metrics.set_routes(rt.config.routes.iter().map(|r| &r.name));
            shared.replace_runtime(rt);
            metrics.config_reloads.with_label_values(&["success"]).inc();
            tracing::info!(file = %file.display(), "config reloaded");
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload rejected; keeping the old config");
            metrics.config_reloads.with_label_values(&["error"]).inc();
        }
    }
}
