//! Validation of the minted sources (`github_app`, `google_service_account`,
//! `token_exchange`) and of `inject: {aws_sigv4: ...}`, each problem named by its YAML
//! path. A key given as `{file: PATH}` is read and parsed here, so `sidekey check`
//! catches an unreadable or malformed key before the first request does.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::raw::{RawCredential, RawSecretRef, RawSigV4};
use super::validate::Problems;
use super::validate_credentials::{Refs, check_template, check_url, client_auth};
use super::{
    CredentialSpec, GITHUB_API, GithubApp, GoogleServiceAccount, IdentityMode, Inject, RouteSpec,
    SecretRef, SigV4, SourceSpec, TokenExchange,
};
use crate::credentials::{ServiceAccountKey, check_rsa_pem};

fn missing(p: &mut Problems, at: &str, key: &str, source: &str) {
    p.push(
        format!("{at}.{key}"),
        format!("missing: needed by `source: {source}`"),
    );
}

/// The text behind a `{file: PATH}` reference, or a problem at `at`; `None` for other
/// references (checked when used).
fn file_text(p: &mut Problems, at: &str, r: &SecretRef) -> Option<String> {
    let SecretRef::File(path) = r else {
        return None;
    };
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) => {
            p.push(at, format!("cannot read {}: {}", path.display(), e.kind()));
            None
        }
    }
}

fn key_ref(
    p: &mut Problems,
    at: &str,
    key: &str,
    raw: Option<RawSecretRef>,
    refs: &Refs<'_>,
    source: &str,
) -> Option<SecretRef> {
    let Some(raw) = raw else {
        missing(p, at, key, source);
        return None;
    };
    Some(refs.secret(p, &format!("{at}.{key}"), &raw))
}

pub(super) fn github_app(
    p: &mut Problems,
    at: &str,
    c: &mut RawCredential,
    refs: &Refs<'_>,
) -> Option<SourceSpec> {
    let source = "github_app";
    let app_id = c.app_id.take();
    let installation_id = c.installation_id.take();
    if app_id.is_none() {
        missing(p, at, "app_id", source);
    }
    if installation_id.is_none() {
        missing(p, at, "installation_id", source);
    }
    let private_key = key_ref(p, at, "private_key", c.private_key.take(), refs, source)?;
    let key_at = format!("{at}.private_key");
    if let Some(pem) = file_text(p, &key_at, &private_key)
        && let Err(why) = check_rsa_pem(&pem)
    {
        p.push(&key_at, why);
    }
    let api_url = c
        .api_url
        .take()
        .unwrap_or_else(|| GITHUB_API.to_string())
        .trim_end_matches('/')
        .to_string();
    check_url(p, &format!("{at}.api_url"), &api_url);
    let repositories = c.repositories.take();
    for (i, r) in repositories.iter().flatten().enumerate() {
        if r.is_empty() || r.contains(['/', ' ']) {
            p.push(
                format!("{at}.repositories[{i}]"),
                "a repository name of the installation's owner, without `owner/`",
            );
        }
    }
    Some(SourceSpec::GithubApp(GithubApp {
        app_id: app_id?,
        installation_id: installation_id?,
        private_key,
        api_url,
        permissions: c.permissions.take(),
        repositories,
    }))
}

pub(super) fn google_sa(
    p: &mut Problems,
    at: &str,
    c: &mut RawCredential,
    refs: &Refs<'_>,
) -> Option<SourceSpec> {
    let source = "google_service_account";
    let key = key_ref(p, at, "key", c.key.take(), refs, source)?;
    let key_at = format!("{at}.key");
    if let Some(json) = file_text(p, &key_at, &key)
        && let Err(why) = ServiceAccountKey::parse(&json)
    {
        p.push(&key_at, why);
    }
    let scopes = c.scopes.take().unwrap_or_default();
    if scopes.is_empty() {
        p.push(
            format!("{at}.scopes"),
            "missing: a service account token needs at least one scope",
        );
    }
    let subject = c.subject.take();
    if let Some(s) = &subject {
        check_template(p, &format!("{at}.subject"), s);
        if s.trim().is_empty() {
            p.push(format!("{at}.subject"), "must not be empty");
        }
    }
    Some(SourceSpec::GoogleServiceAccount(GoogleServiceAccount {
        key,
        scopes,
        subject,
    }))
}

pub(super) fn token_exchange(
    p: &mut Problems,
    at: &str,
    c: &mut RawCredential,
    refs: &Refs<'_>,
) -> Option<SourceSpec> {
    let Some(token_url) = c.token_url.take() else {
        missing(p, at, "token_url", "token_exchange");
        return None;
    };
    check_url(p, &format!("{at}.token_url"), &token_url);
    let client_id = c
        .client_id
        .take()
        .map(|r| refs.secret(p, &format!("{at}.client_id"), &r));
    let client_secret = c
        .client_secret
        .take()
        .map(|r| refs.secret(p, &format!("{at}.client_secret"), &r));
    if client_secret.is_some() && client_id.is_none() {
        p.push(
            format!("{at}.client_id"),
            "missing: a `client_secret` needs its `client_id`",
        );
    }
    let non_empty = |p: &mut Problems, key: &str, v: Option<String>| {
        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
            p.push(format!("{at}.{key}"), "must not be empty");
        }
        v
    };
    Some(SourceSpec::TokenExchange(TokenExchange {
        token_url,
        client_id,
        client_secret,
        client_auth: client_auth(p, &format!("{at}.client_auth"), c.client_auth.as_ref()),
        audience: non_empty(p, "audience", c.audience.take()),
        resource: non_empty(p, "resource", c.resource.take()),
        scopes: c.scopes.take().unwrap_or_default(),
        requested_token_type: non_empty(p, "requested_token_type", c.requested_token_type.take()),
    }))
}

/// `inject: {aws_sigv4: {region, service}}`.
pub(super) fn sigv4(p: &mut Problems, at: &str, raw: &RawSigV4) -> Option<Inject> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let mut ok = true;
    for (key, v) in [("region", &raw.region), ("service", &raw.service)] {
        if !plain(v) {
            p.push(
                format!("{at}.aws_sigv4.{key}"),
                format!("`{v}` is not an AWS {key} name like us-east-1 or bedrock"),
            );
            ok = false;
        }
    }
    ok.then(|| {
        Inject::AwsSigV4(SigV4 {
            region: raw.region.clone(),
            service: raw.service.clone(),
        })
    })
}

/// Cross-checks: a token exchange needs verified JWT identities, and SigV4 signs with
/// an access-key map, which only `env`, `file` and `vault` secrets hold.
pub(super) fn cross_check(
    p: &mut Problems,
    identity: &IdentityMode,
    credentials: &BTreeMap<String, Arc<CredentialSpec>>,
    routes: &[RouteSpec],
) {
    let map_source =
        |c: &CredentialSpec| matches!(c.source, SourceSpec::File { .. } | SourceSpec::Vault { .. });
    for (name, c) in credentials {
        if matches!(c.source, SourceSpec::TokenExchange(_))
            && !matches!(identity, IdentityMode::Jwt(_))
        {
            p.push(
                format!("credentials.{name}.source"),
                "`source: token_exchange` exchanges the verified identity JWT: it needs `identity.mode: jwt`",
            );
        }
        if matches!(c.inject, Some(Inject::AwsSigV4(_))) && !map_source(c) {
            p.push(
                format!("credentials.{name}.inject.aws_sigv4"),
                format!("signs with an access-key map, which `source: {}` cannot hold (use env, file or vault)", c.source_name()),
            );
        }
    }
    for (i, r) in routes.iter().enumerate() {
        if let (Some(Inject::AwsSigV4(_)), Some(c)) = (&r.inject, &r.credential)
            && !map_source(c)
        {
            p.push(
                format!("routes[{i}].inject.aws_sigv4"),
                format!("credential \"{}\" (`source: {}`) cannot hold an access-key map (use env, file or vault)", c.name, c.source_name()),
            );
        }
    }
}
