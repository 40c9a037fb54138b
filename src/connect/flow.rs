//! The flows in progress: one entry per `state` this service issued, bound to the
//! browser that started it by a cookie, with its PKCE verifier (and OIDC nonce).
//!
//! A state is random (256 bits), lives [`FLOW_TTL`], and completes once: [`Flows::take`]
//! removes it when it is accepted. A callback without the right cookie leaves it in
//! place (the browser that owns it may still finish) and is refused; one with an
//! expired or unknown state is refused. Only a SHA-256 of the cookie value is kept. The
//! map is bounded: expired entries are dropped when new ones arrive, and past
//! [`MAX_FLOWS`] the oldest go first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// How long a browser has from the connect link to the provider's callback.
pub const FLOW_TTL: Duration = Duration::from_secs(600);
/// Most flows in progress at once.
const MAX_FLOWS: usize = 10_000;
/// The cookie that binds a flow to its browser.
pub const COOKIE: &str = "sidekey_connect";

/// Which redirect a state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `verify_user`: the browser user signing in at the IdP.
    Login,
    /// The provider whose account is being connected.
    Provider,
}

/// One flow in progress. Its verifier is a secret.
pub struct Pending {
    pub step: Step,
    pub user: String,
    pub credential: Arc<str>,
    pub verifier: SecretString,
    pub nonce: Option<SecretString>,
    cookie: [u8; 32],
    expires: Instant,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("step", &self.step)
            .field("user", &self.user)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// Why a callback's state was refused (the page says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("this sign-in was already completed, or was not started here")]
    Unknown,
    #[error("this sign-in took too long and has expired")]
    Expired,
    #[error("this sign-in was started in another browser (its cookie is missing)")]
    CookieMissing,
    #[error("this sign-in was started in another browser")]
    CookieMismatch,
}

/// `n` random bytes from the operating system, base64url.
pub fn random(n: usize) -> String {
    let mut buf = vec![0u8; n];
    if getrandom::getrandom(&mut buf).is_err() {
        // The OS RNG does not fail on supported systems; never fall back to a weak one.
        panic!("the operating system's random number generator failed");
    }
    URL_SAFE_NO_PAD.encode(buf)
}

/// The S256 PKCE challenge of a verifier (RFC 7636 4.2).
pub fn challenge(verifier: &SecretString) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose_secret().as_bytes()))
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// What a new flow needs from its caller.
pub struct Start {
    pub step: Step,
    pub user: String,
    pub credential: Arc<str>,
    /// The browser's cookie value.
    pub cookie: String,
    pub with_nonce: bool,
}

/// The state, verifier and nonce of a flow just started.
pub struct Started {
    pub state: String,
    pub verifier: SecretString,
    pub nonce: Option<SecretString>,
}

#[derive(Default)]
pub struct Flows {
    map: Mutex<HashMap<String, Pending>>,
}

impl Flows {
    pub fn start(&self, s: Start) -> Started {
        let state = random(32);
        let verifier = SecretString::from(random(32));
        let nonce = s.with_nonce.then(|| SecretString::from(random(32)));
        let pending = Pending {
            step: s.step,
            user: s.user,
            credential: s.credential,
            verifier: verifier.clone(),
            nonce: nonce.clone(),
            cookie: digest(&s.cookie),
            expires: Instant::now() + FLOW_TTL,
        };
        let mut map = lock(&self.map);
        let now = Instant::now();
        map.retain(|_, p| p.expires > now);
        if map.len() >= MAX_FLOWS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, p)| p.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(state.clone(), pending);
        Started {
            state,
            verifier,
            nonce,
        }
    }

    /// Accept `state` from the browser holding `cookie`: the flow, removed; or why not.
    pub fn take(&self, state: &str, cookie: Option<&str>) -> Result<Pending, FlowError> {
        let mut map = lock(&self.map);
        let Some(p) = map.get(state) else {
            return Err(FlowError::Unknown);
        };
        if Instant::now() >= p.expires {
            map.remove(state);
            return Err(FlowError::Expired);
        }
        let Some(cookie) = cookie else {
            return Err(FlowError::CookieMissing);
        };
        let given = digest(cookie);
        // Constant-time compare of the two digests.
        if given
            .iter()
            .zip(p.cookie.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return Err(FlowError::CookieMismatch);
        }
        map.remove(state).ok_or(FlowError::Unknown)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie_value<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(flows: &Flows, cookie: &str) -> Started {
        flows.start(Start {
            step: Step::Provider,
            user: "alice".into(),
            credential: Arc::from("notion"),
            cookie: cookie.into(),
            with_nonce: false,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_completes_once_with_its_cookie_and_before_it_expires() {
        let flows = Flows::default();
        let s = start(&flows, "c1");
        assert_eq!(
            flows.take(&s.state, None).unwrap_err(),
            FlowError::CookieMissing
        );
        assert_eq!(
            flows.take(&s.state, Some("c2")).unwrap_err(),
            FlowError::CookieMismatch
        );
        let p = flows.take(&s.state, Some("c1")).unwrap();
        assert_eq!(p.user, "alice");
        assert_eq!(p.verifier.expose_secret(), s.verifier.expose_secret());
        assert_eq!(
            flows.take(&s.state, Some("c1")).unwrap_err(),
            FlowError::Unknown
        );

        let late = start(&flows, "c1");
        tokio::time::advance(FLOW_TTL).await;
        assert_eq!(
            flows.take(&late.state, Some("c1")).unwrap_err(),
            FlowError::Expired
        );
        assert_eq!(
            flows.take(&late.state, Some("c1")).unwrap_err(),
            FlowError::Unknown
        );
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636_appendix_b() {
        let v = SecretString::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_string());
        assert_eq!(challenge(&v), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_ne!(random(32), random(32));
        assert_eq!(random(32).len(), 43);
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; sidekey_connect=xyz".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie_value(&h, "b"), None);
    }
}
