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

use http::uri::{Authority, PathAndQuery, Scheme};
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
        self.authority.eq_ignore_ascii_case(authority) && self.connector.same(connector)
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
        let authority = uri.authority()?.as_str();
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (key, sender) = match std::mem::take(&mut *slot) {
            Slot::Empty => (None, None),
            // Ready: idle. Closed: dial again. Otherwise an earlier response's body is
            // still streaming (concurrent HTTP/2 streams): leave it, use the pool.
            Slot::Held(key, sender) if key.matches(authority, connector) => {
                if sender.is_ready() {
                    (Some(key), Some(sender))
                } else if sender.is_closed() {
                    (Some(key), None)
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
        // A reused connection keeps its key; only a new one builds (and allocates) one.
        let key = key.unwrap_or_else(|| Key {
            authority: authority.to_ascii_lowercase(),
            connector: connector.clone(),
        });
        Some(Claim {
            affinity: self,
            key: Some(key),
            sender,
        })
    }
}

/// A request's hold on its client connection's upstream connection. Dropped after
/// [`Claim::send`] got a response head, it puts the connection back for the next
/// request; dropped after an error or a timeout (no sender left), it leaves the slot
/// empty.
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
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let (req, authority) = origin_form(req)?;
        // Where to dial, built only when a connection has to be made.
        let target = || {
            Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(authority.clone())
                .path_and_query("/")
                .build()
                .map_err(|_| ProxyError::BadRequest("bad upstream authority".into()))
        };
        let held = match self.sender.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let reused = held.is_some();
        let mut sender = match held {
            Some(s) => s,
            None => dial(connector, &target()?).await?,
        };
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                // Not sent on a reused connection: once more on a fresh one.
                Some(back) if reused => {
                    tracing::debug!(error = %e.error(), "held upstream connection closed; dialling a new one");
                    sender = dial(connector, &target()?).await?;
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
/// The URI's parts are moved, not copied; the authority comes back for dialling.
fn origin_form(
    req: Request<UpstreamBody>,
) -> Result<(Request<UpstreamBody>, Authority), ProxyError> {
    let (mut head, body) = req.into_parts();
    let mut uri = std::mem::take(&mut head.uri).into_parts();
    uri.scheme = None;
    let authority = uri
        .authority
        .take()
        .ok_or_else(|| ProxyError::Upstream("upstream URI without a host".into()))?;
    if !head.headers.contains_key(http::header::HOST) {
        let host = match authority.port_u16() {
            Some(port) if port != 80 => format!("{}:{port}", authority.host()),
            _ => authority.host().to_string(),
        };
        let v =
            HeaderValue::from_str(&host).map_err(|_| ProxyError::BadRequest("bad host".into()))?;
        head.headers.insert(http::header::HOST, v);
    }
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    head.uri = Uri::from_parts(uri).map_err(|_| ProxyError::BadRequest("bad path".into()))?;
    Ok((Request::from_parts(head, body), authority))
}

/// A client error as the pool's [`super::forward::classify`] reports it.
fn upstream(e: hyper::Error) -> ProxyError {
    ProxyError::Upstream(e.to_string())
}
