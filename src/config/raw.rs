//! Raw serde shapes of the YAML file, exactly as written by the operator.
//!
//! Every struct refuses unknown keys. Nothing here is trusted or cross-checked: that is
//! `validate.rs`'s job, which turns these into the typed [`crate::config::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::names::{Action, ClientAuth, DefaultAction, SourceKind, Word};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub version: u32,
    pub agent: String,
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub default: Option<Word<DefaultAction>>,
    pub identity: Option<RawIdentity>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, String>,
    pub vault: Option<RawVault>,
    #[serde(default)]
    pub credentials: BTreeMap<String, RawCredential>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub timeouts: Option<RawTimeouts>,
    pub limits: Option<RawLimits>,
    pub shutdown_grace: Option<String>,
    pub audit: Option<RawAudit>,
    pub egress: Option<RawEgress>,
    pub connect: Option<RawConnect>,
    pub telemetry: Option<RawTelemetry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub header: Option<String>,
    pub mode: Option<String>,
    pub jwt: Option<RawJwt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub jwks_url: Option<String>,
    pub jwks_file: Option<String>,
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub user_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub leeway_seconds: Option<u64>,
    pub algorithms: Option<Vec<String>>,
    pub refresh_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    pub generate: Option<bool>,
    pub upstream_roots: Option<RawRoots>,
}

/// `upstream_roots: system`, `upstream_roots: /etc/ca.pem` or a list of both.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRoots {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVault {
    pub address: String,
    pub auth: RawVaultAuth,
    pub kv_mount: Option<String>,
    pub ca_cert: Option<String>,
    pub namespace: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVaultAuth {
    pub method: String,
    pub role: Option<String>,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    pub role_id_env: Option<String>,
    pub secret_id_env: Option<String>,
    pub mount: Option<String>,
    pub jwt_file: Option<String>,
}

/// A secret value by reference: exactly one of `env`, `file`, `vault` (+ `field`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretRef {
    pub env: Option<String>,
    pub file: Option<String>,
    pub vault: Option<String>,
    pub field: Option<String>,
}

/// One credential. All source-specific keys are optional here; `validate.rs` checks
/// that each source gets exactly the keys it uses, with a path for each mistake.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub source: Word<SourceKind>,
    pub env: Option<String>,
    pub file: Option<String>,
    pub path: Option<String>,
    pub field: Option<String>,
    pub token_url: Option<String>,
    pub client_id: Option<RawSecretRef>,
    pub client_secret: Option<RawSecretRef>,
    pub scopes: Option<Vec<String>>,
    pub client_auth: Option<Word<ClientAuth>>,
    pub refresh: Option<RawRefresh>,
    pub oauth: Option<RawOAuth>,
    pub connect_url: Option<String>,
    pub inject: Option<RawInject>,
    pub cache_ttl: Option<String>,
    // Minted sources (github_app, google_service_account, token_exchange).
    pub app_id: Option<u64>,
    pub installation_id: Option<u64>,
    pub private_key: Option<RawSecretRef>,
    pub api_url: Option<String>,
    pub permissions: Option<serde_json::Map<String, serde_json::Value>>,
    pub repositories: Option<Vec<String>>,
    pub key: Option<RawSecretRef>,
    pub subject: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub requested_token_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRefresh {
    pub token_url: String,
    pub client_id: RawSecretRef,
    pub client_secret: Option<RawSecretRef>,
    pub client_auth: Option<Word<ClientAuth>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInject {
    pub header: Option<String>,
    pub format: Option<String>,
    pub basic: Option<RawBasic>,
    pub query: Option<String>,
    pub aws_sigv4: Option<RawSigV4>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSigV4 {
    pub region: String,
    pub service: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasic {
    pub username: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub gateway: Option<RawGateway>,
    pub auth: Word<Action>,
    pub credential: Option<String>,
    pub inject: Option<RawInject>,
    pub set_headers: Option<BTreeMap<String, String>>,
    pub allow: Option<RawAllow>,
    pub connect_url: Option<String>,
    pub keep_client_headers: Option<Vec<String>>,
    pub rate: Option<super::rate::RawRate>,
    pub enforce: Option<Word<super::Enforce>>,
    pub mcp: Option<RawMcp>,
}

/// A route's `mcp:` block (validated in `validate_mcp.rs`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    #[serde(default)]
    pub tools: Vec<RawToolRule>,
    pub default: Option<String>,
    pub filter_list: Option<bool>,
    pub pin: Option<RawPin>,
    pub max_body_bytes: Option<RawScalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolRule {
    pub name: String,
    #[serde(default)]
    pub args: BTreeMap<String, RawGlobs>,
    pub action: Option<String>,
    pub allow: Option<RawAllow>,
}

/// One glob or a list of them; YAML numbers are read as their text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawGlobs {
    One(RawScalar),
    Many(Vec<RawScalar>),
}

/// A string or a number, as YAML may write either.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawScalar {
    Int(i64),
    Float(f64),
    Text(String),
}

impl RawScalar {
    pub fn text(&self) -> String {
        match self {
            RawScalar::Int(n) => n.to_string(),
            RawScalar::Float(f) => f.to_string(),
            RawScalar::Text(s) => s.clone(),
        }
    }
}

/// `pin: off | tofu` or `pin: {file: PATH}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPin {
    Mode(String),
    File(RawPinFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPinFile {
    pub file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub host: Option<String>,
    pub path: Option<String>,
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub prefix: String,
    pub upstream: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    pub users: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<String>,
    pub request_headers: Option<String>,
    pub upstream_response: Option<String>,
    pub idle: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_headers: Option<usize>,
    pub replay_body_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
}

/// `connect:`: the connect pages and the links the sidecars mint for them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnect {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub signing_key: Option<RawSecretRef>,
    pub link_ttl: Option<String>,
    pub verify_user: Option<RawVerifyUser>,
}

/// `telemetry: {otlp: {endpoint, headers, timeout, queue_size}, service_name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp: Option<RawOtlp>,
    pub service_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerifyUser {
    pub issuer: String,
    pub client_id: RawSecretRef,
    pub client_secret: Option<RawSecretRef>,
    pub user_claim: Option<String>,
}

/// A credential's `oauth:` block: its OAuth app (refresh, and connect with `authorize_url`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub client_id: Option<RawSecretRef>,
    pub client_secret: Option<RawSecretRef>,
    pub scopes: Option<Vec<String>>,
    pub authorize_params: Option<BTreeMap<String, String>>,
    pub client_auth: Option<Word<ClientAuth>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    pub endpoint: String,
    #[serde(default)]
    pub headers: BTreeMap<String, RawHeaderValue>,
    pub timeout: Option<String>,
    pub queue_size: Option<usize>,
}

/// A header value written out, or a secret reference (`{env: OTLP_KEY}`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawHeaderValue {
    Literal(String),
    Secret(RawSecretRef),
}
