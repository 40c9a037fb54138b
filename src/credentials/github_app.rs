//! `source: github_app`: GitHub App installation tokens.
//!
//! An app JWT (RS256 with the app's private key; `iss` = the app id, `iat` = now - 60 s
//! for clock drift, `exp` = now + 9 min, under GitHub's 10 min limit) authenticates
//! `POST {api_url}/app/installations/{id}/access_tokens`, whose body carries the
//! optional down-scoping (`permissions`, `repositories`) as configured. The answer's
//! `token` is cached by the store until its `expires_at` (one hour) minus the margin.

use secrecy::SecretString;

use super::assertion::{self, Answer, now_secs};
use super::backend::{MintAuth, MintBody, MintRequest};
use super::refresh::Ctx;
use super::{CredError, Token};
use crate::config::{CredentialSpec, GithubApp};

/// `iat` is backdated this much (GitHub's advice against clock drift).
const BACKDATE_SECS: u64 = 60;
/// Lifetime of the app JWT; GitHub refuses more than 10 minutes.
const JWT_LIFETIME_SECS: u64 = 9 * 60;

pub(super) async fn fetch(
    ctx: &Ctx<'_>,
    spec: &CredentialSpec,
    app: &GithubApp,
) -> Result<Token, CredError> {
    let key = ctx.secrets.resolve(&app.private_key).await?;
    let jwt = app_jwt(&key, app.app_id)?;
    let req = MintRequest {
        url: format!(
            "{}/app/installations/{}/access_tokens",
            app.api_url, app.installation_id
        ),
        auth: MintAuth::Bearer(jwt),
        body: MintBody::Json(body(app)),
        headers: vec![
            ("accept", "application/vnd.github+json"),
            ("x-github-api-version", "2022-11-28"),
        ],
    };
    assertion::mint(ctx, spec, req, Answer { token: "token" }).await
}

fn app_jwt(key: &SecretString, app_id: u64) -> Result<SecretString, CredError> {
    let now = now_secs();
    let claims = serde_json::json!({
        "iat": now.saturating_sub(BACKDATE_SECS),
        "exp": now + JWT_LIFETIME_SECS,
        "iss": app_id.to_string(),
    });
    assertion::sign_rs256(key, None, &claims)
}

/// The request body: the down-scoping, as configured.
fn body(app: &GithubApp) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    if let Some(p) = &app.permissions {
        body.insert("permissions".into(), serde_json::Value::Object(p.clone()));
    }
    if let Some(r) = &app.repositories {
        body.insert("repositories".into(), serde_json::json!(r));
    }
    serde_json::Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretRef;

    #[test]
    fn body_carries_only_what_is_set() {
        let mut app = GithubApp {
            app_id: 1,
            installation_id: 2,
            private_key: SecretRef::Env("K".into()),
            api_url: "https://api.github.com".into(),
            permissions: None,
            repositories: None,
        };
        assert_eq!(body(&app), serde_json::json!({}));
        app.permissions = serde_json::json!({"issues": "write"}).as_object().cloned();
        app.repositories = Some(vec!["infra".into()]);
        assert_eq!(
            body(&app),
            serde_json::json!({"permissions": {"issues": "write"}, "repositories": ["infra"]})
        );
    }
}
