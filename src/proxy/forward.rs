//! The forward phase: one pooled client for every upstream, and its errors.
//!
//! Connections are pooled per scheme and authority (keep-alive, HTTP/2 when the
//! upstream's ALPN picks it). A plain-HTTP/1 request whose client connection already
//! holds an upstream connection to the same place uses that one instead
//! ([`super::affinity`]). Waiting for the response head is bounded by
//! `timeouts.upstream_response`; bodies stream through untouched.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::affinity::Affinity;
use super::connector::{ConnectError, Connector};
use crate::error::ProxyError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Clone)]
pub struct Upstream {
    client: Client<Connector, UpstreamBody>,
    connector: Connector,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(connector: Connector, idle: Duration, response_timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(256)
            .build(connector.clone());
        Upstream {
            client,
            connector,
            response_timeout,
        }
    }

    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Send `req` and wait (bounded) for the response head: on the client connection's
    /// own upstream connection when affinity applies ([`Affinity`]), else pooled.
    pub(crate) async fn send(
        &self,
        affinity: &Affinity,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let sent = async {
            match affinity.claim(&self.connector, &req) {
                Some(claim) => claim.send(&self.connector, req).await,
                None => self.client.request(req).await.map_err(|e| classify(&e)),
            }
        };
        match tokio::time::timeout(self.response_timeout, sent).await {
            Err(_) => Err(ProxyError::UpstreamTimeout(humanize(self.response_timeout))),
            Ok(r) => r,
        }
    }
}

/// Map a client error to the contract: egress refusals and timeouts keep their codes;
/// everything else is `upstream_error` with a reason that names what failed.
pub fn classify(e: &hyper_util::client::legacy::Error) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(c) = s.downcast_ref::<ConnectError>() {
            return from_connect(c);
        }
        source = s.source();
    }
    let reason = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string());
    ProxyError::Upstream(reason)
}

pub fn from_connect(c: &ConnectError) -> ProxyError {
    match c {
        ConnectError::Egress(m) => ProxyError::EgressDenied(m.clone()),
        ConnectError::Timeout(h) => ProxyError::UpstreamTimeout(format!("connect to {h}")),
        other => ProxyError::Upstream(other.to_string()),
    }
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
