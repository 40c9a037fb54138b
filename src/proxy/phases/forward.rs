//! The forward phase: send the prepared request upstream. A WebSocket handshake goes
//! through [`crate::proxy::upgrade`]. An assistant call whose body is small enough is
//! buffered, so that an upstream 401 can be answered by one refresh and one retry; so
//! is a SigV4 call's, whose hash is then signed. SigV4 signs here, once the request is
//! final (see [`crate::proxy::sigv4`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::inject::Prepared;
use super::{Call, inject, resolve};
use crate::config::Action;
use crate::error::ProxyError;
use crate::proxy::exchange::{CountingBody, Exchange};
use crate::proxy::forward::UpstreamBody;
use crate::proxy::sigv4::{self, Payload};
use crate::proxy::{ConnInfo, Runtime, Shared, replay, upgrade};
use crate::scrub::Secrets;

/// The upstream's answer.
pub(super) enum Reply {
    Response(Response<Incoming>),
    /// The answer to an upgrade handshake (`101`, or an ordinary refusal).
    Upgrade(Response<UpstreamBody>),
}

pub(super) struct Sent {
    pub reply: Reply,
    /// What the response must not carry (the retry may have changed it).
    pub secrets: Option<Secrets>,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn forward(
    shared: &Arc<Shared>,
    rt: &Arc<Runtime>,
    conn: &Arc<ConnInfo>,
    ex: &mut Exchange,
    call: &Call,
    mut parts: Parts,
    body: replay::Arrived,
    prepared: Prepared,
) -> Result<Sent, ProxyError> {
    let mut secrets = prepared.secrets;
    if prepared.upgrade {
        let replay::Arrived::Stream(body) = body else {
            return Err(ProxyError::BadRequest(
                "an upgrade request with a read body".into(),
            ));
        };
        sign(call, call.token.as_deref(), &mut parts, Payload::Unsigned)?;
        let resp = upgrade::forward(shared, rt, conn, ex, parts, body).await?;
        return Ok(Sent {
            reply: Reply::Upgrade(resp),
            secrets,
        });
    }
    let started = Instant::now();
    let sent = send(
        shared,
        rt,
        conn,
        &ex.bytes_in,
        call,
        parts,
        body,
        &mut secrets,
    )
    .await;
    // Upstream time counts for failures too: a hanging upstream must show in latency.
    if !matches!(sent, Err(ProxyError::EgressDenied(_))) {
        ex.upstream = Some(started.elapsed());
    }
    Ok(Sent {
        reply: Reply::Response(sent?),
        secrets,
    })
}

#[allow(clippy::too_many_arguments)]
async fn send(
    shared: &Shared,
    rt: &Runtime,
    conn: &ConnInfo,
    bytes_in: &Arc<AtomicU64>,
    call: &Call,
    mut parts: Parts,
    body: replay::Arrived,
    secrets: &mut Option<Secrets>,
) -> Result<Response<Incoming>, ProxyError> {
    let replayable = call.token.is_some()
        && (call.action == Action::Assistant || sigv4::signs(call.route.as_deref()));
    let limit = rt.config.limits.replay_body_bytes;
    match replay::outgoing(&parts, body, limit, replayable).await? {
        replay::Outgoing::Stream(body) => {
            sign(call, call.token.as_deref(), &mut parts, Payload::Unsigned)?;
            let body = CountingBody::new(body, bytes_in.clone())
                .map_err(Into::into)
                .boxed_unsync();
            rt.upstream
                .send(&conn.affinity, Request::from_parts(parts, body))
                .await
        }
        replay::Outgoing::Buffered(bytes) => {
            bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            sign(
                call,
                call.token.as_deref(),
                &mut parts,
                Payload::Bytes(&bytes),
            )?;
            let first = rt
                .upstream
                .send(&conn.affinity, replay::request(&parts, bytes.clone()))
                .await?;
            // Only credentialed assistant calls are retried (an MCP POST is read on any
            // route, a SigV4 body to be hashed).
            if first.status() != StatusCode::UNAUTHORIZED
                || call.action != Action::Assistant
                || call.token.is_none()
            {
                return Ok(first);
            }
            drop(first);
            retry(shared, rt, conn, call, &mut parts, bytes, secrets).await
        }
    }
}

/// The upstream refused the credential: refresh it once and send the buffered body
/// again with the new one.
async fn retry(
    shared: &Shared,
    rt: &Runtime,
    conn: &ConnInfo,
    call: &Call,
    parts: &mut Parts,
    bytes: Bytes,
    secrets: &mut Option<Secrets>,
) -> Result<Response<Incoming>, ProxyError> {
    let (Some(route), Some(rejected)) = (&call.route, &call.token) else {
        return Err(ProxyError::Upstream("nothing to retry with".into()));
    };
    let fresh = resolve::refreshed(shared, route, call.identity.as_ref(), rejected).await?;
    tracing::info!(route = %route.name, "upstream refused the credential; retrying once with a refreshed one");
    *secrets = Some(inject::credential(call, &fresh, parts)?);
    sign(call, Some(&fresh), parts, Payload::Bytes(&bytes))?;
    rt.upstream
        .send(&conn.affinity, replay::request(parts, bytes))
        .await
}

/// SigV4-sign the final request when the route says so (a no-op otherwise).
fn sign(
    call: &Call,
    token: Option<&crate::credentials::Token>,
    parts: &mut Parts,
    payload: Payload<'_>,
) -> Result<(), ProxyError> {
    sigv4::sign_for(call.route.as_deref(), token, parts, payload)
}
