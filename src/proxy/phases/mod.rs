//! The request path, as named phases in the order a request walks them:
//!
//! `identify` (where it goes: [`super::target`]; who the end user is) -> `decide` (the
//! route and whether the call may go: [`crate::policy::decide`]; on an MCP route the
//! POST body is read first and its tool calls decided after: `mcp`) -> `throttle` (the
//! route's rate budget, an upstream back-off) -> `resolve` (the
//! credential) -> `inject` (the upstream request) -> `forward` (send, with one
//! refresh-and-retry on an assistant 401) -> `respond` (response hygiene; MCP tool
//! lists filtered) -> audit
//! ([`Exchange::respond`], for every outcome, refusals and failures included).
//!
//! Each change to request handling has one home: a phase's file. [`process`] only
//! strings the phases together.

mod decide;
mod forward;
mod identify;
mod inject;
mod mcp;
mod resolve;
mod respond;
mod throttle;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::exchange::{AuditedBody, Exchange};
use super::forward::UpstreamBody;
use super::target::Target;
use super::{ConnInfo, Runtime, Shared, connect, headers};
use crate::config::{Action, RouteSpec};
use crate::credentials::Token;
use crate::error::ProxyError;
use crate::identity::Identity;

/// What the phases learnt about one call, handed from one phase to the next.
pub(super) struct Call {
    pub target: Target,
    pub identity: Option<Identity>,
    /// The deciding route (`None` under `default: passthrough`).
    pub route: Option<Arc<RouteSpec>>,
    pub action: Action,
    /// The credential, on a route that injects.
    pub token: Option<Arc<Token>>,
}

impl Call {
    pub fn user(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| &*i.user)
    }
}

/// Entry point for every request on the proxy listener (and inside tunnels).
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<AuditedBody>, Infallible> {
    let rt = shared.runtime();
    // A CONNECT opens an HTTPS tunnel; it is audited as such.
    let tls = conn.intercepted.is_some() || req.method() == http::Method::CONNECT;
    let scheme = if tls { "https" } else { "http" };
    let connect = conn.intercepted.is_none() && req.method() == http::Method::CONNECT;
    let mut ex = Exchange::new(req.method(), scheme);
    let resp = match process(&shared, &rt, &conn, &mut ex, req).await {
        Ok(resp) => resp,
        Err(e) => {
            ex.fail(&e);
            log_failure(&ex, &e, connect);
            // On an MCP POST the refusal is a JSON-RPC answer to its requests.
            match ex
                .mcp
                .as_ref()
                .and_then(|m| m.refusal::<Full<Bytes>>(&e, &ex.request_id))
            {
                Some(r) => r.map(box_full),
                None => e.to_response::<Full<Bytes>>(&ex.request_id).map(box_full),
            }
        }
    };
    // audit: the record is written when the response body ends.
    Ok(ex.respond(resp, shared))
}

async fn process(
    shared: &Arc<Shared>,
    rt: &Arc<Runtime>,
    conn: &Arc<ConnInfo>,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    if req.method() == http::Method::CONNECT && conn.intercepted.is_none() {
        return connect::handle(shared, rt, conn, ex, req).await;
    }
    let (mut parts, body) = req.into_parts();
    identify::check_header_size(rt, &parts)?;
    ex.trace = Some(headers::trace_context(
        &mut parts.headers,
        shared.telemetry.get().is_some(),
    ));
    let target = identify::locate(shared, rt, conn, ex, &parts)?;
    let identity = identify::identify(rt, conn, &parts.headers).await?;
    ex.identity = identity.clone();
    let decision = decide::decide(rt, ex, &target, &parts.method, identity.as_ref());
    let body = mcp::read(ex, &mut parts, body).await?;
    let mut decision = decision?;
    mcp::decide(shared, rt, ex, identity.as_ref(), &mut decision)?;
    throttle::admit(shared, &decision, identity.as_ref())?;
    let token = resolve::resolve(shared, &decision, identity.as_ref()).await?;
    let call = Call {
        target,
        identity,
        route: decision.route,
        action: decision.action,
        token,
    };
    let prepared = inject::inject(rt, &call, &mut parts)?;
    let sent = forward::forward(shared, rt, conn, ex, &call, parts, body, prepared).await?;
    throttle::observe(shared, &call, &sent);
    let resp = respond::respond(sent, call.route.as_deref())?;
    mcp::filter(shared, ex, &call, resp).await
}

fn box_full(b: Full<Bytes>) -> UpstreamBody {
    b.map_err(|never| match never {}).boxed_unsync()
}

fn log_failure(ex: &Exchange, e: &ProxyError, connect: bool) {
    if e.status().is_server_error() {
        tracing::warn!(request_id = %ex.request_id, code = e.code(), error = %e, "request failed");
    } else if connect {
        // Clients drop a refused CONNECT's body: the log is where its reason shows.
        tracing::info!(
            request_id = %ex.request_id,
            code = e.code(),
            host = %crate::audit::bounded(&ex.host),
            error = %e,
            "CONNECT refused"
        );
    } else {
        tracing::debug!(request_id = %ex.request_id, code = e.code(), error = %e, "request refused");
    }
}

/// A bare response sidekey answers itself (CONNECT established, for example).
pub fn empty(status: StatusCode) -> Response<UpstreamBody> {
    let mut r = Response::new(box_full(Full::new(Bytes::new())));
    *r.status_mut() = status;
    r
}
