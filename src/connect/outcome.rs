//! How a callback ends: connected, or refused with a reason. One [`Refusal`] per
//! failure path of the contract, each with its status, its `error` code (audit),
//! its `result` (`denied` when the user or provider said no, `error` otherwise) and
//! the page that explains it. [`record`] writes the `event: connect` audit record and
//! counts `sidekey_connect_total{credential,result}`.

use http::StatusCode;
use serde::Serialize;

use super::flow::FlowError;
use super::oidc::LoginError;
use super::pages::{self, Kind};
use super::store::StoreError;
use crate::audit::AuditSink;
use crate::credentials::OAuthError;
use crate::metrics::Metrics;

/// Why a callback stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("callback without a state")]
    NoState,
    #[error("{0}")]
    Flow(FlowError),
    /// The provider (or IdP) answered `error=CODE`.
    #[error("the provider answered error={0}")]
    Provider(String),
    #[error("callback without a code")]
    NoCode,
    #[error("sign-in at the identity provider failed: {0}")]
    Login(LoginError),
    #[error("signed in as another user than the link was made for")]
    WrongUser { signed_in: String },
    #[error("the credential is no longer connectable")]
    Gone,
    #[error("code exchange failed: {0}")]
    Exchange(OAuthError),
    #[error("client credentials unavailable: {0}")]
    Client(String),
    #[error("storing the token failed: {0}")]
    Store(StoreError),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NoState | Refusal::Flow(_) | Refusal::Provider(_) | Refusal::NoCode => {
                StatusCode::BAD_REQUEST
            }
            Refusal::Login(LoginError::Unavailable(_)) => StatusCode::BAD_GATEWAY,
            Refusal::Login(_) => StatusCode::BAD_REQUEST,
            Refusal::WrongUser { .. } => StatusCode::FORBIDDEN,
            Refusal::Gone => StatusCode::NOT_FOUND,
            Refusal::Exchange(_) => StatusCode::BAD_GATEWAY,
            Refusal::Client(_) | Refusal::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The audit record's `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::NoState => "state_missing",
            Refusal::Flow(FlowError::Unknown) => "state_invalid",
            Refusal::Flow(FlowError::Expired) => "state_expired",
            Refusal::Flow(FlowError::CookieMissing) => "cookie_missing",
            Refusal::Flow(FlowError::CookieMismatch) => "cookie_mismatch",
            Refusal::Provider(c) if c == "access_denied" => "access_denied",
            Refusal::Provider(_) => "provider_error",
            Refusal::NoCode => "code_missing",
            Refusal::Login(LoginError::Unavailable(_)) => "idp_unavailable",
            Refusal::Login(_) => "login_invalid",
            Refusal::WrongUser { .. } => "user_mismatch",
            Refusal::Gone => "unknown_credential",
            Refusal::Exchange(_) => "token_endpoint_error",
            Refusal::Client(_) => "client_unavailable",
            Refusal::Store(_) => "store_unavailable",
        }
    }

    /// `denied` when someone said no; `error` when something failed.
    pub fn result(&self) -> &'static str {
        match self {
            Refusal::Provider(_) | Refusal::WrongUser { .. } => "denied",
            _ => "error",
        }
    }

    /// The page for this refusal; `credential`/`user` are shown when known.
    pub fn page(
        &self,
        credential: Option<&str>,
        user: Option<&str>,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        let what = match (credential, user) {
            (Some(c), Some(u)) => format!("Your {c} account was not connected for {u}."),
            (Some(c), None) => format!("Your {c} account was not connected."),
            _ => "The account was not connected.".to_string(),
        };
        let why = match self {
            Refusal::NoState => "The provider's answer carried no state.".to_string(),
            Refusal::Flow(e) => format!("The sign-in could not be matched: {e}."),
            Refusal::Provider(c) if c == "access_denied" => {
                "Access was not granted at the provider.".to_string()
            }
            Refusal::Provider(c) => format!("The provider answered with the error \"{c}\"."),
            Refusal::NoCode => "The provider's answer carried no authorization code.".into(),
            Refusal::Login(e) => format!("Signing in failed: {e}."),
            Refusal::WrongUser { signed_in } => format!(
                "You signed in as {signed_in}, but this link was made for another user. \
                 Ask your assistant for a new link while signed in as yourself."
            ),
            Refusal::Gone => "This credential is no longer connectable here.".into(),
            Refusal::Exchange(_) => {
                "The provider's token endpoint did not answer properly. Nothing was stored; \
                 try again in a moment."
                    .into()
            }
            Refusal::Client(_) | Refusal::Store(_) => {
                "The token could not be stored. Nothing was saved; try again in a moment.".into()
            }
        };
        let kind = if self.result() == "denied" {
            Kind::NotConnected
        } else {
            Kind::Error
        };
        pages::page(
            self.status(),
            kind,
            "Account not connected",
            &[what, why, "You can close this window.".into()],
        )
    }
}

/// RFC 6749's error code from a callback, made safe to show and log.
pub fn provider_code(raw: &str) -> String {
    let c: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    if c.is_empty() { "error".into() } else { c }
}

#[derive(Serialize)]
struct ConnectRecord<'a> {
    ts: String,
    request_id: &'a str,
    event: &'static str,
    agent: &'a str,
    user: Option<&'a str>,
    credential: Option<&'a str>,
    result: &'static str,
    error: Option<&'static str>,
}

/// What one finished callback was about.
pub struct Finished<'a> {
    pub request_id: &'a str,
    pub agent: &'a str,
    pub user: Option<&'a str>,
    pub credential: Option<&'a str>,
}

/// Audit and count one finished callback.
pub fn record(audit: &AuditSink, metrics: &Metrics, f: &Finished<'_>, refusal: Option<&Refusal>) {
    let (result, error) = match refusal {
        None => ("connected", None),
        Some(r) => (r.result(), Some(r.code())),
    };
    let ts = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    audit.write_event(&ConnectRecord {
        ts,
        request_id: f.request_id,
        event: "connect",
        agent: f.agent,
        user: f.user,
        credential: f.credential,
        result,
        error,
    });
    metrics.connect(f.credential.unwrap_or("none"), result);
}
