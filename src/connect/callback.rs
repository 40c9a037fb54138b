//! `GET /callback?code=..&state=..`: the one redirect URI, for the provider and for
//! the `verify_user` IdP alike (the state says which step it answers).
//!
//! Order matters: the state is accepted first (issued here, unexpired, unused, with
//! this browser's cookie) and consumed, and only then is a provider `error=` shown or
//! a code exchanged, so a refused callback never exchanges its code and a state
//! completes once. Every path that stores nothing returns a page saying why.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use secrecy::SecretString;

use super::flow::{self, COOKIE, Pending, Step};
use super::oidc::LoginError;
use super::outcome::{self, Finished, Refusal, provider_code};
use super::pages::{self, Kind};
use super::{ConnectService, store};
use crate::config::{Config, ConnectConfig};

/// `application/x-www-form-urlencoded` pairs of a query string.
pub fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// How far a callback got.
enum Next {
    Connected,
    /// `verify_user` passed: on to the provider.
    Redirect(String),
}

/// A refusal with what was known of the flow when it happened.
struct Failed {
    refusal: Refusal,
    flow: Option<(Arc<str>, String)>,
}

impl From<Refusal> for Failed {
    fn from(refusal: Refusal) -> Self {
        Failed {
            refusal,
            flow: None,
        }
    }
}

pub async fn handle(
    svc: &ConnectService,
    config: &Config,
    cc: &ConnectConfig,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let request_id = flow::random(16);
    let q = query_pairs(req.uri().query().unwrap_or(""));
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let cookie = flow::cookie_value(req.headers(), COOKIE);
    let pending = match get("state").filter(|s| !s.is_empty()) {
        None => Err(Failed::from(Refusal::NoState)),
        Some(state) => svc
            .flows
            .take(state, cookie)
            .map_err(|e| Failed::from(Refusal::Flow(e))),
    };
    let (result, who) = match pending {
        Err(f) => (Err(f), None),
        Ok(p) => {
            let who = (p.credential.clone(), p.user.clone());
            let r = run(svc, config, cc, p, get("error"), get("code"), cookie).await;
            (
                r.map_err(|refusal| Failed {
                    refusal,
                    flow: Some(who.clone()),
                }),
                Some(who),
            )
        }
    };
    let agent = config.agent.clone();
    match result {
        Ok(Next::Redirect(location)) => pages::redirect(&location, None),
        Ok(Next::Connected) => {
            let (credential, user) = who.unwrap_or_else(|| (Arc::from(""), String::new()));
            tracing::info!(request_id = %request_id, credential = %credential, user = %user, "account connected");
            let flow = Some((credential.clone(), user.clone()));
            outcome::record(
                &svc.shared.audit,
                &svc.shared.metrics,
                &finished(&request_id, &agent, &flow),
                None,
            );
            pages::page(
                StatusCode::OK,
                Kind::Connected,
                "Account connected",
                &[
                    format!("Your {credential} account is now connected for {user}."),
                    "You can close this window and go back to your assistant.".into(),
                ],
            )
        }
        Err(f) => {
            let r = &f.refusal;
            tracing::warn!(request_id = %request_id, code = r.code(), reason = %r, credential = f.flow.as_ref().map(|x| &*x.0), "connect callback refused; nothing stored");
            outcome::record(
                &svc.shared.audit,
                &svc.shared.metrics,
                &finished(&request_id, &agent, &f.flow),
                Some(r),
            );
            let (c, u) = match &f.flow {
                Some((c, u)) => (Some(&**c), Some(u.as_str())),
                None => (None, None),
            };
            r.page(c, u)
        }
    }
}

fn finished<'a>(
    request_id: &'a str,
    agent: &'a str,
    flow: &'a Option<(Arc<str>, String)>,
) -> Finished<'a> {
    Finished {
        request_id,
        agent,
        credential: flow.as_ref().map(|f| &*f.0),
        user: flow.as_ref().map(|f| f.1.as_str()),
    }
}

/// The accepted flow `p`: the provider's answer, the exchange, the store.
async fn run(
    svc: &ConnectService,
    config: &Config,
    cc: &ConnectConfig,
    p: Pending,
    error: Option<&str>,
    code: Option<&str>,
    cookie: Option<&str>,
) -> Result<Next, Refusal> {
    if let Some(e) = error {
        return Err(Refusal::Provider(provider_code(e)));
    }
    let code = SecretString::from(
        code.filter(|c| !c.is_empty())
            .ok_or(Refusal::NoCode)?
            .to_string(),
    );
    let redirect_uri = cc.redirect_uri();
    match p.step {
        Step::Login => {
            let vu = cc.verify_user.as_ref().ok_or(Refusal::Gone)?;
            let client_id = resolve(svc, &vu.client_id).await?;
            let idp = svc
                .idp
                .get(&svc.http, vu, &client_id, &config.upstream_roots)
                .await
                .map_err(Refusal::Login)?;
            let creds = svc
                .shared
                .credentials
                .client_creds(&idp.client)
                .await
                .map_err(|e| Refusal::Client(e.to_string()))?;
            let tokens = svc
                .http
                .authorization_code(&idp.client, creds, &code, &redirect_uri, &p.verifier)
                .await
                .map_err(|e| Refusal::Login(LoginError::Unavailable(e.to_string())))?;
            let signed_in = idp
                .user(tokens.id_token.as_ref(), p.nonce.as_ref())
                .await
                .map_err(Refusal::Login)?;
            if signed_in != p.user {
                return Err(Refusal::WrongUser { signed_in });
            }
            // The same browser (its cookie was just checked) goes on to the provider.
            let cookie = cookie.unwrap_or_default();
            svc.provider_redirect(cc, p.credential, p.user, cookie)
                .await
                .map(Next::Redirect)
                .map_err(|_| Refusal::Gone)
        }
        Step::Provider => {
            let app = cc.credentials.get(&*p.credential).ok_or(Refusal::Gone)?;
            let spec = config
                .credentials
                .get(&*p.credential)
                .ok_or(Refusal::Gone)?;
            let creds = svc
                .shared
                .credentials
                .client_creds(&app.client)
                .await
                .map_err(|e| Refusal::Client(e.to_string()))?;
            let tokens = svc
                .http
                .authorization_code(&app.client, creds, &code, &redirect_uri, &p.verifier)
                .await
                .map_err(Refusal::Exchange)?;
            let kv = svc.shared.credentials.kv().map(|k| &**k);
            let at = store::save(kv, spec, &p.user, &tokens.token)
                .await
                .map_err(Refusal::Store)?;
            tracing::debug!(credential = %p.credential, at = %at, "connected tokens stored");
            svc.shared
                .credentials
                .invalidate(spec, Some(p.user.as_str()))
                .await;
            Ok(Next::Connected)
        }
    }
}

async fn resolve(svc: &ConnectService, r: &crate::config::SecretRef) -> Result<String, Refusal> {
    svc.shared
        .credentials
        .resolve_secret(r)
        .await
        .map(|s| secrecy::ExposeSecret::expose_secret(&s).to_string())
        .map_err(|e| Refusal::Client(e.to_string()))
}
