//! The sidekey binary for the Vault tests: the one launcher of `support` (same
//! environment, log level, timeouts and captured output), with the async helpers these
//! tests use. Everything else of [`support::Sidekey`] is reachable through `Deref`.

use std::net::SocketAddr;
use std::ops::Deref;
use std::time::Duration;

use crate::support;

use super::Resp;

pub struct Sidekey {
    inner: support::Sidekey,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

impl Deref for Sidekey {
    type Target = support::Sidekey;

    fn deref(&self) -> &support::Sidekey {
        &self.inner
    }
}

impl Sidekey {
    /// Start with `yaml` and extra environment; waits for the `listening` line.
    pub async fn start(yaml: &str, env: &[(&str, &str)]) -> Self {
        let inner = support::Sidekey::builder(yaml)
            .envs(env)
            .start_async()
            .await;
        Sidekey {
            proxy: inner.proxy_addr,
            admin: inner.admin_addr,
            inner,
        }
    }

    /// `GET url` through the forward proxy, as `user`.
    pub async fn get(&self, user: Option<&str>, url: &str) -> Resp {
        let headers: Vec<(&str, &str)> = user.map(|u| ("x-sidekey-user", u)).into_iter().collect();
        support::proxy_get(self.proxy, url, &headers).await.into()
    }

    pub async fn admin(&self, path: &str) -> Resp {
        support::http_get(self.admin, path).await.into()
    }

    /// Sum of the samples of `metric` whose line contains every one of `labels`.
    pub async fn metric(&self, metric: &str, labels: &[&str]) -> f64 {
        let text = self.admin("/metrics").await.body;
        text.lines()
            .filter(|l| l.starts_with(metric) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Poll `/readyz` until it answers `status` (panics after `secs`).
    pub async fn wait_ready(&self, status: u16, secs: u64) {
        for _ in 0..secs * 10 {
            if self.admin("/readyz").await.status == status {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let last = self.admin("/readyz").await;
        let err = self.stderr_text();
        let vault_lines: Vec<&str> = err.lines().filter(|l| l.contains("Vault")).collect();
        panic!(
            "/readyz never answered {status}: {} {}\n{}",
            last.status,
            last.body,
            vault_lines.join("\n")
        );
    }

    /// The directory holding the config file (relative paths in it resolve here).
    pub fn config_dir(&self) -> std::path::PathBuf {
        self.inner.dir.path().to_path_buf()
    }

    /// Everything sidekey wrote so far, stdout then stderr.
    pub fn output(&self) -> String {
        self.inner.all_output()
    }

    /// Panic if any secret appears in sidekey's output or metrics.
    pub async fn assert_no_secrets(&self, secrets: &[String]) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let all = format!("{}\n{}", self.output(), self.admin("/metrics").await.body);
        for (i, s) in secrets.iter().enumerate() {
            assert!(!s.is_empty());
            assert!(
                !all.contains(s.as_str()),
                "secret #{i} found in sidekey output or metrics"
            );
        }
    }
}
