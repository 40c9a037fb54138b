//! Credential quarantine: after a refresh fails with `invalid_grant`, that
//! (credential, user) answers `credential_expired` at once, without calling the token
//! endpoint again, until the stored secret changes.
//!
//! The quarantine remembers the KV version the dead grant was read at. Every lookup
//! still reads the stored secret (cheap, and how a change is seen): the same version
//! is answered `Expired` on the spot; any other version (the user reconnected, an
//! operator wrote a new secret, another sidecar refreshed) releases it.
//! [`CredentialStore::invalidate`](super::CredentialStore::invalidate), which a
//! completed connect calls, releases it too. Bounded in size; an evicted entry costs
//! one more token-endpoint call, nothing else.

use std::sync::Arc;

use moka::sync::Cache;

use super::template;
use crate::config::{CredentialSpec, SourceSpec};
use crate::metrics::Metrics;

/// Most quarantined (credential, user) pairs remembered.
const MAX_HELD: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    credential: Arc<str>,
    definition: u64,
    /// The stored secret's path (the user is in it).
    path: String,
}

impl Key {
    fn new(spec: &CredentialSpec, path: &str) -> Self {
        Key {
            credential: spec.name.clone(),
            definition: spec.fingerprint,
            path: path.to_string(),
        }
    }
}

pub(crate) struct Quarantine {
    /// The stored version whose grant was found dead.
    held: Cache<Key, u64>,
}

impl Quarantine {
    pub(crate) fn new() -> Self {
        Quarantine {
            held: Cache::builder().max_capacity(MAX_HELD).build(),
        }
    }

    /// Whether the secret at `path`, read at `version`, is the one whose grant died.
    /// A different version releases the quarantine.
    pub(crate) fn holds(&self, spec: &CredentialSpec, path: &str, version: u64) -> bool {
        let key = Key::new(spec, path);
        match self.held.get(&key) {
            None => false,
            Some(dead) if dead == version => true,
            Some(_) => {
                self.held.invalidate(&key);
                tracing::info!(
                    credential = %spec.name,
                    "stored secret changed; credential released from quarantine"
                );
                false
            }
        }
    }

    /// Quarantine the secret at `path` as read at `version`.
    pub(crate) fn hold(&self, spec: &CredentialSpec, path: &str, version: u64, m: &Metrics) {
        self.held.insert(Key::new(spec, path), version);
        m.credential_quarantined(&spec.name);
        tracing::warn!(
            credential = %spec.name,
            "refresh token rejected (invalid_grant): credential quarantined; this user's calls get credential_expired, without calling the token endpoint, until the stored secret changes (reconnect or a new version)"
        );
    }

    /// Forget any quarantine of `spec` for `user` (a completed connect, an operator's
    /// explicit invalidation).
    pub(crate) fn release(&self, spec: &CredentialSpec, user: Option<&str>) {
        let SourceSpec::Vault { path, .. } = &spec.source else {
            return;
        };
        if let Some(path) = template::fill(path, user) {
            self.held.invalidate(&Key::new(spec, &path));
        }
    }
}
