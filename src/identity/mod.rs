//! Who the agent is acting for: the end user's identity, read from one header.
//!
//! `trusted` mode takes the header value as the user id, and only from a loopback peer:
//! anything that can reach the listener from elsewhere could otherwise claim any user.
//! `jwt` mode verifies a signed token (see [`jwt`]). The header itself is always removed
//! before forwarding by `proxy::headers`, whatever happens here.

mod claims;
mod jwks;
pub mod jwt;
mod keys;

use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use crate::config::{IdentityConfig, IdentityMode, Roots};
use crate::error::ProxyError;

/// Longest user id sidekey accepts; longer ones are refused rather than truncated.
pub const MAX_USER_LEN: usize = 256;

/// The end user of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: Arc<str>,
    /// Groups from a verified token; `None` when the mode carries no groups.
    pub groups: Option<Vec<Arc<str>>>,
    /// The verified JWT itself (`mode: jwt`), for `source: token_exchange`.
    pub token: Option<IdentityToken>,
}

/// The verified identity JWT of a request, exactly as it arrived (without `Bearer `),
/// and its `exp`. A bearer credential of the end user: redacted in `Debug`, never
/// logged, only sent to a configured token-exchange endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityToken {
    jwt: Arc<str>,
    exp: u64,
}

impl IdentityToken {
    pub fn new(jwt: &str, exp: u64) -> Self {
        IdentityToken {
            jwt: Arc::from(jwt),
            exp,
        }
    }

    pub fn expose(&self) -> &str {
        &self.jwt
    }

    /// When the token expires (its `exp`).
    pub fn expires_at(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.exp)
    }

    /// SHA-256 of the token: what caches key on instead of the token.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(self.jwt.as_bytes()).into()
    }
}

impl std::fmt::Debug for IdentityToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityToken(redacted)")
    }
}

pub struct Identifier {
    header: HeaderName,
    mode: Mode,
}

enum Mode {
    Trusted,
    Jwt(Box<jwt::JwtVerifier>),
}

impl Identifier {
    /// `roots` verify the IdP's certificate when JWT keys come from a `jwks_url`.
    pub async fn new(cfg: &IdentityConfig, roots: &Roots) -> anyhow::Result<Self> {
        let mode = match &cfg.mode {
            IdentityMode::Trusted => Mode::Trusted,
            IdentityMode::Jwt(j) => Mode::Jwt(Box::new(jwt::JwtVerifier::new(j, roots).await?)),
        };
        Ok(Identifier {
            header: cfg.header.clone(),
            mode,
        })
    }

    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Read the identity from `headers`. `loopback_peer` says whether the connection
    /// came from this host; trusted mode ignores the header otherwise.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        loopback_peer: bool,
    ) -> Result<Option<Identity>, ProxyError> {
        let Some(value) = single_value(headers, &self.header)? else {
            return Ok(None);
        };
        match &self.mode {
            Mode::Trusted => {
                if !loopback_peer {
                    tracing::warn!(
                        header = %self.header,
                        "identity header from a non-loopback peer ignored in trusted mode"
                    );
                    return Ok(None);
                }
                Ok(Some(Identity {
                    user: Arc::from(valid_user(value)?),
                    groups: None,
                    token: None,
                }))
            }
            Mode::Jwt(v) => v.verify(value).await.map(Some),
        }
    }
}

/// The one value of the identity header, refusing repeats that disagree.
fn single_value<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h str>, ProxyError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.any(|v| v != first) {
        return Err(ProxyError::BadRequest(format!(
            "conflicting `{name}` headers"
        )));
    }
    let text = first
        .to_str()
        .map_err(|_| ProxyError::BadRequest(format!("`{name}` is not visible ASCII")))?
        .trim();
    Ok((!text.is_empty()).then_some(text))
}

/// A user id must be short and free of control characters: it reaches paths and logs.
pub fn valid_user(user: &str) -> Result<&str, ProxyError> {
    if user.len() > MAX_USER_LEN {
        return Err(ProxyError::BadRequest(format!(
            "user id longer than {MAX_USER_LEN} bytes"
        )));
    }
    if user.chars().any(char::is_control) {
        return Err(ProxyError::BadRequest(
            "user id has control characters".into(),
        ));
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn trusted() -> Identifier {
        Identifier {
            header: HeaderName::from_static("x-sidekey-user"),
            mode: Mode::Trusted,
        }
    }

    #[tokio::test]
    async fn trusted_header_only_from_loopback() {
        let mut h = HeaderMap::new();
        h.insert("x-sidekey-user", HeaderValue::from_static("alice"));
        let id = trusted().identify(&h, true).await.unwrap().unwrap();
        assert_eq!(&*id.user, "alice");
        assert_eq!(trusted().identify(&h, false).await.unwrap(), None);
    }

    #[test]
    fn identity_tokens_are_redacted() {
        let t = IdentityToken::new("eyJhbGciOi.s3cret.sig", 1);
        let id = Identity {
            user: "alice".into(),
            groups: None,
            token: Some(t.clone()),
        };
        let dbg = format!("{id:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert_eq!(t.expose(), "eyJhbGciOi.s3cret.sig");
        assert_ne!(t.digest(), IdentityToken::new("other", 1).digest());
    }

    #[tokio::test]
    async fn conflicting_headers_are_refused_and_equal_repeats_are_not() {
        let mut h = HeaderMap::new();
        h.append("x-sidekey-user", HeaderValue::from_static("alice"));
        h.append("x-sidekey-user", HeaderValue::from_static("alice"));
        assert!(trusted().identify(&h, true).await.unwrap().is_some());
        h.append("x-sidekey-user", HeaderValue::from_static("bob"));
        let err = trusted().identify(&h, true).await.unwrap_err();
        assert_eq!(err.code(), "bad_request");
    }

    #[tokio::test]
    async fn empty_is_absent_and_overlong_is_refused() {
        let mut h = HeaderMap::new();
        h.insert("x-sidekey-user", HeaderValue::from_static(""));
        assert_eq!(trusted().identify(&h, true).await.unwrap(), None);
        let long = "a".repeat(MAX_USER_LEN + 1);
        h.insert("x-sidekey-user", HeaderValue::from_str(&long).unwrap());
        assert!(trusted().identify(&h, true).await.is_err());
    }
}
