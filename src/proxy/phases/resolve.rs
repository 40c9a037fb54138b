//! The resolve phase: the credential for the deciding route and this user, from the
//! credential store (cached), and after an upstream 401 a refreshed one. Store errors
//! become the contract's credential errors, with the connect link where there is one.

use std::sync::Arc;

use crate::config::{CredentialSpec, RouteSpec};
use crate::credentials::{CredError, Token, template};
use crate::error::ProxyError;
use crate::identity::Identity;
use crate::policy::Decision;
use crate::proxy::Shared;

/// The token to inject, on an allowed route that injects; `None` otherwise.
pub(super) async fn resolve(
    shared: &Shared,
    decision: &Decision,
    identity: Option<&Identity>,
) -> Result<Option<Arc<Token>>, ProxyError> {
    let Some(route) = decision.route.as_deref().filter(|_| decision.injects()) else {
        return Ok(None);
    };
    let spec = credential(route)?;
    let user = identity.map(|i| &*i.user);
    shared
        .credentials
        .get(spec, user)
        .await
        .map(Some)
        .map_err(|e| cred_error(e, route, spec, user))
}

/// After an upstream 401: a refreshed (or already rotated) token, or why there is none.
pub(super) async fn refreshed(
    shared: &Shared,
    route: &RouteSpec,
    user: Option<&str>,
    rejected: &Token,
) -> Result<Arc<Token>, ProxyError> {
    let spec = credential(route)?;
    shared
        .credentials
        .reject(spec, user, rejected)
        .await
        .map_err(|e| cred_error(e, route, spec, user))
}

fn credential(route: &RouteSpec) -> Result<&Arc<CredentialSpec>, ProxyError> {
    route
        .credential
        .as_ref()
        .ok_or_else(|| ProxyError::CredentialStoreUnavailable("route has no credential".into()))
}

fn cred_error(
    e: CredError,
    route: &RouteSpec,
    spec: &CredentialSpec,
    user: Option<&str>,
) -> ProxyError {
    let connect_url = || {
        route
            .effective_connect_url()
            .map(|u| template::fill_url(u, user))
    };
    match e {
        CredError::Missing => ProxyError::CredentialMissing {
            credential: spec.name.to_string(),
            connect_url: connect_url(),
        },
        CredError::Expired => ProxyError::CredentialExpired {
            credential: spec.name.to_string(),
            connect_url: connect_url(),
        },
        CredError::Unavailable(m) | CredError::Invalid(m) => {
            ProxyError::CredentialStoreUnavailable(m)
        }
    }
}
