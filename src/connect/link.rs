//! Signed connect links: `LINK` in `{public_url}/connect/{credential}?t=LINK`.
//!
//! A link is `base64url(user) "." expiry "." base64url(mac)`, where `expiry` is unix
//! seconds and `mac` is HMAC-SHA256 with `connect.signing_key` over a domain tag, the
//! credential name, the user and the expiry, each length-prefixed so no two different
//! triples ever sign the same bytes. A link therefore works only for the user and the
//! credential it was minted for, and only until it expires. The MAC is checked first
//! (in constant time) and the expiry second, so a link with an edited expiry is
//! reported as tampered, not as expired.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

/// Tag that keeps these MACs apart from anything else the key might ever sign.
const DOMAIN: &[u8] = b"sidekey-connect-link-v1";
/// Longest link accepted (a user id is at most 256 bytes).
const MAX_LINK: usize = 1024;

/// Why a link was refused: the text the 400 page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("The link is missing or malformed")]
    Malformed,
    #[error("The link was altered, or was not made for this account")]
    Tampered,
    #[error("The link has expired")]
    Expired,
}

/// What a valid link grants: connecting `credential` for `user`.
#[derive(Clone, PartialEq, Eq)]
pub struct Link {
    pub user: String,
    pub expires: u64,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("user", &self.user)
            .field("expires", &self.expires)
            .finish()
    }
}

fn mac(key: &SecretSlice<u8>, credential: &str, user: &str, expires: u64) -> Hmac<Sha256> {
    // A key of any length is valid for HMAC; the config demands at least 32 bytes.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in [DOMAIN, credential.as_bytes(), user.as_bytes()] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part);
    }
    m.update(&expires.to_be_bytes());
    m
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Mint a link for `user` and `credential`, valid for `ttl` from `now`.
pub fn mint(
    key: &SecretSlice<u8>,
    credential: &str,
    user: &str,
    ttl: Duration,
    now: SystemTime,
) -> String {
    let expires = unix(now) + ttl.as_secs().max(1);
    let tag = mac(key, credential, user, expires).finalize().into_bytes();
    format!(
        "{}.{expires}.{}",
        URL_SAFE_NO_PAD.encode(user),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Check a link for `credential` at `now`.
pub fn verify(
    key: &SecretSlice<u8>,
    credential: &str,
    link: &str,
    now: SystemTime,
) -> Result<Link, LinkError> {
    if link.len() > MAX_LINK {
        return Err(LinkError::Malformed);
    }
    let mut parts = link.split('.');
    let (Some(user), Some(expires), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LinkError::Malformed);
    };
    let user = URL_SAFE_NO_PAD
        .decode(user)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|u| !u.is_empty())
        .ok_or(LinkError::Malformed)?;
    let expires: u64 = expires.parse().map_err(|_| LinkError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| LinkError::Malformed)?;
    mac(key, credential, &user, expires)
        .verify_slice(&tag)
        .map_err(|_| LinkError::Tampered)?;
    if unix(now) >= expires {
        return Err(LinkError::Expired);
    }
    Ok(Link { user, expires })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretSlice<u8> {
        SecretSlice::from(vec![b; 32])
    }

    #[test]
    fn a_link_works_for_its_user_and_credential_until_it_expires() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ttl = Duration::from_secs(600);
        let link = mint(&key(1), "notion", "alice@example.com", ttl, t0);
        let ok = verify(&key(1), "notion", &link, t0 + Duration::from_secs(599)).unwrap();
        assert_eq!(ok.user, "alice@example.com");
        assert_eq!(
            verify(&key(1), "notion", &link, t0 + ttl),
            Err(LinkError::Expired)
        );
        assert_eq!(
            verify(&key(1), "github", &link, t0),
            Err(LinkError::Tampered)
        );
        assert_eq!(
            verify(&key(2), "notion", &link, t0),
            Err(LinkError::Tampered)
        );
    }

    #[test]
    fn edited_links_are_tampered_or_malformed() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let link = mint(&key(1), "notion", "alice", Duration::from_secs(60), t0);
        let parts: Vec<&str> = link.split('.').collect();
        let as_bob = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode("bob"),
            parts[1],
            parts[2]
        );
        assert_eq!(
            verify(&key(1), "notion", &as_bob, t0),
            Err(LinkError::Tampered)
        );
        let later = format!("{}.{}.{}", parts[0], 1_900_000_000u64, parts[2]);
        assert_eq!(
            verify(&key(1), "notion", &later, t0),
            Err(LinkError::Tampered)
        );
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.1.x",
            &format!("{}.x.{}", parts[0], parts[2]),
        ] {
            assert_eq!(
                verify(&key(1), "notion", bad, t0),
                Err(LinkError::Malformed),
                "{bad}"
            );
        }
        // A user and credential that concatenate alike still sign differently.
        let a = mint(&key(1), "ab", "c", Duration::from_secs(60), t0);
        let b = mint(&key(1), "a", "bc", Duration::from_secs(60), t0);
        assert_ne!(a.rsplit('.').next(), b.rsplit('.').next());
    }
}
