//! The throttle phase, on both sides of the upstream call: before it, a call policy
//! allowed is refused with 429 `rate_limited` when its route's `rate:` budget is spent
//! or an upstream back-off still runs for it; after it, an upstream 429/503 with
//! `Retry-After` on a credentialed call starts such a back-off. The state and its
//! rules are [`crate::throttle`]'s.

use super::Call;
use super::forward::{Reply, Sent};
use crate::error::ProxyError;
use crate::identity::Identity;
use crate::policy::Decision;
use crate::proxy::Shared;

/// Before the credential is looked up: may this allowed call go upstream now?
pub(super) fn admit(
    shared: &Shared,
    decision: &Decision,
    identity: Option<&Identity>,
) -> Result<(), ProxyError> {
    match &decision.route {
        Some(route) if decision.allowed() => {
            shared.throttle.admit(route, identity.map(|i| &*i.user))
        }
        _ => Ok(()),
    }
}

/// After the upstream answered a call that carried a credential.
pub(super) fn observe(shared: &Shared, call: &Call, sent: &Sent) {
    let (Some(route), Some(_), Reply::Response(resp)) = (&call.route, &call.token, &sent.reply)
    else {
        return;
    };
    shared
        .throttle
        .observe(route, call.user(), resp.status(), resp.headers());
}
