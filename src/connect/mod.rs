//! Assistant onboarding: users connect their own accounts (OAuth authorization code +
//! PKCE), so an assistant route works without anyone putting tokens in Vault by hand.
//!
//! * [`connect_url`] is the sidecar's side: the link a `credential_missing` /
//!   `credential_expired` error carries, signed for that user and credential (`link.rs`).
//! * [`serve`] is the connect listener (`sidekey run` with `connect.listen`, or
//!   `sidekey connect` alone): `GET /connect/{credential}?t=LINK` checks the link and
//!   sends the browser to the provider (after the IdP sign-in of `verify_user`,
//!   `oidc.rs`) with S256 PKCE and a state bound to the browser by a cookie (`flow.rs`);
//!   `GET /callback` is `callback.rs`: exchange, store (`store.rs`), page (`pages.rs`),
//!   audit and metric (`outcome.rs`). `GET /healthz` answers too.
//!
//! Flows in progress live in this process's memory: run one connect service (or one
//! per sticky session), however many sidecars there are.

mod callback;
mod flow;
pub mod link;
mod oidc;
mod outcome;
mod pages;
mod store;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConnectConfig, CredentialSpec, RouteSpec};
use crate::credentials::{HttpTokenEndpoint, template};
use crate::proxy::Shared;
use flow::{COOKIE, Flows, Start, Step};
use pages::Kind;

/// How long a client has to send its request headers.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Query values and path segments: everything but RFC 3986 unreserved is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The `connect_url` of a credential error for `user`: a signed link when `connect:`
/// makes the credential connectable, else the static `connect_url` template, if any.
pub fn connect_url(
    config: &Config,
    route: &RouteSpec,
    spec: &CredentialSpec,
    user: Option<&str>,
) -> Option<String> {
    if let (Some(cc), Some(user)) = (&config.connect, user)
        && let Some(key) = &cc.signing_key
        && cc.credentials.contains_key(&*spec.name)
    {
        let t = link::mint(key, &spec.name, user, cc.link_ttl, SystemTime::now());
        return Some(format!(
            "{}/connect/{}?t={t}",
            cc.public_url,
            enc(&spec.name)
        ));
    }
    route
        .effective_connect_url()
        .map(|u| template::fill_url(u, user))
}

/// The connect listener's state.
pub struct ConnectService {
    shared: Arc<Shared>,
    flows: Flows,
    http: HttpTokenEndpoint,
    idp: oidc::IdpCache,
}

/// Serve the connect pages on `listener` until `stop` fires.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, stop: CancellationToken) {
    let http = match HttpTokenEndpoint::new(&shared.runtime().config.upstream_roots) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the connect service's HTTP client; connect pages are not served");
            return;
        }
    };
    let svc = Arc::new(ConnectService {
        shared,
        flows: Flows::default(),
        http,
        idp: oidc::IdpCache::default(),
    });
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        let Ok((stream, _)) = accepted else { continue };
        let svc = svc.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |req| {
                let svc = svc.clone();
                async move { Ok::<_, Infallible>(svc.handle(req).await) }
            });
            let mut b = auto::Builder::new(TokioExecutor::new());
            // Browsers reach this listener from outside: a slow client cannot hold it.
            b.http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let _ = b.serve_connection(TokioIo::new(stream), handler).await;
        });
    }
}

impl ConnectService {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return pages::page(
                StatusCode::METHOD_NOT_ALLOWED,
                Kind::Error,
                "Method not allowed",
                &["The connect pages only answer GET.".into()],
            );
        }
        let rt = self.shared.runtime();
        let path = req.uri().path();
        if path == "/healthz" {
            return pages::text(StatusCode::OK, "ok\n");
        }
        let Some(cc) = rt.config.connect.as_ref() else {
            return not_found();
        };
        if path == "/callback" {
            return callback::handle(self, &rt.config, cc, &req).await;
        }
        match path.strip_prefix("/connect/") {
            Some(name) => self.start(&rt.config, cc, name, req.uri().query()).await,
            None => not_found(),
        }
    }

    /// `GET /connect/{credential}?t=LINK`.
    async fn start(
        &self,
        config: &Config,
        cc: &ConnectConfig,
        raw_name: &str,
        query: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let name = percent_decode_str(raw_name).decode_utf8_lossy();
        let Some(credential) = cc.credentials.get_key_value(&*name).map(|(k, _)| k) else {
            return not_found();
        };
        let t = callback::query_pairs(query.unwrap_or(""))
            .into_iter()
            .find(|(k, _)| k == "t")
            .map(|(_, v)| v)
            .unwrap_or_default();
        let Some(key) = &cc.signing_key else {
            return unavailable("The connect service has no signing key.");
        };
        let link = match link::verify(key, credential, &t, SystemTime::now()) {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(credential = %credential, reason = %e, "connect link refused");
                return pages::page(
                    StatusCode::BAD_REQUEST,
                    Kind::Error,
                    "This link cannot be used",
                    &[format!("{e}."), "Ask your assistant for a new link.".into()],
                );
            }
        };
        let cookie = flow::random(32);
        let credential: Arc<str> = Arc::from(credential.as_str());
        let next = match &cc.verify_user {
            Some(vu) => {
                self.login_redirect(config, cc, vu, credential, link.user, &cookie)
                    .await
            }
            None => {
                self.provider_redirect(cc, credential, link.user, &cookie)
                    .await
            }
        };
        match next {
            Ok(location) => {
                let secure = if cc.secure_cookie { "; Secure" } else { "" };
                let set = format!(
                    "{COOKIE}={cookie}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
                    flow::FLOW_TTL.as_secs()
                );
                pages::redirect(&location, Some(&set))
            }
            Err(resp) => resp,
        }
    }

    /// Start a `verify_user` sign-in at the IdP; the authorization URL.
    async fn login_redirect(
        &self,
        config: &Config,
        cc: &ConnectConfig,
        vu: &crate::config::VerifyUser,
        credential: Arc<str>,
        user: String,
        cookie: &str,
    ) -> Result<String, Response<Full<Bytes>>> {
        let client_id = self.client_id(&vu.client_id).await?;
        let idp = self
            .idp
            .get(&self.http, vu, &client_id, &config.upstream_roots)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "verify_user: identity provider unavailable");
                unavailable("The identity provider cannot be reached right now.")
            })?;
        let s = self.flows.start(Start {
            step: Step::Login,
            user,
            credential,
            cookie: cookie.into(),
            with_nonce: true,
        });
        let challenge = flow::challenge(&s.verifier);
        let mut params = vec![
            ("scope", "openid".to_string()),
            ("code_challenge", challenge),
        ];
        if let Some(n) = &s.nonce {
            params.push(("nonce", secrecy::ExposeSecret::expose_secret(n).to_string()));
        }
        Ok(authorize_url(
            &idp.authorization_endpoint,
            &client_id,
            &cc.redirect_uri(),
            &s.state,
            &params,
            &[],
        ))
    }

    /// Start the provider step for `user`; the authorization URL.
    pub(crate) async fn provider_redirect(
        &self,
        cc: &ConnectConfig,
        credential: Arc<str>,
        user: String,
        cookie: &str,
    ) -> Result<String, Response<Full<Bytes>>> {
        let Some(app) = cc.credentials.get(&*credential) else {
            return Err(not_found());
        };
        let client_id = self.client_id(&app.client.client_id).await?;
        let s = self.flows.start(Start {
            step: Step::Provider,
            user,
            credential,
            cookie: cookie.into(),
            with_nonce: false,
        });
        let mut params = vec![("code_challenge", flow::challenge(&s.verifier))];
        if !app.client.scopes.is_empty() {
            params.insert(0, ("scope", app.client.scopes.join(" ")));
        }
        Ok(authorize_url(
            &app.authorize_url,
            &client_id,
            &cc.redirect_uri(),
            &s.state,
            &params,
            &app.authorize_params,
        ))
    }

    async fn client_id(
        &self,
        r: &crate::config::SecretRef,
    ) -> Result<String, Response<Full<Bytes>>> {
        match self.shared.credentials.resolve_secret(r).await {
            Ok(id) => Ok(secrecy::ExposeSecret::expose_secret(&id).to_string()),
            Err(e) => {
                tracing::error!(error = %e, "connect: the OAuth client id cannot be resolved");
                Err(unavailable(
                    "sidekey's OAuth client is not available right now.",
                ))
            }
        }
    }
}

/// `base?response_type=code&client_id=..&redirect_uri=..&state=..` + `params` + `extra`.
fn authorize_url(
    base: &str,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    params: &[(&str, String)],
    extra: &[(String, String)],
) -> String {
    let mut url = base.to_string();
    url.push(if base.contains('?') { '&' } else { '?' });
    url.push_str("response_type=code");
    let fixed = [
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ];
    let all = fixed
        .iter()
        .map(|(k, v)| (*k, *v))
        .chain(params.iter().map(|(k, v)| (*k, v.as_str())))
        .chain([("code_challenge_method", "S256")])
        .chain(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (k, v) in all {
        url.push('&');
        url.push_str(&enc(k));
        url.push('=');
        url.push_str(&enc(v));
    }
    url
}

fn not_found() -> Response<Full<Bytes>> {
    pages::page(
        StatusCode::NOT_FOUND,
        Kind::Error,
        "Not found",
        &["There is no connectable account here.".into()],
    )
}

fn unavailable(why: &str) -> Response<Full<Bytes>> {
    pages::page(
        StatusCode::BAD_GATEWAY,
        Kind::Error,
        "Cannot connect right now",
        &[
            why.into(),
            "Nothing was stored; try again in a moment.".into(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_urls_carry_every_parameter_encoded() {
        let u = authorize_url(
            "https://p.example/auth?x=1",
            "id 1",
            "http://127.0.0.1:1/callback",
            "st",
            &[("scope", "a b".into()), ("code_challenge", "ch".into())],
            &[("owner".into(), "user".into())],
        );
        assert_eq!(
            u,
            "https://p.example/auth?x=1&response_type=code&client_id=id%201\
             &redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcallback&state=st&scope=a%20b\
             &code_challenge=ch&code_challenge_method=S256&owner=user"
        );
    }
}
