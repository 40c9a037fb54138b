//! Validation of `vault:` and `credentials:`: each source gets exactly its keys.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::raw::{RawCredential, RawSecretRef, RawVault};
use super::validate::{Problems, parse_inject, resolve_path};
use super::{
    ClientAuth, CredentialSpec, OAuthClient, SecretRef, SourceKind, SourceSpec, VaultAuth,
    VaultConfig, Word,
};

/// The source-specific keys each source may carry (besides the common `inject`,
/// `connect_url`, `cache_ttl`).
fn source_keys(kind: SourceKind) -> &'static [&'static str] {
    match kind {
        SourceKind::Env => &["env"],
        SourceKind::File => &["file"],
        SourceKind::Vault => &["path", "refresh"],
        SourceKind::OAuthClientCredentials => &[
            "token_url",
            "client_id",
            "client_secret",
            "scopes",
            "client_auth",
        ],
    }
}

pub(super) fn vault(p: &mut Problems, raw: Option<RawVault>, base: &Path) -> Option<VaultConfig> {
    let raw = raw?;
    if !(raw.address.starts_with("http://") || raw.address.starts_with("https://"))
        || raw
            .address
            .parse::<http::Uri>()
            .map(|u| u.host().is_none())
            .unwrap_or(true)
    {
        p.push(
            "vault.address",
            format!("`{}` must be an http:// or https:// URL", raw.address),
        );
    }
    if let Some(ca) = &raw.ca_cert {
        let path = resolve_path(base, ca);
        if let Err(e) = std::fs::metadata(&path) {
            p.push(
                "vault.ca_cert",
                format!("cannot read {}: {}", path.display(), e.kind()),
            );
        }
    }
    let a = raw.auth;
    let need = |p: &mut Problems, key: &str, v: Option<String>| {
        v.unwrap_or_else(|| {
            p.push(
                format!("vault.auth.{key}"),
                format!("missing: needed by `method: {}`", a.method),
            );
            String::new()
        })
    };
    let auth = match a.method.as_str() {
        "token" => {
            if a.token_env.is_none() && a.token_file.is_none() {
                p.push(
                    "vault.auth",
                    "`method: token` needs `token_env` or `token_file`",
                );
            }
            VaultAuth::Token {
                env: a.token_env.clone(),
                file: a.token_file.as_deref().map(|f| resolve_path(base, f)),
            }
        }
        "approle" => VaultAuth::AppRole {
            mount: a.mount.clone().unwrap_or_else(|| "approle".into()),
            role_id_env: need(p, "role_id_env", a.role_id_env.clone()),
            secret_id_env: need(p, "secret_id_env", a.secret_id_env.clone()),
        },
        "kubernetes" => VaultAuth::Kubernetes {
            mount: a.mount.clone().unwrap_or_else(|| "kubernetes".into()),
            role: need(p, "role", a.role.clone()),
            jwt_file: a
                .jwt_file
                .as_deref()
                .map(|f| resolve_path(base, f))
                .unwrap_or_else(|| "/var/run/secrets/kubernetes.io/serviceaccount/token".into()),
        },
        other => {
            p.push(
                "vault.auth.method",
                format!("unknown method `{other}` (expected token, approle or kubernetes)"),
            );
            VaultAuth::Token {
                env: None,
                file: None,
            }
        }
    };
    let timeout = p.duration(
        "vault.timeout",
        raw.timeout.as_deref(),
        Duration::from_secs(5),
    );
    Some(VaultConfig {
        address: raw.address.trim_end_matches('/').to_string(),
        auth,
        kv_mount: raw
            .kv_mount
            .unwrap_or_else(|| "secret".into())
            .trim_matches('/')
            .to_string(),
        ca_cert: raw.ca_cert.map(|c| resolve_path(base, &c)),
        namespace: raw.namespace,
        timeout,
    })
}

pub(super) fn credentials(
    p: &mut Problems,
    raw: BTreeMap<String, RawCredential>,
    base: &Path,
    have_vault: bool,
) -> BTreeMap<String, Arc<CredentialSpec>> {
    let mut out = BTreeMap::new();
    for (name, c) in raw {
        let at = format!("credentials.{name}");
        if let Some(spec) = credential(p, &at, &name, c, base, have_vault) {
            out.insert(name, Arc::new(spec));
        }
    }
    out
}

fn credential(
    p: &mut Problems,
    at: &str,
    name: &str,
    c: RawCredential,
    base: &Path,
    have_vault: bool,
) -> Option<CredentialSpec> {
    let kind = p.word(&format!("{at}.source"), &c.source)?;
    let present: [(&str, bool); 10] = [
        ("env", c.env.is_some()),
        ("file", c.file.is_some()),
        ("path", c.path.is_some()),
        ("field", c.field.is_some()),
        ("token_url", c.token_url.is_some()),
        ("client_id", c.client_id.is_some()),
        ("client_secret", c.client_secret.is_some()),
        ("scopes", c.scopes.is_some()),
        ("refresh", c.refresh.is_some()),
        ("client_auth", c.client_auth.is_some()),
    ];
    let allowed = source_keys(kind);
    for (key, set) in present {
        if set && !allowed.contains(&key) {
            p.push(
                format!("{at}.{key}"),
                format!("not used by `source: {kind}`"),
            );
        }
    }
    let missing = |p: &mut Problems, key: &str| {
        p.push(
            format!("{at}.{key}"),
            format!("missing: needed by `source: {kind}`"),
        )
    };
    let source = match kind {
        SourceKind::Env => {
            let Some(var) = c.env else {
                missing(p, "env");
                return None;
            };
            if var.contains("{user}") {
                p.push(
                    format!("{at}.env"),
                    "an environment variable cannot be per-user",
                );
            }
            SourceSpec::Env { var }
        }
        SourceKind::File => {
            let Some(f) = c.file else {
                missing(p, "file");
                return None;
            };
            SourceSpec::File {
                template: resolve_path(base, &f),
            }
        }
        SourceKind::Vault => {
            if !have_vault {
                p.push(
                    format!("{at}.source"),
                    "`source: vault` needs a top-level `vault:` block",
                );
            }
            let Some(path) = c.path else {
                missing(p, "path");
                return None;
            };
            check_template(p, &format!("{at}.path"), &path);
            let refresh = c.refresh.map(|r| OAuthClient {
                token_url: r.token_url,
                client_id: secret_ref(
                    p,
                    &format!("{at}.refresh.client_id"),
                    &r.client_id,
                    base,
                    have_vault,
                ),
                client_secret: r.client_secret.as_ref().map(|s| {
                    secret_ref(
                        p,
                        &format!("{at}.refresh.client_secret"),
                        s,
                        base,
                        have_vault,
                    )
                }),
                scopes: vec![],
                client_auth: client_auth(
                    p,
                    &format!("{at}.refresh.client_auth"),
                    r.client_auth.as_ref(),
                ),
            });
            if let Some(r) = &refresh {
                check_url(p, &format!("{at}.refresh.token_url"), &r.token_url);
            }
            SourceSpec::Vault { path, refresh }
        }
        SourceKind::OAuthClientCredentials => {
            let Some(token_url) = c.token_url else {
                missing(p, "token_url");
                return None;
            };
            check_url(p, &format!("{at}.token_url"), &token_url);
            let Some(id) = c.client_id else {
                missing(p, "client_id");
                return None;
            };
            let client_id = secret_ref(p, &format!("{at}.client_id"), &id, base, have_vault);
            let client_secret = c
                .client_secret
                .as_ref()
                .map(|s| secret_ref(p, &format!("{at}.client_secret"), s, base, have_vault));
            if client_secret.is_none() {
                missing(p, "client_secret");
            }
            SourceSpec::ClientCredentials(OAuthClient {
                token_url,
                client_id,
                client_secret,
                scopes: c.scopes.unwrap_or_default(),
                client_auth: client_auth(p, &format!("{at}.client_auth"), c.client_auth.as_ref()),
            })
        }
    };
    let inject = c
        .inject
        .as_ref()
        .and_then(|i| parse_inject(p, &format!("{at}.inject"), i));
    let cache_ttl = p.duration(
        &format!("{at}.cache_ttl"),
        c.cache_ttl.as_deref(),
        Duration::from_secs(300),
    );
    if let Some(u) = &c.connect_url {
        check_url(p, &format!("{at}.connect_url"), u);
    }
    Some(CredentialSpec::new(
        name,
        source,
        inject,
        c.connect_url,
        cache_ttl,
    ))
}

fn check_template(p: &mut Problems, at: &str, t: &str) {
    let stripped = t.replace("{user}", "");
    if stripped.contains(['{', '}']) {
        p.push(at, "the only placeholder is {user}");
    }
}

fn check_url(p: &mut Problems, at: &str, u: &str) {
    if !(u.starts_with("http://") || u.starts_with("https://"))
        || u.parse::<http::Uri>().is_err() && !u.contains("{user}")
    {
        p.push(at, format!("`{u}` is not an http(s) URL"));
    }
}

fn client_auth(p: &mut Problems, at: &str, v: Option<&Word<ClientAuth>>) -> ClientAuth {
    v.and_then(|w| p.word(at, w)).unwrap_or(ClientAuth::Basic)
}

pub(super) fn secret_ref(
    p: &mut Problems,
    at: &str,
    r: &RawSecretRef,
    base: &Path,
    have_vault: bool,
) -> SecretRef {
    let n = [r.env.is_some(), r.file.is_some(), r.vault.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if n != 1 {
        p.push(at, "needs exactly one of `env`, `file` or `vault`");
    }
    if r.field.is_some() && r.vault.is_none() {
        p.push(format!("{at}.field"), "only used with `vault`");
    }
    if let Some(e) = &r.env {
        return SecretRef::Env(e.clone());
    }
    if let Some(f) = &r.file {
        return SecretRef::File(resolve_path(base, f));
    }
    if let Some(v) = &r.vault {
        if !have_vault {
            p.push(format!("{at}.vault"), "needs a top-level `vault:` block");
        }
        let Some(field) = r.field.clone() else {
            p.push(
                format!("{at}.field"),
                "missing: a vault reference names its `field`",
            );
            return SecretRef::Env(String::new());
        };
        return SecretRef::Vault {
            path: v.clone(),
            field,
        };
    }
    SecretRef::Env(String::new())
}
