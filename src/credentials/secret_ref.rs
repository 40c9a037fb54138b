//! Secret references (`{env: NAME}`, `{file: PATH}`, `{vault: PATH, field: F}`): the one
//! resolver used wherever the config names a secret value by reference (OAuth client
//! ids and secrets). References are resolved when used, never cached here, so a
//! rotated client secret is picked up at the next token request.
//!
//! A reference that cannot be resolved is an operator problem, not the end user's:
//! it maps to `Unavailable`/`Invalid` (503), never to `credential_missing`.

use std::sync::Arc;

use secrecy::SecretString;

use super::CredError;
use super::backend::{Kv, KvError};
use crate::config::SecretRef;

pub struct SecretResolver {
    kv: Option<Arc<dyn Kv>>,
}

impl SecretResolver {
    pub fn new(kv: Option<Arc<dyn Kv>>) -> Self {
        SecretResolver { kv }
    }

    pub async fn resolve(&self, r: &SecretRef) -> Result<SecretString, CredError> {
        match r {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_string())),
                _ => Err(CredError::Invalid(format!(
                    "secret reference: environment variable {name} is not set"
                ))),
            },
            SecretRef::File(path) => match tokio::fs::read_to_string(path).await {
                Ok(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_string())),
                Ok(_) => Err(CredError::Invalid(format!(
                    "secret reference: file {} is empty",
                    path.display()
                ))),
                Err(e) => Err(CredError::Invalid(format!(
                    "secret reference: cannot read file {}: {}",
                    path.display(),
                    e.kind()
                ))),
            },
            SecretRef::Vault { path, field } => {
                let Some(kv) = &self.kv else {
                    return Err(CredError::Invalid(
                        "secret reference to Vault without a `vault:` block".into(),
                    ));
                };
                let secret = kv.read(path).await.map_err(|e| match e {
                    KvError::NotFound => CredError::Invalid(format!("secret reference: no Vault secret at `{path}`")),
                    KvError::Forbidden => {
                        tracing::warn!(path = %path, "Vault policy denies reading a secret reference");
                        CredError::Unavailable(format!("Vault policy denies reading `{path}`"))
                    }
                    other => CredError::Unavailable(other.to_string()),
                })?;
                match secret.data.get(field).and_then(|v| v.as_str()) {
                    Some(v) if !v.is_empty() => Ok(SecretString::from(v.to_string())),
                    _ => Err(CredError::Invalid(format!(
                        "secret reference: Vault secret `{path}` has no string field `{field}`"
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::testing::MemKv;
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn resolves_each_kind() {
        let kv = Arc::new(MemKv::default());
        kv.put("claws/x", serde_json::json!({"client_secret": "s3"}));
        let r = SecretResolver::new(Some(kv));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("id");
        std::fs::write(&f, "file-id\n").unwrap();
        assert_eq!(
            r.resolve(&SecretRef::File(f))
                .await
                .unwrap()
                .expose_secret(),
            "file-id"
        );
        let v = SecretRef::Vault {
            path: "claws/x".into(),
            field: "client_secret".into(),
        };
        assert_eq!(r.resolve(&v).await.unwrap().expose_secret(), "s3");
        let nofield = SecretRef::Vault {
            path: "claws/x".into(),
            field: "nope".into(),
        };
        assert!(matches!(
            r.resolve(&nofield).await,
            Err(CredError::Invalid(_))
        ));
        let unset = SecretRef::Env("SIDEKEY_TEST_SURELY_UNSET_VAR".into());
        assert!(matches!(
            r.resolve(&unset).await,
            Err(CredError::Invalid(_))
        ));
    }
}
