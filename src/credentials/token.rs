//! The credential value itself, and the secret map it is read from.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};

use crate::proxy::scrub::Secrets;

/// A credential ready to inject. The token is a [`SecretString`]: it redacts itself
/// in `Debug`, is zeroed on drop, and is only read by `expose_secret()` at injection.
#[derive(Debug, Clone)]
pub struct Token {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<SystemTime>,
    pub scopes: Vec<String>,
    /// KV v2 version the token was read at (for check-and-set write-back).
    pub version: Option<u64>,
    /// The response scrubber's patterns for `access_token`, built on first use: one
    /// cached token serves many requests, and building them per request (encodings,
    /// substring searchers) showed in load profiles.
    pub(crate) scan: OnceLock<Secrets>,
}

impl Token {
    pub fn bare(access_token: String) -> Self {
        Token {
            access_token: SecretString::from(access_token),
            refresh_token: None,
            expires_at: None,
            scopes: Vec::new(),
            version: None,
            scan: OnceLock::new(),
        }
    }

    /// What the response must never carry for this token (see [`Secrets`]).
    pub fn secrets(&self) -> &Secrets {
        self.scan
            .get_or_init(|| Secrets::new(self.access_token.expose_secret(), &[]))
    }

    /// Time left before `expires_at` (zero once past); `None` without an expiry.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at
            .map(|e| e.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// Build from a secret map: `access_token` (required), `refresh_token`,
    /// `expires_at` (RFC 3339 or unix seconds), `scopes` (list or space-separated).
    pub fn from_map(map: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let access =
            non_empty_str(map, "access_token").ok_or("secret has no `access_token` string")?;
        let refresh_token =
            non_empty_str(map, "refresh_token").map(|s| SecretString::from(s.to_string()));
        let expires_at = match map.get("expires_at") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(parse_expiry(v).ok_or("`expires_at` is not RFC 3339 or unix seconds")?),
        };
        let scopes = match map.get("scopes") {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect(),
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            _ => Vec::new(),
        };
        Ok(Token {
            refresh_token,
            expires_at,
            scopes,
            ..Token::bare(access.to_string())
        })
    }
}

/// The string at `key`, if it is one and not empty (a stored secret or a token
/// endpoint's response).
pub fn non_empty_str<'a>(
    map: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<&'a str> {
    map.get(key)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

/// `expires_at` as RFC 3339 text, or unix seconds as a number or numeric string.
pub fn parse_expiry(v: &serde_json::Value) -> Option<SystemTime> {
    let secs = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => match s.trim().parse::<f64>() {
            Ok(n) => n,
            Err(_) => {
                let t = time::OffsetDateTime::parse(
                    s.trim(),
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()?;
                t.unix_timestamp() as f64
            }
        },
        _ => return None,
    };
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs_f64(secs))
}

/// RFC 3339 text for a time (for write-back).
pub fn format_expiry(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reads_the_secret_map() {
        let m = serde_json::json!({
            "access_token": "tok-s3cret", "refresh_token": "rt-s3cret",
            "expires_at": "2030-01-01T00:00:00Z", "scopes": "a b"
        });
        let t = Token::from_map(m.as_object().unwrap()).unwrap();
        assert_eq!(t.access_token.expose_secret(), "tok-s3cret");
        assert_eq!(t.scopes, vec!["a", "b"]);
        assert_eq!(
            t.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_893_456_000))
        );
        let unix = serde_json::json!({"access_token": "x", "expires_at": 1_893_456_000});
        assert_eq!(
            Token::from_map(unix.as_object().unwrap())
                .unwrap()
                .expires_at,
            t.expires_at
        );
        assert!(Token::from_map(serde_json::json!({"token": "x"}).as_object().unwrap()).is_err());
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
    }
}
