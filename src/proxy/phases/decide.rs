//! The decide phase: [`crate::policy::decide`] for this request, recorded for the
//! audit, a refusal turned into its [`ProxyError`], then the egress intent check for a
//! literal-IP destination.

use http::Method;

use crate::error::ProxyError;
use crate::identity::Identity;
use crate::policy::{self, Decision, DecisionInput, MatchInput, Refusal};
use crate::proxy::Runtime;
use crate::proxy::exchange::Exchange;
use crate::proxy::target::{Target, Via};

pub(super) fn decide(
    rt: &Runtime,
    ex: &mut Exchange,
    target: &Target,
    method: &Method,
    identity: Option<&Identity>,
) -> Result<Decision, ProxyError> {
    let input = DecisionInput {
        request: MatchInput {
            host: &target.host,
            path: target.policy_path(),
            method,
        },
        gateway: target.via.as_gateway(),
        identity,
    };
    let d = policy::decide(&rt.table, rt.config.default_action, &input);
    ex.route = d.route.clone();
    // The default's refusal has no auth context: nothing matched.
    ex.action = (d.route.is_some() || d.allowed()).then_some(d.action);
    ex.report = d.reported.map(Refusal::code);
    if let Some(refusal) = d.refusal {
        return Err(refusal_error(rt, refusal, &d, method, target));
    }
    crate::proxy::egress::check_intent(&rt.config, target, d.route.as_deref())?;
    Ok(d)
}

/// The error a refusal answers with.
fn refusal_error(
    rt: &Runtime,
    refusal: Refusal,
    d: &Decision,
    method: &Method,
    target: &Target,
) -> ProxyError {
    let route = || {
        d.route
            .as_ref()
            .map(|r| r.name.to_string())
            .unwrap_or_default()
    };
    match refusal {
        Refusal::NoRoute if matches!(target.via, Via::GatewayMiss) => {
            ProxyError::RouteDenied(format!(
                "no gateway route for `{}`",
                crate::audit::bounded(&target.path)
            ))
        }
        Refusal::NoRoute => ProxyError::RouteDenied(format!(
            "no route matches {method} {}",
            crate::audit::bounded(&target.host)
        )),
        Refusal::RouteDenies => {
            ProxyError::RouteDenied(format!("route `{}` denies this call", route()))
        }
        Refusal::IdentityRequired => ProxyError::IdentityRequired {
            header: rt.identifier.header().to_string(),
        },
        Refusal::UserNotAllowed => ProxyError::UserNotAllowed { route: route() },
    }
}
