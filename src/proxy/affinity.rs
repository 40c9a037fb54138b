//! Connection affinity: a client connection keeps one plain-HTTP/1 upstream connection
//! for its life, so a keep-alive client maps one-to-one onto an upstream connection
//! (as nginx's upstream keep-alive does in practice) and skips the pool's checkout.
//!
//! The held connection is keyed by its authority and by the runtime's connector (a
//! reload builds a new connector, so its `upstreams:` overrides and egress rules apply
//! to a fresh dial, as they do to the new pool). A request takes the held connection
//! when its key matches and nobody else is using it (no request waiting on it, no
//! response body still streaming on it); everything else goes through the pool: HTTPS
//! upstreams, a different host, concurrent HTTP/2 streams. CONNECT and WebSocket
//! upgrades never get here.
//!
//! Dialling goes through the same [`Connector`] as the pool (egress checks, connect
//! timeout, the same errors). A request that a reused connection did not send (closed
//! by the upstream between requests) is sent once more on a fresh connection, as the
//! pool's `retry_canceled_requests` does.

use std::sync::Mutex;

use http::uri::Scheme;
use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use tower_service::Service;

use super::connector::{Conn, Connector};
use super::forward::{UpstreamBody, from_connect};
use crate::error::ProxyError;

type Sender = SendRequest<UpstreamBody>;

/// One client connection's upstream connection (see the module doc).
#[derive(Default)]
pub(crate) struct Affinity {
    slot: Mutex<Slot>,
}

#[derive(Default)]
enum Slot {
    #[default]
    Empty,
    /// A request is using (or dialling) the connection.
    Busy,
    Held(Key, Sender),
}

struct Key {
    authority: String,
    connector: Connector,
}

impl Key {
    fn matches(&self, authority: &str, connector: &Connector) -> bool {
        self.authority == authority && self.connector.same(connector)
    }
}

impl Affinity {
    /// The connection for `req`, if affinity applies to it (`None`: use the pool).
    pub(crate) fn claim(
        &self,
        connector: &Connector,
        req: &Request<UpstreamBody>,
    ) -> Option<Claim<'_>> {
        let uri = req.uri();
        if uri.scheme() != Some(&Scheme::HTTP) || req.method() == http::Method::CONNECT {
            return None;
        }
        let authority = uri.authority()?.as_str().to_ascii_lowercase();
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let sender = match std::mem::take(&mut *slot) {
            Slot::Empty => None,
            // Ready: idle. Closed: dial again. Otherwise an earlier response's body is
            // still streaming (concurrent HTTP/2 streams): leave it, use the pool.
            Slot::Held(key, sender) if key.matches(&authority, connector) => {
                if sender.is_ready() {
                    Some(sender)
                } else if sender.is_closed() {
                    None
                } else {
                    *slot = Slot::Held(key, sender);
                    return None;
                }
            }
            other => {
                // Busy, or held for another host: leave it as it is.
                *slot = other;
                return None;
            }
        };
        *slot = Slot::Busy;
        Some(Claim {
            affinity: self,
            key: Some(Key {
                authority,
                connector: connector.clone(),
            }),
            sender,
        })
    }
}

/// A request's hold on its client connection's upstream connection. Dropped without
/// [`Claim::release`] (an error, a timeout), it leaves the slot empty.
pub(crate) struct Claim<'a> {
    affinity: &'a Affinity,
    key: Option<Key>,
    sender: Option<Sender>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut slot = self.affinity.slot.lock().unwrap_or_else(|e| e.into_inner());
        *slot = match (self.key.take(), self.sender.take()) {
            (Some(key), Some(sender)) => Slot::Held(key, sender),
            _ => Slot::Empty,
        };
    }
}

impl Claim<'_> {
    /// Send `req` on the held connection (dialling one if there is none, or if it has
    /// closed), waiting for the response head. The caller bounds the wait.
    pub(crate) async fn send(
        mut self,
        connector: &Connector,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let target = req.uri().clone();
        origin_form(&mut req)?;
        let held = match self.sender.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let reused = held.is_some();
        let mut sender = match held {
            Some(s) => s,
            None => dial(connector, &target).await?,
        };
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                // Not sent on a reused connection: once more on a fresh one.
                Some(back) if reused => {
                    tracing::debug!(error = %e.error(), "held upstream connection closed; dialling a new one");
                    sender = dial(connector, &target).await?;
                    sender.send_request(back).await.map_err(upstream)?
                }
                _ => return Err(upstream(e.into_error())),
            },
        };
        self.sender = Some(sender);
        Ok(resp)
    }
}

/// A new HTTP/1 connection through the pool's connector; its connection task is
/// spawned and ends when the client connection drops the sender.
async fn dial(connector: &Connector, target: &Uri) -> Result<Sender, ProxyError> {
    let io: Conn = connector
        .clone()
        .call(target.clone())
        .await
        .map_err(|e| from_connect(&e))?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(io)
        .await
        .map_err(upstream)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// What the pool does to a request for an HTTP/1 connection: `Host` from the URI when
/// the request has none (the port only when it is not the default), origin-form URI.
fn origin_form(req: &mut Request<UpstreamBody>) -> Result<(), ProxyError> {
    let uri = req.uri();
    let host = uri
        .host()
        .ok_or_else(|| ProxyError::Upstream("upstream URI without a host".into()))?;
    let host = match uri.port_u16() {
        Some(port) if port != 80 => format!("{host}:{port}"),
        _ => host.to_string(),
    };
    let path: Uri = match uri.path_and_query() {
        Some(pq) => Uri::try_from(pq.as_str()),
        None => Uri::try_from("/"),
    }
    .map_err(|_| ProxyError::BadRequest("bad path".into()))?;
    if !req.headers().contains_key(http::header::HOST) {
        let v =
            HeaderValue::from_str(&host).map_err(|_| ProxyError::BadRequest("bad host".into()))?;
        req.headers_mut().insert(http::header::HOST, v);
    }
    *req.uri_mut() = path;
    Ok(())
}

/// A client error as the pool's [`super::forward::classify`] reports it.
fn upstream(e: hyper::Error) -> ProxyError {
    ProxyError::Upstream(e.to_string())
}
