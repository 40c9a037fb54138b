//! `CONNECT host:port`: refuse, tunnel blindly, or intercept.
//!
//! Policy is decided for the host before any byte of the tunnel flows: a host whose
//! possible outcomes are all `deny` gets 403 on the CONNECT; all `passthrough` gets a
//! blind TCP tunnel; anything else is intercepted. Interception terminates TLS with a
//! leaf certificate for exactly the CONNECT host and serves the inner HTTP/1.1 or
//! HTTP/2 requests through the same phases as plain requests, bound to that host.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::counting_io::CountingIo;
use super::exchange::Exchange;
use super::forward::{UpstreamBody, from_connect};
use super::phases::empty;
use super::{ConnInfo, Intercepted, Runtime, Shared, listener};
use crate::error::ProxyError;
use crate::policy::ConnectPlan;

pub async fn handle(
    shared: &Arc<Shared>,
    rt: &Arc<Runtime>,
    conn: &Arc<ConnInfo>,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let authority = req
        .uri()
        .authority()
        .cloned()
        .ok_or_else(|| ProxyError::BadRequest("CONNECT needs host:port".into()))?;
    let host = crate::policy::canonical_host(authority.host());
    let port = authority.port_u16().unwrap_or(443);
    ex.host = host.clone();
    ex.path = String::new();
    if host.is_empty() {
        return Err(ProxyError::BadRequest("CONNECT needs host:port".into()));
    }
    let identity = rt.identifier.identify(req.headers(), conn.loopback).await?;
    ex.identity = identity.clone();

    // Never tunnel into sidekey itself (admin or proxy listener), whatever the policy says.
    if let Err(e) = rt.upstream.connector().plan(&host, port).await
        && matches!(e, super::connector::ConnectError::Egress(_))
    {
        return Err(from_connect(&e));
    }
    let (plan, route) = rt.table.connect_plan(&host, rt.config.default_action);
    ex.route = route.cloned();
    match plan {
        ConnectPlan::Deny => Err(ProxyError::RouteDenied(format!(
            "no route allows CONNECT to {}",
            crate::audit::bounded(&host)
        ))),
        ConnectPlan::Tunnel => {
            ex.action = Some(crate::config::Action::Passthrough);
            ex.report = reported_tunnel(route.map(|r| &**r), rt.config.default_action);
            let named = super::egress::named_by_any_route(&rt.config, &host);
            super::egress::literal_ip_allowed(&rt.config, &host, named)?;
            let started = std::time::Instant::now();
            let upstream = rt
                .upstream
                .connector()
                .dial(&host, port)
                .await
                .map_err(|e| from_connect(&e))?;
            ex.upstream = Some(started.elapsed());
            let on_upgrade = hyper::upgrade::on(req);
            // The tunnel is audited when it closes, with the bytes that crossed it.
            let record = ex.detach();
            let shared2 = shared.clone();
            let guard = conn.guard.clone();
            shared.tasks.spawn(async move {
                let _guard = guard;
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let mut client = TokioIo::new(upgraded);
                let mut upstream = upstream;
                let (up, down) = tokio::io::copy_bidirectional(&mut client, &mut upstream)
                    .await
                    .unwrap_or((0, 0));
                record
                    .bytes_in
                    .fetch_add(up, std::sync::atomic::Ordering::Relaxed);
                record.finish(200, down, &shared2);
            });
            Ok(empty(StatusCode::OK))
        }
        ConnectPlan::Intercept => {
            let Some(ca) = rt.ca.clone() else {
                return Err(ProxyError::RouteDenied(format!(
                    "{} needs HTTPS interception but no `tls.ca_cert` is configured",
                    crate::audit::bounded(&host)
                )));
            };
            let server_config = ca
                .server_config(&host)
                .map_err(|e| ProxyError::Upstream(format!("cannot mint a certificate: {e}")))?;
            ex.action = ex.route.as_ref().map(|r| r.action);
            let on_upgrade = hyper::upgrade::on(req);
            // Audited like a blind tunnel: one record when the tunnel closes, with the
            // (TLS) bytes that crossed it; each inner request has its own record too.
            let record = ex.detach();
            let shared2 = shared.clone();
            let outer = ConnInfo {
                peer: conn.peer,
                guard: conn.guard.clone(),
                loopback: conn.loopback,
                intercepted: None,
                affinity: Default::default(),
            };
            shared.tasks.spawn(async move {
                let bytes_out = Arc::new(AtomicU64::new(0));
                if let Ok(upgraded) = on_upgrade.await {
                    let io = CountingIo::new(
                        TokioIo::new(upgraded),
                        record.bytes_in.clone(),
                        bytes_out.clone(),
                    );
                    let tunnel = Intercepted {
                        host,
                        port,
                        identity,
                        sni_mismatch: false,
                    };
                    intercept(shared2.clone(), io, server_config, outer, tunnel).await;
                }
                record.finish(200, bytes_out.load(Ordering::Relaxed), &shared2);
            });
            Ok(empty(StatusCode::OK))
        }
    }
}

/// Terminate the client's TLS inside the tunnel and serve its inner requests.
async fn intercept(
    shared: Arc<Shared>,
    io: CountingIo<TokioIo<hyper::upgrade::Upgraded>>,
    server_config: Arc<rustls::ServerConfig>,
    outer: ConnInfo,
    mut tunnel: Intercepted,
) {
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let Ok(start) = acceptor.await else { return };
    let sni = start
        .client_hello()
        .server_name()
        .map(crate::policy::canonical_host);
    tunnel.sni_mismatch = sni.as_deref().is_some_and(|s| s != tunnel.host);
    let Ok(tls) = start.into_stream(server_config).await else {
        tracing::debug!(
            host = %crate::audit::bounded(&tunnel.host),
            "client TLS handshake failed (does it trust sidekey's CA?)"
        );
        return;
    };
    let inner = Arc::new(ConnInfo {
        intercepted: Some(tunnel),
        affinity: Default::default(),
        ..outer
    });
    listener::serve_connection_boxed(shared, TokioIo::new(tls), inner).await;
}

/// A tunnel that exists only because of report mode (the host's route is a
/// report-mode `auth: deny`, or only `default: report` applies) is audited
/// `decision: "report"` with the `route_denied` enforcement would answer.
fn reported_tunnel(
    first: Option<&crate::config::RouteSpec>,
    default: crate::config::DefaultAction,
) -> Option<&'static str> {
    use crate::config::{Action, DefaultAction, Enforce};
    let reported = match first {
        Some(r) => r.action == Action::Deny && r.enforce == Enforce::Report,
        None => default == DefaultAction::Report,
    };
    reported.then_some(crate::policy::Refusal::RouteDenies.code())
}
