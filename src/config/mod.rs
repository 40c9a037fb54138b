//! The validated configuration: what sidekey runs on.
//!
//! [`load`] reads a YAML file, parses it into the raw shapes of [`raw`] with the YAML
//! path of any type error, and validates it in one step into [`Config`]. A `Config`
//! that exists is complete and consistent: every route names a known credential, every
//! duration and address parsed, every path is absolute. Nothing later re-checks it.

mod connect;
mod duration;
mod minted;
mod names;
pub(crate) mod rate;
pub(crate) mod raw;
mod startup;
mod telemetry;
mod validate;
mod validate_credentials;
mod validate_identity;
mod validate_mcp;
mod validate_minted;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

pub use connect::{ConnectConfig, Connectable, VerifyUser};
pub use duration::parse_duration;
pub use minted::{GITHUB_API, GithubApp, GoogleServiceAccount, SigV4, TokenExchange};
pub use names::{
    Action, ClientAuth, DefaultAction, Enforce, InjectForm, PinWord, SourceKind, ToolAction,
    ToolDefault, Word,
};
pub use rate::{RateKey, RateSpec};
pub use startup::startup_changes;
pub use telemetry::{HeaderSource, OtlpConfig, TelemetryConfig};

use crate::policy::RouteMatch;

/// One problem found in a config file: where (`routes[3].credential`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem of one file, reported together so one `check` run shows them all.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", self.file.display(), e)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug)]
pub struct Config {
    pub file: PathBuf,
    pub agent: Arc<str>,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub default_action: DefaultAction,
    pub identity: IdentityConfig,
    pub tls: Option<TlsConfig>,
    pub upstream_roots: Roots,
    /// `upstreams:` resolve overrides, keyed by lower-case host name.
    pub upstreams: HashMap<String, SocketAddr>,
    pub vault: Option<VaultConfig>,
    pub credentials: BTreeMap<String, Arc<CredentialSpec>>,
    pub routes: Vec<RouteSpec>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub shutdown_grace: Duration,
    pub audit_file: Option<PathBuf>,
    pub egress_allow: Vec<IpNet>,
    /// `connect:`: assistant onboarding (connect pages and links), when configured.
    pub connect: Option<ConnectConfig>,
    /// `telemetry:`: trace export (read once at start-up; a reload keeps the first).
    pub telemetry: Option<TelemetryConfig>,
    /// The exact text this config was validated from (reload compares against it).
    pub source_text: String,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub header: HeaderName,
    pub mode: IdentityMode,
}

#[derive(Debug, Clone)]
pub enum IdentityMode {
    Trusted,
    Jwt(JwtConfig),
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub jwks_url: Option<String>,
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub user_claim: String,
    pub groups_claim: Option<String>,
    pub leeway_seconds: u64,
    pub algorithms: Vec<String>,
    pub refresh_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// `generate: true`: create the pair on first run when neither file exists
    /// ([`crate::tls::ensure_generated`]); for development.
    pub generate: bool,
}

/// Which roots verify upstream certificates.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    pub system: bool,
    pub bundles: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub address: String,
    pub auth: VaultAuth,
    pub kv_mount: String,
    pub ca_cert: Option<PathBuf>,
    pub namespace: Option<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum VaultAuth {
    Token {
        env: Option<String>,
        file: Option<PathBuf>,
    },
    AppRole {
        mount: String,
        role_id_env: String,
        secret_id_env: String,
    },
    Kubernetes {
        mount: String,
        role: String,
        jwt_file: PathBuf,
    },
}

/// A secret value by reference, resolved when first used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    Vault { path: String, field: String },
}

#[derive(Debug)]
pub struct CredentialSpec {
    pub name: Arc<str>,
    pub source: SourceSpec,
    pub inject: Option<Inject>,
    pub connect_url: Option<String>,
    /// How long a secret without `expires_at` stays cached.
    pub cache_ttl: Duration,
    /// A hash of the definition (source, references, TTL; never a secret value): the
    /// credential cache keys on it, so a reload that redefines a credential is never
    /// served the old definition's cached token.
    pub fingerprint: u64,
}

impl CredentialSpec {
    pub fn new(
        name: &str,
        source: SourceSpec,
        inject: Option<Inject>,
        connect_url: Option<String>,
        cache_ttl: Duration,
    ) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{source:?}|{cache_ttl:?}").hash(&mut h);
        CredentialSpec {
            name: Arc::from(name),
            source,
            inject,
            connect_url,
            cache_ttl,
            fingerprint: h.finish(),
        }
    }

    /// Whether the credential is looked up per end user (`{user}` in its template or
    /// subject; a token exchange always acts for the request's user).
    pub fn per_user(&self) -> bool {
        match &self.source {
            SourceSpec::File { template } => template.to_string_lossy().contains("{user}"),
            SourceSpec::Vault { path, .. } => path.contains("{user}"),
            SourceSpec::GoogleServiceAccount(g) => {
                g.subject.as_deref().is_some_and(|s| s.contains("{user}"))
            }
            SourceSpec::TokenExchange(_) => true,
            SourceSpec::Env { .. }
            | SourceSpec::ClientCredentials(_)
            | SourceSpec::GithubApp(_) => false,
        }
    }

    /// The `source:` word (metrics label, `check` and `explain` output).
    pub fn source_name(&self) -> &'static str {
        self.source.kind().as_str()
    }
}

#[derive(Debug)]
pub enum SourceSpec {
    Env {
        var: String,
    },
    File {
        template: PathBuf,
    },
    Vault {
        path: String,
        refresh: Option<OAuthClient>,
    },
    ClientCredentials(OAuthClient),
    GithubApp(GithubApp),
    GoogleServiceAccount(GoogleServiceAccount),
    TokenExchange(TokenExchange),
}

impl SourceSpec {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceSpec::Env { .. } => SourceKind::Env,
            SourceSpec::File { .. } => SourceKind::File,
            SourceSpec::Vault { .. } => SourceKind::Vault,
            SourceSpec::ClientCredentials(_) => SourceKind::OAuthClientCredentials,
            SourceSpec::GithubApp(_) => SourceKind::GithubApp,
            SourceSpec::GoogleServiceAccount(_) => SourceKind::GoogleServiceAccount,
            SourceSpec::TokenExchange(_) => SourceKind::TokenExchange,
        }
    }
}

/// An OAuth client: where to get tokens and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub token_url: String,
    pub client_id: SecretRef,
    pub client_secret: Option<SecretRef>,
    pub scopes: Vec<String>,
    pub client_auth: ClientAuth,
}

/// How a token is placed on the upstream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inject {
    /// `header: name` with `format` split around its one `{token}`.
    Header {
        name: HeaderName,
        prefix: String,
        suffix: String,
    },
    /// HTTP Basic with the token as password (or as username when none is given).
    Basic { username: Option<String> },
    /// A query parameter, replacing any the client sent.
    Query { param: String },
    /// AWS Signature Version 4 from an access-key map (`Authorization` and `X-Amz-*`).
    AwsSigV4(SigV4),
}

impl Inject {
    pub fn bearer() -> Self {
        Inject::Header {
            name: http::header::AUTHORIZATION,
            prefix: "Bearer ".into(),
            suffix: String::new(),
        }
    }

    /// The header the injection writes (`None` for query injection): the client's
    /// own header of that name is removed first.
    pub fn header_name(&self) -> Option<&HeaderName> {
        static AUTHORIZATION: HeaderName = http::header::AUTHORIZATION;
        match self {
            Inject::Header { name, .. } => Some(name),
            Inject::Basic { .. } | Inject::AwsSigV4(_) => Some(&AUTHORIZATION),
            Inject::Query { .. } => None,
        }
    }
}

/// What the injection looks like, with `<token>` for the secret (`check`, `explain`).
impl fmt::Display for Inject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inject::Header {
                name,
                prefix,
                suffix,
            } => write!(f, "{name}: {prefix}<token>{suffix}"),
            Inject::Basic { username: Some(u) } => write!(f, "authorization: Basic {u}:<token>"),
            Inject::Basic { username: None } => write!(f, "authorization: Basic <token>:"),
            Inject::Query { param } => write!(f, "?{param}=<token>"),
            Inject::AwsSigV4(s) => write!(
                f,
                "aws_sigv4 {}/{} (authorization, x-amz-*)",
                s.region, s.service
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Gateway {
    /// Normalised prefix without a trailing slash, e.g. `/slack`.
    pub prefix: String,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    pub host: String,
    /// Base path of the upstream without a trailing slash (`""` for the root).
    pub base_path: String,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: Arc<str>,
    /// `match:` (for a gateway route: path and methods below the prefix).
    pub matcher: RouteMatch,
    pub gateway: Option<Gateway>,
    pub action: Action,
    pub credential: Option<Arc<CredentialSpec>>,
    pub inject: Option<Inject>,
    pub set_headers: Vec<(HeaderName, http::HeaderValue)>,
    pub allow: Option<Allow>,
    pub connect_url: Option<String>,
    pub keep_client_headers: Vec<HeaderName>,
    /// Set when the upstream is an MCP server (see [`crate::mcp`]).
    pub mcp: Option<Arc<crate::mcp::McpConfig>>,
    /// `rate:`: the call budget enforced by `crate::throttle`.
    pub rate: Option<RateSpec>,
    /// `enforce:`: `report` forwards the calls this route would refuse, uncredentialed.
    pub enforce: Enforce,
}

impl RouteSpec {
    /// The injection in force: the route's, else the credential's, else bearer.
    pub fn effective_inject(&self) -> &Inject {
        static BEARER: std::sync::LazyLock<Inject> = std::sync::LazyLock::new(Inject::bearer);
        self.inject
            .as_ref()
            .or_else(|| self.credential.as_ref()?.inject.as_ref())
            .unwrap_or(&BEARER)
    }

    /// The header the injection writes (`None` for query injection).
    pub fn injected_header(&self) -> Option<&HeaderName> {
        self.effective_inject().header_name()
    }

    pub fn effective_connect_url(&self) -> Option<&str> {
        self.connect_url
            .as_deref()
            .or_else(|| self.credential.as_ref()?.connect_url.as_deref())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Allow {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub request_headers: Duration,
    pub upstream_response: Duration,
    pub idle: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub replay_body_bytes: usize,
}

/// Read, parse and validate a config file.
pub fn load(file: &Path) -> Result<Config, ConfigErrors> {
    let fail = |errors| ConfigErrors {
        file: file.to_path_buf(),
        errors,
    };
    let text = std::fs::read_to_string(file).map_err(|e| {
        fail(vec![ConfigError {
            path: ".".into(),
            message: format!("cannot read file: {e}"),
        }])
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut cfg = from_str(&text, file, base).map_err(fail)?;
    cfg.source_text = text;
    Ok(cfg)
}

/// Parse and validate YAML text; `file` names it in the result, `base` anchors relative paths.
pub fn from_str(text: &str, file: &Path, base: &Path) -> Result<Config, Vec<ConfigError>> {
    let raw = parse(text).map_err(|e| vec![e])?;
    validate::validate(raw, file, base)
}

/// Parse YAML text into the raw shapes, naming the YAML path of the first type error.
pub fn parse(text: &str) -> Result<raw::RawConfig, ConfigError> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = without_path_prefix(&e.inner().to_string(), &path).to_string();
        ConfigError { path, message }
    })
}

/// The YAML parser names the path in its own message too (`routes[0].match: unknown
/// field ...`); the error already leads with the path, so it is said once.
fn without_path_prefix<'m>(message: &'m str, path: &str) -> &'m str {
    match message.split_once(": ") {
        Some((head, rest)) if !head.contains(' ') && path.starts_with(head) => rest,
        _ => message,
    }
}
