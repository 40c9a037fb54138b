//! The proxy: everything between accepting a client connection and the audit record.
//!
//! A request walks the phases in `phases/` (identify -> decide -> resolve -> inject
//! -> forward -> respond -> audit), one file each. `target.rs` says where it goes
//! (the route decision itself is `crate::policy::decide`), `connect.rs` handles CONNECT
//! (tunnel or interception), `upgrade.rs` WebSockets, `headers.rs` header hygiene,
//! `connector.rs` + `egress.rs` how upstreams are dialled, `exchange.rs` the audit.

mod affinity;
mod connect;
pub(crate) mod connector;
mod counting_io;
pub(crate) mod egress;
mod exchange;
pub(crate) mod forward;
pub mod headers;
pub mod inject;
pub(crate) mod listener;
mod phases;
mod replay;
pub(crate) mod sigv4;
pub(crate) mod target;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditSink;
use crate::config::Config;
use crate::credentials::CredentialStore;
use crate::identity::{Identifier, Identity};
use crate::metrics::Metrics;
use crate::policy::RouteTable;
use crate::throttle::Throttle;
use crate::tls::CertificateAuthority;

/// Everything built from one config file. Replaced whole on reload; requests hold the
/// `Arc` they started with, so a reload never changes a request mid-way.
pub struct Runtime {
    pub config: Arc<Config>,
    pub table: RouteTable,
    pub identifier: Identifier,
    pub upstream: forward::Upstream,
    pub ca: Option<Arc<CertificateAuthority>>,
}

impl Runtime {
    /// Build a runtime; `own` are the bound listener addresses (never dialled).
    pub async fn build(config: Config, own: Vec<SocketAddr>) -> anyhow::Result<Self> {
        let roots = &config.upstream_roots;
        let tls = crate::tls::client_config(roots.system, &roots.bundles)?;
        // Same verifier and roots (shared, parsed once); ALPN http/1.1 only.
        let tls_h1 = {
            let mut c = (*tls).clone();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(c)
        };
        let connector = connector::Connector::new(&config, own, tls, tls_h1);
        let upstream = forward::Upstream::new(
            connector,
            config.timeouts.idle,
            config.timeouts.upstream_response,
        );
        let ca = match &config.tls {
            Some(t) => Some(Arc::new(CertificateAuthority::load(&t.ca_cert, &t.ca_key)?)),
            None => None,
        };
        Ok(Runtime {
            table: RouteTable::new(&config.routes),
            identifier: Identifier::new(&config.identity, &config.upstream_roots).await?,
            upstream,
            ca,
            config: Arc::new(config),
        })
    }
}

/// State shared by every connection for the life of the process.
pub struct Shared {
    runtime: ArcSwap<Runtime>,
    pub credentials: CredentialStore,
    pub audit: AuditSink,
    pub metrics: Arc<Metrics>,
    /// MCP tool pins (`tofu` and pin-file state), for the life of the process.
    pub mcp_pins: Arc<crate::mcp::PinStore>,
    /// Rate budgets and upstream back-offs; kept across reloads.
    pub throttle: Throttle,
    /// The bound proxy address (requests naming it are gateway requests, never dialled).
    pub proxy_addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// Trace export (`telemetry.otlp`), set once its exporter runs (at start-up, or
    /// once the export headers' Vault references resolve).
    pub telemetry: std::sync::OnceLock<Arc<crate::telemetry::Telemetry>>,
}

impl Shared {
    pub fn new(
        runtime: Runtime,
        credentials: CredentialStore,
        audit: AuditSink,
        metrics: Arc<Metrics>,
        proxy_addr: SocketAddr,
    ) -> Self {
        Shared {
            telemetry: std::sync::OnceLock::new(),
            runtime: ArcSwap::from_pointee(runtime),
            credentials,
            audit,
            throttle: Throttle::new(metrics.clone()),
            metrics,
            mcp_pins: Arc::default(),
            proxy_addr,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    pub fn replace_runtime(&self, rt: Runtime) {
        self.runtime.store(Arc::new(rt));
    }

    pub fn agent(&self) -> Arc<str> {
        self.runtime.load().config.agent.clone()
    }
}

/// One client connection's claim on `limits.max_connections` and on the
/// `sidekey_open_connections` gauge. It lives as long as the connection *or* anything
/// the connection became (a CONNECT tunnel, an intercepted session, a WebSocket): those
/// tasks hold a clone, so an upgrade never frees the slot while bytes still flow.
pub struct ConnGuard {
    _permit: tokio::sync::OwnedSemaphorePermit,
    gauge: prometheus::IntGauge,
}

impl ConnGuard {
    pub fn new(
        permit: tokio::sync::OwnedSemaphorePermit,
        gauge: prometheus::IntGauge,
    ) -> Arc<Self> {
        gauge.inc();
        crate::memory::note_connection();
        Arc::new(ConnGuard {
            _permit: permit,
            gauge,
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// What is known about the client connection a request arrived on.
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The accepted connection this request belongs to (shared with its upgrades).
    pub guard: Option<Arc<ConnGuard>>,
    /// The peer is this host: trusted-mode identity headers are honoured.
    pub loopback: bool,
    /// Set inside an intercepted CONNECT tunnel.
    pub intercepted: Option<Intercepted>,
    /// The plain-HTTP/1 upstream connection this client connection holds.
    pub(crate) affinity: affinity::Affinity,
}

/// The CONNECT a tunnel was opened with; inner requests are bound to it.
pub struct Intercepted {
    pub host: String,
    pub port: u16,
    pub identity: Option<Identity>,
    pub sni_mismatch: bool,
}
