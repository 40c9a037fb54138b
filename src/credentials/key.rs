//! The cache key of a credential lookup, and [`Subject`]: who the lookup is for.
//!
//! A key is the credential (name and definition fingerprint), the user for per-user
//! credentials, and for a token exchange the SHA-256 of the identity token it was
//! made with (a new identity token is a new exchange; the token itself is not kept).

use std::sync::Arc;

use crate::config::{CredentialSpec, SourceSpec};
use crate::identity::{Identity, IdentityToken};

/// Who a lookup is for: the end user and, for a token exchange, their verified JWT.
#[derive(Clone, Copy, Default)]
pub struct Subject<'a> {
    pub user: Option<&'a str>,
    pub token: Option<&'a IdentityToken>,
}

impl<'a> Subject<'a> {
    pub fn of(identity: Option<&'a Identity>) -> Self {
        Subject {
            user: identity.map(|i| &*i.user),
            token: identity.and_then(|i| i.token.as_ref()),
        }
    }

    pub(super) fn user(user: Option<&'a str>) -> Self {
        Subject { user, token: None }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    credential: Arc<str>,
    definition: u64,
    user: Option<Arc<str>>,
    /// SHA-256 of the identity token a token exchange was made with.
    subject_token: Option<[u8; 32]>,
}

impl Key {
    pub(super) fn new(spec: &CredentialSpec, who: Subject<'_>) -> Self {
        let exchange = matches!(spec.source, SourceSpec::TokenExchange(_));
        Key {
            credential: spec.name.clone(),
            definition: spec.fingerprint,
            user: if spec.per_user() {
                who.user.map(Arc::from)
            } else {
                None
            },
            subject_token: who.token.filter(|_| exchange).map(IdentityToken::digest),
        }
    }
}
