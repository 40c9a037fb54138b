//! WebSocket (HTTP/1.1 `Upgrade`) through the proxy, gateway and interception.
//!
//! An upgrade cannot share the pooled client's connections (they may be HTTP/2), so
//! each handshake gets its own HTTP/1.1 connection, dialled through the same egress
//! checks. After `101`, the two upgraded streams are spliced byte for byte.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::connector::Conn;
use super::exchange::Exchange;
use super::forward::{UpstreamBody, from_connect};
use super::headers;
use super::{ConnInfo, Runtime, Shared};
use crate::error::ProxyError;

pub async fn forward(
    shared: &Shared,
    rt: &Runtime,
    conn_info: &ConnInfo,
    ex: &mut Exchange,
    mut parts: http::request::Parts,
    body: Incoming,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let client_upgrade = parts
        .extensions
        .remove::<OnUpgrade>()
        .ok_or_else(|| ProxyError::BadRequest("connection cannot be upgraded".into()))?;
    let uri = parts.uri.clone();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let started = std::time::Instant::now();
    let connector = rt.upstream.connector();
    let tcp = connector
        .dial(&host, port)
        .await
        .map_err(|e| from_connect(&e))?;
    let io = if https {
        Conn::Tls(
            Box::new(TokioIo::new(
                connector
                    .tls_http1(&host, tcp)
                    .await
                    .map_err(|e| from_connect(&e))?,
            )),
            false,
        )
    } else {
        Conn::Plain(TokioIo::new(tcp))
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Incoming>(io)
        .await
        .map_err(|e| ProxyError::Upstream(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upgraded upstream connection ended");
        }
    });
    if let Some(a) = uri.authority()
        && let Ok(v) = http::HeaderValue::from_str(a.as_str())
    {
        parts.headers.insert(http::header::HOST, v);
    }
    parts.uri = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|_| ProxyError::BadRequest("bad path".into()))?;
    let limit = rt.config.timeouts.upstream_response;
    let sent =
        tokio::time::timeout(limit, sender.send_request(Request::from_parts(parts, body))).await;
    ex.upstream = Some(started.elapsed());
    let mut resp = match sent {
        Err(_) => {
            return Err(ProxyError::UpstreamTimeout(format!(
                "{}ms",
                limit.as_millis()
            )));
        }
        Ok(r) => r.map_err(|e| ProxyError::Upstream(e.to_string()))?,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        headers::strip_hop_by_hop(resp.headers_mut(), false);
        return Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync()));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    // The session holds its client connection's slot and is drained at shutdown.
    let guard = conn_info.guard.clone();
    shared.tasks.spawn(async move {
        let _guard = guard;
        let (Ok(client), Ok(upstream)) = (client_upgrade.await, upstream_upgrade.await) else {
            tracing::debug!("upgrade did not complete");
            return;
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded stream closed");
        }
    });
    let (mut head, _) = resp.into_parts();
    headers::strip_hop_by_hop(&mut head.headers, true);
    let empty = http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok(Response::from_parts(head, empty))
}
