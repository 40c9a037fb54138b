//! Assistant onboarding end to end: users connect their own accounts through the real
//! npm `oidc-provider` (provider and `verify_user` IdP), tokens land in a real OpenBao or
//! in 0600 files, and the next call through any sidecar is injected with them.
//!
//! * `vault_flow`: the production shape (`sidekey connect` + two sidecars on OpenBao),
//!   the measured time from callback to first injected call, refresh after connect.
//! * `browser`: the happy path in real headless Chromium, file source, `sidekey run`.
//! * `failures`: every refusal of the contract stores nothing and says why.
//! * `verify_user`: the IdP sign-in must be the link's user.
//! * `concurrent`: two users' callbacks at once.
//! * `check`: `sidekey check` refusals with YAML paths.

mod browser;
mod check;
mod concurrent;
mod failures;
mod vault_flow;
mod verify_user;

use serde_json::{Value, json};

use crate::openbao::{Upstream, free_port, random_token};
use crate::support::connect::{OidcProvider, Proc, signing_key};

/// The OAuth app the tests register at the provider for `notion-user`.
pub const APP_ID: &str = "notion-app";
/// The `verify_user` client at the same provider.
pub const IDP_CLIENT: &str = "sidekey-connect";

/// One test's provider, secrets and connect port.
pub struct Stack {
    pub provider: OidcProvider,
    pub port: u16,
    pub key: String,
    pub app_secret: String,
    pub idp_secret: String,
}

impl Stack {
    /// A provider whose clients redirect to `http://127.0.0.1:{port}/callback`.
    pub fn start(access_ttl: u64) -> Stack {
        let port = free_port();
        let app_secret = random_token("app-secret");
        let idp_secret = random_token("idp-secret");
        let redirect = format!("http://127.0.0.1:{port}/callback");
        let provider = OidcProvider::start(
            json!([
                {"client_id": APP_ID, "client_secret": app_secret, "redirect_uris": [redirect]},
                {"client_id": IDP_CLIENT, "client_secret": idp_secret, "redirect_uris": [redirect]},
            ]),
            access_ttl,
        );
        Stack {
            provider,
            port,
            key: signing_key(),
            app_secret,
            idp_secret,
        }
    }

    pub fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment every sidekey of this stack runs with.
    pub fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut v = vec![
            ("SIDEKEY_CONNECT_KEY", self.key.as_str()),
            ("NOTION_CLIENT_ID", APP_ID),
            ("IDP_CLIENT_ID", IDP_CLIENT),
            ("NOTION_CLIENT_SECRET", self.app_secret.as_str()),
            ("IDP_CLIENT_SECRET", self.idp_secret.as_str()),
        ];
        v.extend_from_slice(extra);
        v
    }

    /// The `connect:` block; `listen` adds `connect.listen`, `extra` more keys (indented).
    pub fn connect_yaml(&self, listen: bool, extra: &str) -> String {
        let listen = if listen {
            format!("  listen: 127.0.0.1:{}\n", self.port)
        } else {
            String::new()
        };
        format!(
            "connect:\n{listen}  public_url: {}\n  signing_key: {{env: SIDEKEY_CONNECT_KEY}}\n{extra}",
            self.public_url()
        )
    }

    /// `verify_user:` for the `connect:` block, against this provider.
    pub fn verify_user_yaml(&self) -> String {
        format!(
            "  verify_user:\n    issuer: {}\n    client_id: {{env: IDP_CLIENT_ID}}\n    client_secret: {{env: IDP_CLIENT_SECRET}}\n",
            self.provider.issuer
        )
    }

    /// The `oauth:` block of `notion-user` (token endpoint overridable).
    pub fn oauth_yaml(&self, token_url: Option<&str>) -> String {
        let token = token_url
            .map(String::from)
            .unwrap_or_else(|| format!("{}/token", self.provider.issuer));
        format!(
            "    oauth:\n      authorize_url: {}/auth\n      token_url: {token}\n      client_id: {{env: NOTION_CLIENT_ID}}\n      client_secret: {{env: NOTION_CLIENT_SECRET}}\n      scopes: [read_content]\n",
            self.provider.issuer
        )
    }
}

/// A whole config: `connect` block, one `notion-user` credential (`source` lines given),
/// one assistant route to `api.test` on `upstream`, and optional `vault:` lines.
pub fn config(
    connect: &str,
    source: &str,
    oauth: &str,
    upstream: &Upstream,
    vault: &str,
) -> String {
    format!(
        "version: 1\nagent: connect-agent\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n\
         upstreams:\n  api.test: {}\n{vault}{connect}credentials:\n  notion-user:\n{source}{oauth}\
         routes:\n  - name: notion\n    match: {{host: api.test}}\n    auth: assistant\n    credential: notion-user\n",
        upstream.addr
    )
}

/// Ask `sk` for `user`'s call: it must be `credential_missing` with a signed link; the link.
pub async fn missing_link(sk: &Proc, stack: &Stack, user: &str) -> String {
    let r = sk.get(user, "http://api.test/v1/pages").await;
    assert_eq!(r.status, 401, "{}", r.body);
    let body = r.json();
    assert_eq!(body["error"], "credential_missing", "{body}");
    let url = body["connect_url"]
        .as_str()
        .expect("connect_url")
        .to_string();
    let prefix = format!("{}/connect/notion-user?t=", stack.public_url());
    assert!(url.starts_with(&prefix), "{url}");
    url
}

/// The page a flow ended on must say "connected" for this credential and user.
pub fn assert_connected_page(page: &Value, user: &str) {
    assert_eq!(page["status"], 200, "{page}");
    let body = page["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("data-sidekey-connect=\"connected\""),
        "{body}"
    );
    assert!(
        body.contains("notion-user") && body.contains(user),
        "{body}"
    );
    assert_security_headers(&page["headers"]);
}

/// The contract's headers on a connect page (`headers` as lower-case JSON keys).
pub fn assert_security_headers(h: &Value) {
    assert_eq!(h["cache-control"], "no-store", "{h}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{h}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{h}");
    let csp = h["content-security-policy"].as_str().unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
}
