//! `connect:` and the credentials' `oauth:` blocks: the typed shapes of assistant
//! onboarding (see `crate::connect`) and their validation, every problem with its YAML
//! path.
//!
//! A credential is *connectable* when its `oauth:` block has an `authorize_url`; its
//! OAuth app then also refreshes the stored token (like `refresh:`). The signing key is
//! read while the config loads, so `sidekey check` can refuse one shorter than
//! [`MIN_SIGNING_KEY`] bytes; it is held in a self-redacting [`SecretSlice`]. An
//! environment variable that is not set where the config is *checked* is no error (one
//! config validates on machines without every secret: `check` warns), but `run`,
//! `connect` and a reload refuse it ([`Config::runtime_problems`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretSlice;

use super::raw::{RawConnect, RawOAuth, RawSecretRef};
use super::validate::Problems;
use super::validate_credentials::{check_url, client_auth, secret_ref};
use super::{OAuthClient, SecretRef};

/// Shortest `connect.signing_key` accepted, in bytes.
pub const MIN_SIGNING_KEY: usize = 32;
/// `connect.link_ttl` when not set.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(600);

/// The validated `connect:` block.
#[derive(Debug)]
pub struct ConnectConfig {
    /// Where `sidekey run` / `sidekey connect` serve the pages; `None`: pages served elsewhere.
    pub listen: Option<SocketAddr>,
    /// The base URL a browser reaches, without a trailing slash.
    pub public_url: String,
    /// Whether cookies get `Secure` (`public_url` is https).
    pub secure_cookie: bool,
    /// `None` when its environment variable is not set here (see the file doc).
    pub signing_key: Option<SecretSlice<u8>>,
    /// Where the key comes from (for messages; never the key).
    pub signing_key_ref: SecretRef,
    pub link_ttl: Duration,
    pub verify_user: Option<VerifyUser>,
    /// The connectable credentials, by name.
    pub credentials: BTreeMap<String, Arc<Connectable>>,
}

impl ConnectConfig {
    /// `{public_url}/callback`: the one redirect URI to register with every provider.
    pub fn redirect_uri(&self) -> String {
        format!("{}/callback", self.public_url)
    }
}

/// `connect.verify_user`: the IdP the browser user signs in at first.
#[derive(Debug, Clone)]
pub struct VerifyUser {
    pub issuer: String,
    pub client_id: SecretRef,
    pub client_secret: Option<SecretRef>,
    pub user_claim: String,
}

/// A connectable credential's OAuth app.
#[derive(Debug)]
pub struct Connectable {
    pub authorize_url: String,
    /// Token endpoint, client and the scopes to ask for.
    pub client: OAuthClient,
    pub authorize_params: Vec<(String, String)>,
}

/// Validate an `oauth:` block at `at`: its client, and what makes it connectable.
pub(super) fn oauth(
    p: &mut Problems,
    at: &str,
    raw: &RawOAuth,
    base: &Path,
    have_vault: bool,
) -> Option<(OAuthClient, Option<Connectable>)> {
    let Some(token_url) = raw.token_url.clone() else {
        p.push(
            format!("{at}.token_url"),
            "missing: an `oauth:` block needs `token_url`",
        );
        return None;
    };
    check_url(p, &format!("{at}.token_url"), &token_url);
    let Some(id) = &raw.client_id else {
        p.push(
            format!("{at}.client_id"),
            "missing: an `oauth:` block needs `client_id`",
        );
        return None;
    };
    let client = OAuthClient {
        token_url,
        client_id: secret_ref(p, &format!("{at}.client_id"), id, base, have_vault),
        client_secret: raw
            .client_secret
            .as_ref()
            .map(|s| secret_ref(p, &format!("{at}.client_secret"), s, base, have_vault)),
        scopes: raw.scopes.clone().unwrap_or_default(),
        client_auth: client_auth(p, &format!("{at}.client_auth"), raw.client_auth.as_ref()),
    };
    let reserved = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "nonce",
    ];
    let mut authorize_params = Vec::new();
    for (k, v) in raw.authorize_params.iter().flatten() {
        if reserved.contains(&k.as_str()) {
            p.push(
                format!("{at}.authorize_params.{k}"),
                "is set by sidekey itself and cannot be overridden",
            );
        }
        authorize_params.push((k.clone(), v.clone()));
    }
    let connectable = match &raw.authorize_url {
        Some(u) => {
            check_url(p, &format!("{at}.authorize_url"), u);
            Some(Connectable {
                authorize_url: u.clone(),
                client: client.clone(),
                authorize_params,
            })
        }
        None => {
            if !authorize_params.is_empty() {
                p.push(
                    format!("{at}.authorize_params"),
                    "only used with `authorize_url`",
                );
            }
            None
        }
    };
    Some((client, connectable))
}

/// Validate `connect:` given the connectable credentials found.
pub(super) fn connect(
    p: &mut Problems,
    raw: Option<RawConnect>,
    base: &Path,
    have_vault: bool,
    credentials: BTreeMap<String, Arc<Connectable>>,
) -> Option<ConnectConfig> {
    let Some(raw) = raw else {
        for name in credentials.keys() {
            p.push(
                format!("credentials.{name}.oauth.authorize_url"),
                "a connectable credential needs `connect.public_url` (and `connect.signing_key`)",
            );
        }
        return None;
    };
    let listen = raw.listen.as_deref().and_then(|l| {
        l.parse::<SocketAddr>()
            .map_err(|_| {
                p.push(
                    "connect.listen",
                    format!("`{l}` is not an address like 127.0.0.1:15091"),
                )
            })
            .ok()
    });
    let public_url = match raw.public_url {
        Some(u) => {
            let trimmed = u.trim_end_matches('/').to_string();
            let uri = trimmed.parse::<http::Uri>().ok();
            let plain = uri.as_ref().is_some_and(|u| {
                u.host().is_some() && u.query().is_none() && matches!(u.path(), "" | "/")
            });
            if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) || !plain {
                p.push(
                    "connect.public_url",
                    format!("`{u}` must be an http(s) origin like https://agents.example.com (no path or query)"),
                );
            }
            trimmed
        }
        None => {
            let which: Vec<&str> = credentials.keys().map(String::as_str).collect();
            p.push(
                "connect.public_url",
                if which.is_empty() {
                    "missing: the base URL browsers reach the connect pages at".to_string()
                } else {
                    format!(
                        "missing: needed by the connectable credential(s) {}",
                        which.join(", ")
                    )
                },
            );
            String::new()
        }
    };
    let (signing_key, signing_key_ref) = signing_key(p, raw.signing_key.as_ref(), base);
    let link_ttl = p.duration(
        "connect.link_ttl",
        raw.link_ttl.as_deref(),
        DEFAULT_LINK_TTL,
    );
    if link_ttl.is_zero() {
        p.push("connect.link_ttl", "must be longer than zero");
    }
    let verify_user = raw.verify_user.map(|v| {
        let at = "connect.verify_user";
        if v.issuer.parse::<http::Uri>().is_err()
            || !(v.issuer.starts_with("http://") || v.issuer.starts_with("https://"))
        {
            p.push(
                format!("{at}.issuer"),
                format!("`{}` is not an http(s) URL", v.issuer),
            );
        }
        VerifyUser {
            issuer: v.issuer.trim_end_matches('/').to_string(),
            client_id: secret_ref(
                p,
                &format!("{at}.client_id"),
                &v.client_id,
                base,
                have_vault,
            ),
            client_secret: v
                .client_secret
                .as_ref()
                .map(|s| secret_ref(p, &format!("{at}.client_secret"), s, base, have_vault)),
            user_claim: v.user_claim.unwrap_or_else(|| "sub".into()),
        }
    });
    Some(ConnectConfig {
        listen,
        secure_cookie: public_url.starts_with("https://"),
        public_url,
        signing_key,
        signing_key_ref,
        link_ttl,
        verify_user,
        credentials,
    })
}

/// Read the signing key now (env or file), refusing a short one or an unreadable file.
fn signing_key(
    p: &mut Problems,
    raw: Option<&RawSecretRef>,
    base: &Path,
) -> (Option<SecretSlice<u8>>, SecretRef) {
    let at = "connect.signing_key";
    let none = SecretRef::Env(String::new());
    let Some(raw) = raw else {
        p.push(
            at,
            "missing: `{env: NAME}` or `{file: PATH}` with at least 32 bytes",
        );
        return (None, none);
    };
    if raw.vault.is_some() {
        p.push(
            at,
            "must be `{env: NAME}` or `{file: PATH}`: it is read when the config loads",
        );
        return (None, none);
    }
    let r = secret_ref(p, at, raw, base, false);
    let key = match &r {
        SecretRef::Env(name) => match std::env::var(name) {
            Ok(v) => v.trim().as_bytes().to_vec(),
            Err(_) => return (None, r),
        },
        SecretRef::File(path) => match std::fs::read(path) {
            Ok(v) => v.trim_ascii().to_vec(),
            Err(e) => {
                p.push(at, format!("cannot read {}: {}", path.display(), e.kind()));
                return (None, r);
            }
        },
        SecretRef::Vault { .. } => return (None, r),
    };
    if key.len() < MIN_SIGNING_KEY {
        p.push(
            at,
            format!(
                "the key is {} bytes; at least {MIN_SIGNING_KEY} are needed",
                key.len()
            ),
        );
    }
    (Some(SecretSlice::from(key)), r)
}

impl super::Config {
    /// Problems that only matter where sidekey serves (`run`, `connect`, a reload):
    /// a connect signing key whose environment variable is not set here.
    pub fn runtime_problems(&self) -> Vec<super::ConfigError> {
        match &self.connect {
            Some(c) if c.signing_key.is_none() => {
                let what = match &c.signing_key_ref {
                    SecretRef::Env(name) => format!("environment variable {name} is not set"),
                    _ => "the key cannot be read".into(),
                };
                vec![super::ConfigError {
                    path: "connect.signing_key".into(),
                    message: what,
                }]
            }
            _ => Vec::new(),
        }
    }
}
