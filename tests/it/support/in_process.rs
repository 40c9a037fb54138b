//! sidekey's `server::run` in the test process (mini-redis style): the test binds the
//! listeners, owns the shutdown future and reads the audit records from `audit.file`.
//! For tests that need neither the binary's stdout/stderr nor signals; it starts in
//! milliseconds and a panic inside sidekey fails the test with its message.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use super::ConfigDir;

pub struct InProcess {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub dir: ConfigDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Load `config_yaml` (written to a fresh [`ConfigDir`] with `audit.file` added,
    /// so it must not set `audit:` itself) and serve it on its own runtime thread.
    pub fn start(config_yaml: &str) -> InProcess {
        Self::start_in(ConfigDir::new(), config_yaml)
    }

    pub fn start_in(dir: ConfigDir, config_yaml: &str) -> InProcess {
        let yaml = format!("{config_yaml}\naudit: {{file: audit.jsonl}}\n");
        let path = dir.write_config(&yaml);
        let cfg = sidekey::config::load(&path)
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{yaml}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listeners = sidekey::server::Listeners::bind(&cfg).await?;
                let proxy = listeners.proxy.as_ref().map(|l| l.local_addr());
                let admin = listeners.admin.local_addr()?;
                let _ = addrs_tx.send((proxy.transpose()?, admin));
                sidekey::server::run(cfg, listeners, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let (proxy, admin_addr) = addrs_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("in-process sidekey did not bind its listeners"));
        InProcess {
            proxy_addr: proxy.expect("a proxy listener"),
            admin_addr,
            dir,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// The complete audit lines written so far.
    pub fn audit_records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        complete
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (up to 10 s) until at least `n` audit records exist; returns all.
    pub fn wait_audit(&self, n: usize) -> Vec<Value> {
        let t0 = Instant::now();
        loop {
            let r = self.audit_records();
            if r.len() >= n || t0.elapsed() > Duration::from_secs(10) {
                assert!(r.len() >= n, "expected {n} audit records, found {r:?}");
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resolve the shutdown future and wait for `server::run` to drain and return
    /// (its result; `Ok` again on a second call).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Ok(()),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.stop();
        }
    }
}
