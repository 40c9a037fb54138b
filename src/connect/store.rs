//! Where a completed connect puts the user's tokens: the credential's own source.
//!
//! The token map is the one every reader understands (`Token::from_map`):
//! `access_token`, `refresh_token`, `expires_at` (RFC 3339), `scopes`.
//! * `source: vault`: a KV v2 write at the credential's path with check-and-set on the
//!   version just read (0 when there is none), so a concurrent write (another connect,
//!   a sidecar's refresh write-back) is never silently overwritten: on a conflict the
//!   write is retried on the newer version, since a fresh connect supersedes it.
//! * `source: file`: the same map as JSON at the path template, written to a temporary
//!   file created with mode 0600 in the same folder, synced, then renamed over the
//!   target, so a reader sees the old file or the new one, never a part.

use std::io::Write;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use crate::config::{CredentialSpec, SourceSpec};
use crate::credentials::{Kv, KvError, SecretMap, Token, format_expiry, template};

/// Check-and-set attempts before giving up on a path that keeps changing.
const CAS_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the user id cannot name a storage path")]
    BadUser,
    #[error("Vault is not configured")]
    NoVault,
    #[error("Vault: {0}")]
    Vault(KvError),
    #[error("cannot write the credential file: {0}")]
    File(std::io::ErrorKind),
    #[error("the credential's source cannot store connected tokens")]
    Unsupported,
}

/// The token map a reader of this credential understands. Holds secrets.
pub fn token_map(token: &Token) -> SecretMap {
    let mut m = SecretMap::new();
    m.insert(
        "access_token".into(),
        token.access_token.expose_secret().into(),
    );
    if let Some(r) = &token.refresh_token {
        m.insert("refresh_token".into(), r.expose_secret().into());
    }
    if let Some(e) = token.expires_at {
        m.insert("expires_at".into(), format_expiry(e).into());
    }
    m.insert(
        "scopes".into(),
        serde_json::Value::Array(token.scopes.iter().map(|s| s.as_str().into()).collect()),
    );
    m
}

/// Store `token` as `user`'s secret of `spec`; where it went (for the log).
pub async fn save(
    kv: Option<&dyn Kv>,
    spec: &CredentialSpec,
    user: &str,
    token: &Token,
) -> Result<String, StoreError> {
    match &spec.source {
        SourceSpec::Vault { path, .. } => {
            let kv = kv.ok_or(StoreError::NoVault)?;
            let path = template::fill(path, Some(user)).ok_or(StoreError::BadUser)?;
            save_vault(kv, &path, token_map(token)).await?;
            Ok(path)
        }
        SourceSpec::File { template: t } => {
            let path = template::fill(&t.to_string_lossy(), Some(user))
                .map(PathBuf::from)
                .ok_or(StoreError::BadUser)?;
            let body = serde_json::Value::Object(token_map(token)).to_string();
            let p = path.clone();
            tokio::task::spawn_blocking(move || write_atomic(&p, body.as_bytes()))
                .await
                .map_err(|_| StoreError::File(std::io::ErrorKind::Other))?
                .map_err(|e| StoreError::File(e.kind()))?;
            Ok(path.display().to_string())
        }
        SourceSpec::Env { .. }
        | SourceSpec::ClientCredentials(_)
        | SourceSpec::GithubApp(_)
        | SourceSpec::GoogleServiceAccount(_)
        | SourceSpec::TokenExchange(_) => Err(StoreError::Unsupported),
    }
}

async fn save_vault(kv: &dyn Kv, path: &str, data: SecretMap) -> Result<(), StoreError> {
    let mut last = KvError::CasMismatch;
    for _ in 0..CAS_ATTEMPTS {
        let version = match kv.read(path).await {
            Ok(v) => v.version,
            Err(KvError::NotFound) => 0,
            Err(e) => return Err(StoreError::Vault(e)),
        };
        match kv.write_cas(path, data.clone(), version).await {
            Ok(_) => return Ok(()),
            Err(KvError::CasMismatch) => last = KvError::CasMismatch,
            Err(e) => return Err(StoreError::Vault(e)),
        }
    }
    Err(StoreError::Vault(last))
}

/// Write `data` to `path` atomically with mode 0600 (parent folders created 0700).
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", super::flow::random(9)));
    let result = (|| {
        let mut f = open_private(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn open_private(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
}

#[cfg(not(unix))]
fn open_private(p: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(p)
}

#[cfg(unix)]
fn create_private_dir(d: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if d.as_os_str().is_empty() || d.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(d)
}

#[cfg(not(unix))]
fn create_private_dir(d: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[cfg(unix)]
    #[tokio::test]
    async fn file_tokens_are_written_whole_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spec = CredentialSpec::new(
            "notion",
            SourceSpec::File {
                template: dir.path().join("tokens/{user}.json"),
            },
            None,
            None,
            Duration::from_secs(60),
        );
        let mut t = Token::bare("tok-1".into());
        t.scopes = vec!["read_content".into()];
        let at = save(None, &spec, "a/b", &t).await.unwrap();
        assert!(at.ends_with("tokens/a%2Fb.json"), "{at}");
        let meta = std::fs::metadata(&at).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&at).unwrap()).unwrap();
        assert_eq!(v["access_token"], "tok-1");
        assert_eq!(v["scopes"][0], "read_content");
        save(None, &spec, "a/b", &Token::bare("tok-2".into()))
            .await
            .unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path().join("tokens"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }
}
