//! The local development loop: `sidekey env` prints the variables that send a shell's
//! programs through sidekey, and `sidekey run -- CMD` ([`supervise`]) runs one program
//! with them, serving sidekey around it for exactly as long as it runs.
//!
//! [`DevEnv`] is the one list of those variables: the proxy variables in both cases,
//! `NO_PROXY` for loopback and sidekey's own non-proxy listeners, `NODE_USE_ENV_PROXY`
//! for Node 24+, and (with `tls:`) the trust variables of `sidekey ca env`.

mod supervise;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

pub use supervise::run_command;

use crate::config::Config;

/// Hosts that never go through the proxy, before sidekey's own listeners are added.
const NO_PROXY_BASE: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why the development environment cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum DevEnvError {
    #[error(
        "{0}: port 0 is picked when sidekey starts, so `sidekey env` cannot name it; set a fixed port or use `sidekey run -- CMD`"
    )]
    EphemeralPort(&'static str),
    #[error("cannot read the CA certificate {}: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bundle(#[from] crate::tls::RootsError),
}

/// The listeners a development environment points at (the bound ones for `run -- CMD`,
/// the configured ones for `env`).
#[derive(Debug, Clone, Copy)]
pub struct Listeners {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// `connect.listen`, when the config serves the connect pages.
    pub connect: Option<SocketAddr>,
}

impl Listeners {
    /// The configured addresses; refuses port 0 (only known once bound).
    pub fn configured(cfg: &Config) -> Result<Self, DevEnvError> {
        let fixed = |addr: SocketAddr, key| {
            if addr.port() == 0 {
                Err(DevEnvError::EphemeralPort(key))
            } else {
                Ok(addr)
            }
        };
        Ok(Listeners {
            proxy: fixed(cfg.listen, "listen")?,
            admin: fixed(cfg.admin_listen, "admin_listen")?,
            connect: connect_listen(cfg)
                .map(|a| fixed(a, "connect.listen"))
                .transpose()?,
        })
    }
}

/// `connect.listen`: the connect pages' listener, when the config serves them.
pub(crate) fn connect_listen(cfg: &Config) -> Option<SocketAddr> {
    cfg.connect.as_ref().and_then(|c| c.listen)
}

/// The variables, in the order they are printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevEnv {
    pub vars: Vec<(String, String)>,
}

impl DevEnv {
    /// Build the environment; with `tls:`, writes the trust bundle (system roots plus
    /// sidekey's CA) next to the CA certificate, as `sidekey ca env` does.
    pub fn new(cfg: &Config, at: Listeners) -> Result<Self, DevEnvError> {
        let proxy = format!("http://{}", reachable(at.proxy));
        let mut vars: Vec<(String, String)> =
            ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
                .iter()
                .map(|k| (k.to_string(), proxy.clone()))
                .collect();
        let no_proxy = no_proxy(&at);
        vars.push(("NO_PROXY".into(), no_proxy.clone()));
        vars.push(("no_proxy".into(), no_proxy));
        vars.push(("NODE_USE_ENV_PROXY".into(), "1".into()));
        if let Some(tls) = &cfg.tls {
            let pem =
                std::fs::read_to_string(&tls.ca_cert).map_err(|source| DevEnvError::ReadCa {
                    path: tls.ca_cert.clone(),
                    source,
                })?;
            let bundle = tls.ca_cert.with_file_name("trust-bundle.pem");
            crate::tls::write_trust_bundle(&pem, &bundle)?;
            let value = bundle.to_string_lossy().into_owned();
            for name in crate::tls::BUNDLE_ENV_VARS {
                vars.push((name.to_string(), value.clone()));
            }
        }
        Ok(DevEnv { vars })
    }

    /// `export NAME='value'` lines for a POSIX shell's `eval`.
    pub fn export_lines(&self) -> Vec<String> {
        self.vars
            .iter()
            .map(|(k, v)| format!("export {k}={}", crate::tls::shell_quote(v)))
            .collect()
    }
}

/// The address a local client dials for a listener (`0.0.0.0` -> `127.0.0.1`).
pub(crate) fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Loopback, then each non-proxy listener as `host:port` (and its bare host when that
/// is not loopback, since some clients match IP entries without a port).
fn no_proxy(at: &Listeners) -> String {
    let mut entries: Vec<String> = NO_PROXY_BASE.iter().map(|s| s.to_string()).collect();
    for addr in [Some(at.admin), at.connect].into_iter().flatten() {
        let addr = reachable(addr);
        let host = addr.ip().to_string();
        for entry in [addr.to_string(), host] {
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
    }
    entries.join(",")
}

/// `sidekey env`: print the exports; exit 2 on a config problem, 1 when the trust
/// bundle cannot be written.
pub fn print_env(path: &std::path::Path) -> ExitCode {
    let cfg = match crate::config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    if let Err(code) = crate::cli::generate_ca(&cfg, path) {
        return code;
    }
    let env = Listeners::configured(&cfg).and_then(|at| DevEnv::new(&cfg, at));
    match env {
        Ok(env) => {
            for line in env.export_lines() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e @ DevEnvError::EphemeralPort(_)) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("sidekey: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "version: 1\nagent: a\nlisten: 0.0.0.0:15080\nadmin_listen: 127.0.0.1:15090\n{extra}"
        );
        crate::config::from_str(
            &text,
            std::path::Path::new("t.yaml"),
            std::path::Path::new("/tmp"),
        )
        .unwrap()
    }

    #[test]
    fn proxy_and_no_proxy_variables() {
        let c = cfg("");
        let env = DevEnv::new(&c, Listeners::configured(&c).unwrap()).unwrap();
        let get = |k: &str| {
            env.vars
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        for k in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            assert_eq!(get(k), Some("http://127.0.0.1:15080"), "{k}");
        }
        assert_eq!(
            get("NO_PROXY"),
            Some("localhost,127.0.0.1,::1,127.0.0.1:15090")
        );
        assert_eq!(get("no_proxy"), get("NO_PROXY"));
        assert_eq!(get("NODE_USE_ENV_PROXY"), Some("1"));
        assert_eq!(
            get("SSL_CERT_FILE"),
            None,
            "no trust variables without tls:"
        );
    }

    #[test]
    fn a_pod_address_is_listed_with_and_without_its_port() {
        let at = Listeners {
            proxy: "127.0.0.1:1".parse().unwrap(),
            admin: "10.1.2.3:15090".parse().unwrap(),
            connect: Some("[::]:15091".parse().unwrap()),
        };
        assert_eq!(
            no_proxy(&at),
            "localhost,127.0.0.1,::1,10.1.2.3:15090,10.1.2.3,[::1]:15091"
        );
    }

    #[test]
    fn port_zero_cannot_be_printed() {
        let text = "version: 1\nagent: a\nlisten: 127.0.0.1:0\n";
        let c = crate::config::from_str(text, std::path::Path::new("t"), std::path::Path::new("/"))
            .unwrap();
        assert!(matches!(
            Listeners::configured(&c),
            Err(DevEnvError::EphemeralPort("listen"))
        ));
    }

    #[test]
    fn values_are_shell_quoted() {
        let env = DevEnv {
            vars: vec![("A".into(), "it's $HOME".into())],
        };
        assert_eq!(env.export_lines(), [r"export A='it'\''s $HOME'"]);
    }
}
