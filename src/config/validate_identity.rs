//! Validation of `identity:` (trusted or jwt) and of the route `allow:` lists that
//! depend on it, each problem named by its YAML path.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use http::HeaderName;

use super::raw::{RawIdentity, RawJwt};
use super::validate::{Problems, resolve_path};
use super::{IdentityConfig, IdentityMode, JwtConfig, RouteSpec};

/// Algorithms a JWT may be signed with. HMAC and `none` are never among them.
pub const KNOWN_ALGORITHMS: [&str; 7] = [
    "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];
/// Most clock skew tolerated.
const MAX_LEEWAY_SECONDS: u64 = 300;
/// Least time between two JWKS loads: protects the IdP from unknown-`kid` floods.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

pub(super) fn identity(p: &mut Problems, raw: Option<RawIdentity>, base: &Path) -> IdentityConfig {
    let raw = raw.unwrap_or(RawIdentity {
        header: None,
        mode: None,
        jwt: None,
    });
    let header_text = raw.header.as_deref().unwrap_or("x-sidekey-user");
    let header = HeaderName::try_from(header_text.to_ascii_lowercase()).unwrap_or_else(|_| {
        p.push(
            "identity.header",
            format!("`{header_text}` is not a valid header name"),
        );
        HeaderName::from_static("x-sidekey-user")
    });
    let mode = match (raw.mode.as_deref(), raw.jwt) {
        (None | Some("trusted"), None) => IdentityMode::Trusted,
        (None | Some("trusted"), Some(_)) => {
            p.push("identity.jwt", "only used with `mode: jwt`");
            IdentityMode::Trusted
        }
        (Some("jwt"), None) => {
            p.push(
                "identity.jwt",
                "`mode: jwt` needs a `jwt:` block with jwks_url or jwks_file",
            );
            IdentityMode::Trusted
        }
        (Some("jwt"), Some(j)) => IdentityMode::Jwt(jwt(p, j, base)),
        (Some(other), _) => {
            p.push(
                "identity.mode",
                format!("unknown mode `{other}` (expected trusted or jwt)"),
            );
            IdentityMode::Trusted
        }
    };
    IdentityConfig { header, mode }
}

fn jwt(p: &mut Problems, j: RawJwt, base: &Path) -> JwtConfig {
    match (&j.jwks_url, &j.jwks_file) {
        (None, None) => p.push("identity.jwt", "needs `jwks_url` or `jwks_file`"),
        (Some(_), Some(_)) => p.push("identity.jwt", "set only one of `jwks_url` and `jwks_file`"),
        (Some(url), None) => {
            if let Err(why) = check_jwks_url(url) {
                p.push("identity.jwt.jwks_url", why);
            }
        }
        (None, Some(_)) => {}
    }
    if j.issuer.as_deref().is_some_and(|i| i.trim().is_empty()) {
        p.push(
            "identity.jwt.issuer",
            "must not be empty (leave it out to accept any issuer)",
        );
    }
    let audiences = j.audiences.unwrap_or_default();
    for (i, a) in audiences.iter().enumerate() {
        if a.trim().is_empty() {
            p.push(format!("identity.jwt.audiences[{i}]"), "must not be empty");
        }
    }
    let user_claim = j.user_claim.unwrap_or_else(|| "sub".into());
    if user_claim.trim().is_empty() {
        p.push("identity.jwt.user_claim", "must not be empty");
    }
    let groups_claim = j.groups_claim.unwrap_or_else(|| "groups".into());
    if groups_claim.trim().is_empty() {
        p.push("identity.jwt.groups_claim", "must not be empty");
    }
    let leeway_seconds = j.leeway_seconds.unwrap_or(30);
    if leeway_seconds > MAX_LEEWAY_SECONDS {
        p.push(
            "identity.jwt.leeway_seconds",
            format!("at most {MAX_LEEWAY_SECONDS}"),
        );
    }
    let algorithms = j
        .algorithms
        .unwrap_or_else(|| vec!["RS256".into(), "ES256".into(), "EdDSA".into()]);
    if algorithms.is_empty() {
        p.push(
            "identity.jwt.algorithms",
            "must list at least one algorithm",
        );
    }
    for (i, a) in algorithms.iter().enumerate() {
        if !KNOWN_ALGORITHMS.contains(&a.as_str()) {
            p.push(
                format!("identity.jwt.algorithms[{i}]"),
                format!(
                    "`{a}` is not allowed (allowed: {})",
                    KNOWN_ALGORITHMS.join(", ")
                ),
            );
        }
    }
    let refresh_interval = p.duration(
        "identity.jwt.refresh_interval",
        j.refresh_interval.as_deref(),
        Duration::from_secs(60),
    );
    if refresh_interval < MIN_REFRESH_INTERVAL {
        p.push("identity.jwt.refresh_interval", "must be at least 1s");
    }
    JwtConfig {
        jwks_url: j.jwks_url,
        jwks_file: j.jwks_file.map(|f| resolve_path(base, &f)),
        issuer: j.issuer,
        audiences,
        user_claim,
        groups_claim: Some(groups_claim),
        leeway_seconds,
        algorithms,
        refresh_interval,
    }
}

/// Keys must come over HTTPS; plain HTTP only from this host (a local IdP or a test).
fn check_jwks_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err("must be https (plain http is allowed for loopback only)".into()),
        _ => Err(format!("`{url}` must be an https:// URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `allow:` lists must let someone through, and groups only exist with JWT identity.
pub(super) fn allow_lists(p: &mut Problems, routes: &[RouteSpec]) {
    for (i, r) in routes.iter().enumerate() {
        let Some(allow) = &r.allow else { continue };
        if allow.users.is_empty() && allow.groups.is_empty() {
            p.push(
                format!("routes[{i}].allow"),
                "lists no users and no groups: nobody could use this route",
            );
        }
        // `allow.groups` under trusted identities can only be met by `allow.users`; the
        // contract's own example does this, so it is a `sidekey check` warning, not an error.
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn problems(identity: &str, routes: &str) -> Vec<String> {
        let text = format!("version: 1\nagent: a\n{identity}\nroutes:\n{routes}");
        let raw = crate::config::parse(&text).expect("parses");
        match super::super::validate::validate(raw, Path::new("/x/sidekey.yaml"), Path::new("/x")) {
            Ok(_) => vec![],
            Err(errs) => errs
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect(),
        }
    }

    const ROUTE: &str = "  - {name: r, match: {host: a.test}, auth: passthrough}\n";

    #[test]
    fn a_good_jwt_block_passes_and_fills_defaults() {
        let id = "identity: {mode: jwt, jwt: {jwks_url: 'https://idp.test/keys', issuer: 'https://idp.test', audiences: [sidekey]}}";
        assert_eq!(problems(id, ROUTE), Vec::<String>::new());
        let id = "identity: {mode: jwt, jwt: {jwks_url: 'http://127.0.0.1:8200/v1/identity/oidc/.well-known/keys'}}";
        assert_eq!(problems(id, ROUTE), Vec::<String>::new());
    }

    #[test]
    fn jwt_mistakes_are_named_by_path() {
        let id = "identity: {mode: jwt, jwt: {jwks_url: 'http://idp.test/keys', jwks_file: k.json, algorithms: [HS256, none], leeway_seconds: 9999, refresh_interval: 10ms, user_claim: ''}}";
        let got = problems(id, ROUTE);
        for want in [
            "identity.jwt: set only one",
            "identity.jwt.algorithms[0]: `HS256` is not allowed",
            "identity.jwt.algorithms[1]: `none` is not allowed",
            "identity.jwt.leeway_seconds: at most 300",
            "identity.jwt.refresh_interval: must be at least 1s",
            "identity.jwt.user_claim: must not be empty",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "missing {want:?} in {got:?}"
            );
        }
        let got = problems(
            "identity: {mode: jwt, jwt: {jwks_url: 'http://idp.test/keys'}}",
            ROUTE,
        );
        assert!(
            got[0].starts_with("identity.jwt.jwks_url: must be https"),
            "{got:?}"
        );
    }

    #[test]
    fn allow_lists_must_admit_someone() {
        let routes = "  - {name: r, match: {host: a.test}, auth: passthrough, allow: {groups: [admins]}}\n  - {name: s, match: {host: b.test}, auth: passthrough, allow: {}}\n";
        let got = problems("identity: {mode: trusted}", routes);
        assert!(
            !got.iter().any(|g| g.starts_with("routes[0]")),
            "groups under trusted mode only warn: {got:?}"
        );
        assert!(
            got.iter()
                .any(|g| g.starts_with("routes[1].allow: lists no users")),
            "{got:?}"
        );
    }
}
