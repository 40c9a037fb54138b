//! The MCP steps of the request path, on routes with an `mcp:` block (see
//! [`crate::mcp`]): `read` (a POST body, bounded and classified, before the route's
//! refusals so they can answer in JSON-RPC form), `decide` (every `tools/call`, after
//! the route allowed the call) and `filter` (the `tools/list` answers).

use hyper::body::Incoming;

use super::Call;
use crate::config::{Action, Enforce};
use crate::error::ProxyError;
use crate::identity::Identity;
use crate::policy::Decision;
use crate::proxy::exchange::Exchange;
use crate::proxy::forward::UpstreamBody;
use crate::proxy::{Runtime, Shared, replay};

/// Read and classify the body of a POST on an MCP route (recorded on the exchange);
/// any other body streams.
pub(super) async fn read(
    ex: &mut Exchange,
    parts: &mut http::request::Parts,
    body: Incoming,
) -> Result<replay::Arrived, ProxyError> {
    let cfg = ex.route.as_ref().and_then(|r| r.mcp.clone());
    let Some(cfg) = cfg.filter(|_| parts.method == http::Method::POST) else {
        return Ok(replay::Arrived::Stream(body));
    };
    let upgrade = super::inject::is_upgrade(parts);
    let (bytes, call) = crate::mcp::gate::read(&cfg, parts, body, upgrade).await?;
    ex.mcp = Some(call);
    Ok(replay::Arrived::Read(bytes))
}

/// Decide the POST's `tools/call`s by the route's tool rules and pins. On a route in
/// report mode a policy refusal (`tool_denied`, `user_not_allowed`,
/// `identity_required`) is recorded instead and the call goes out uncredentialed;
/// `tool_changed` is a safety check, not policy, and is always enforced.
pub(super) fn decide(
    shared: &Shared,
    rt: &Runtime,
    ex: &mut Exchange,
    identity: Option<&Identity>,
    decision: &mut Decision,
) -> Result<(), ProxyError> {
    let (Some(call), Some(route)) = (ex.mcp.as_mut(), ex.route.as_deref()) else {
        return Ok(());
    };
    let header = rt.identifier.header();
    let report = route.enforce == Enforce::Report;
    let verdict = crate::mcp::gate::decide(
        call,
        route,
        identity,
        header,
        &shared.mcp_pins,
        &shared.metrics,
    );
    match verdict {
        Err(e) if report && is_policy_refusal(&e) => {
            for entry in ex.mcp.iter_mut().flat_map(|c| c.entries.iter_mut()) {
                if entry.decision == "deny" {
                    entry.decision = "report";
                }
            }
            ex.report = ex.report.or(Some(e.code()));
            decision.action = Action::Passthrough;
            ex.action = Some(Action::Passthrough);
            Ok(())
        }
        other => other,
    }
}

fn is_policy_refusal(e: &ProxyError) -> bool {
    matches!(
        e,
        ProxyError::ToolDenied(_)
            | ProxyError::UserNotAllowed { .. }
            | ProxyError::IdentityRequired { .. }
    )
}

/// Filter the answers to the POST's `tools/list` requests for this caller.
pub(super) async fn filter(
    shared: &Shared,
    ex: &Exchange,
    call: &Call,
    resp: http::Response<UpstreamBody>,
) -> Result<http::Response<UpstreamBody>, ProxyError> {
    let filter = match (&ex.mcp, &call.route) {
        (Some(m), Some(r)) => {
            m.list_filter(r, call.identity.as_ref(), &shared.mcp_pins, &shared.metrics)
        }
        _ => None,
    };
    crate::mcp::filter::response(resp, filter).await
}
