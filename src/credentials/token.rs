//! The credential value itself, and the secret map it is read from.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};

use crate::scrub::Secrets;

/// A credential ready to inject. The token is a [`SecretString`]: it redacts itself
/// in `Debug`, is zeroed on drop, and is only read by `expose_secret()` at injection.
/// For an AWS access-key map, `access_token` is the secret access key (what the
/// scrubber and the same-token checks key on) and [`AwsKeys`] holds the rest.
#[derive(Debug, Clone)]
pub struct Token {
    pub access_token: SecretString,
    /// Set when the secret is an AWS access-key map (SigV4 signing).
    pub aws: Option<AwsKeys>,
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

/// The non-secret half of an AWS key pair and the optional session token.
#[derive(Clone)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub session_token: Option<SecretString>,
}

impl std::fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsKeys(redacted)")
    }
}

impl Token {
    pub fn bare(access_token: String) -> Self {
        Token {
            access_token: SecretString::from(access_token),
            aws: None,
            refresh_token: None,
            expires_at: None,
            scopes: Vec::new(),
            version: None,
            scan: OnceLock::new(),
        }
    }

    /// What the response must never carry for this token (see [`Secrets`]).
    pub fn secrets(&self) -> &Secrets {
        self.scan.get_or_init(|| {
            let session = self.aws.as_ref().and_then(|a| a.session_token.as_ref());
            let extra: Vec<&str> = session.iter().map(|s| s.expose_secret()).collect();
            Secrets::new(self.access_token.expose_secret(), &extra)
        })
    }

    /// Time left before `expires_at` (zero once past); `None` without an expiry.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at
            .map(|e| e.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// Build from a secret map: `access_token` (required), `refresh_token`,
    /// `expires_at` (RFC 3339 or unix seconds), `scopes` (list or space-separated).
    /// An AWS access-key map (`access_key_id`, `secret_access_key`, `session_token`,
    /// `expires_at`) stands in for `access_token`.
    pub fn from_map(map: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        if !map.contains_key("access_token") && map.contains_key("access_key_id") {
            return Self::from_aws_map(map);
        }
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

impl Token {
    fn from_aws_map(map: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let id = non_empty_str(map, "access_key_id").ok_or("`access_key_id` is not a string")?;
        let secret = non_empty_str(map, "secret_access_key")
            .ok_or("an AWS key map needs a `secret_access_key` string")?;
        let expires_at = match map.get("expires_at") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(parse_expiry(v).ok_or("`expires_at` is not RFC 3339 or unix seconds")?),
        };
        Ok(Token {
            aws: Some(AwsKeys {
                access_key_id: id.to_string(),
                session_token: non_empty_str(map, "session_token")
                    .map(|s| SecretString::from(s.to_string())),
            }),
            expires_at,
            ..Token::bare(secret.to_string())
        })
    }
}

/// Whether a JSON object is a secret map (a token map or an AWS access-key map).
pub fn is_secret_map(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    map.contains_key("access_token") || map.contains_key("access_key_id")
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

    #[test]
    fn reads_an_aws_key_map() {
        let m = serde_json::json!({
            "access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalr-s3cret",
            "session_token": "sess-s3cret"
        });
        let t = Token::from_map(m.as_object().unwrap()).unwrap();
        assert_eq!(t.access_token.expose_secret(), "wJalr-s3cret");
        let aws = t.aws.as_ref().unwrap();
        assert_eq!(aws.access_key_id, "AKIDEXAMPLE");
        let mut body = b"x wJalr-s3cret y sess-s3cret z".to_vec();
        assert!(t.secrets().mask(&mut body));
        assert_eq!(&body, b"x ************ y *********** z");
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("AKID"), "{dbg}");
        let no_secret = serde_json::json!({"access_key_id": "AKID"});
        assert!(Token::from_map(no_secret.as_object().unwrap()).is_err());
    }
}
