//! `source: token_exchange`: OAuth 2.0 Token Exchange (RFC 8693), the on-behalf-of
//! flow. The request's verified identity JWT is the `subject_token`
//! (`urn:ietf:params:oauth:token-type:jwt`); `audience`, `resource`, `scope` and
//! `requested_token_type` are sent only when configured; the client authenticates per
//! `client_auth` when it has a `client_id`. The issued token is cached by the store
//! per user and identity token, until the earlier of its own expiry and the identity
//! token's: a token obtained for an identity never outlives it.

use secrecy::SecretString;

use super::assertion::{self, Answer};
use super::backend::{ClientCreds, MintAuth, MintBody, MintRequest};
use super::refresh::Ctx;
use super::{CredError, Token};
use crate::config::{CredentialSpec, TokenExchange};
use crate::identity::IdentityToken;

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

pub(super) async fn fetch(
    ctx: &Ctx<'_>,
    spec: &CredentialSpec,
    te: &TokenExchange,
    subject: Option<&IdentityToken>,
) -> Result<Token, CredError> {
    // Only `identity.mode: jwt` carries a token (`check` insists on it).
    let Some(subject) = subject else {
        return Err(CredError::Missing);
    };
    let s = |v: &str| SecretString::from(v.to_string());
    let mut form = vec![
        ("grant_type", s(GRANT)),
        ("subject_token", s(subject.expose())),
        ("subject_token_type", s(JWT_TYPE)),
    ];
    let optional = [
        ("audience", te.audience.as_deref()),
        ("resource", te.resource.as_deref()),
        ("requested_token_type", te.requested_token_type.as_deref()),
    ];
    form.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, s(v)))),
    );
    if !te.scopes.is_empty() {
        form.push(("scope", s(&te.scopes.join(" "))));
    }
    let auth = match &te.client_id {
        None => MintAuth::None,
        Some(id) => {
            let id = ctx.secrets.resolve(id).await?;
            let secret = match &te.client_secret {
                Some(r) => Some(ctx.secrets.resolve(r).await?),
                None => None,
            };
            MintAuth::Client(ClientCreds { id, secret }, te.client_auth)
        }
    };
    let req = MintRequest {
        url: te.token_url.clone(),
        auth,
        body: MintBody::Form(form),
        headers: vec![],
    };
    let mut token = assertion::mint(
        ctx,
        spec,
        req,
        Answer {
            token: "access_token",
        },
    )
    .await?;
    let identity_exp = subject.expires_at();
    token.expires_at = Some(match token.expires_at {
        Some(e) if e < identity_exp => e,
        _ => identity_exp,
    });
    Ok(token)
}
