//! The inject phase: place sidekey's token on the upstream request.
//!
//! This is the only place a bearer token is exposed, and it goes straight into a header
//! value marked sensitive (so HPACK never indexes it) or into the query string. AWS
//! keys are not sent at all: `sigv4.rs` signs the final request with them.

use base64::Engine;
use http::HeaderValue;
use http::header::{AUTHORIZATION, HeaderMap};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use secrecy::ExposeSecret;

use super::scrub::Secrets;
use crate::config::{Inject, RouteSpec};
use crate::credentials::Token;
use crate::error::ProxyError;

/// Characters escaped in a query value.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'%')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'[')
    .add(b']');

/// Apply `inject` to `headers` / `query`; returns the new query for `Inject::Query`.
pub fn apply(
    inject: &Inject,
    token: &Token,
    headers: &mut HeaderMap,
    query: Option<&str>,
) -> Result<Option<String>, ProxyError> {
    let secret = token.access_token.expose_secret();
    let bad = || {
        ProxyError::CredentialStoreUnavailable("stored token is not a valid header value".into())
    };
    match inject {
        Inject::Header {
            name,
            prefix,
            suffix,
        } => {
            let mut v =
                HeaderValue::from_str(&format!("{prefix}{secret}{suffix}")).map_err(|_| bad())?;
            v.set_sensitive(true);
            headers.insert(name.clone(), v);
            Ok(query.map(str::to_string))
        }
        Inject::Basic { username } => {
            let pair = match username {
                Some(u) => format!("{u}:{secret}"),
                None => format!("{secret}:"),
            };
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            let mut v = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| bad())?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
            Ok(query.map(str::to_string))
        }
        // Signed once the upstream request is final (`sigv4.rs`).
        Inject::AwsSigV4(_) => Ok(query.map(str::to_string)),
        Inject::Query { param } => {
            let mut out: Vec<String> = query
                .unwrap_or("")
                .split('&')
                .filter(|kv| !kv.is_empty() && !names_param(kv, param))
                .map(str::to_string)
                .collect();
            out.push(format!(
                "{param}={}",
                utf8_percent_encode(secret, QUERY_VALUE)
            ));
            Ok(Some(out.join("&")))
        }
    }
}

/// Inject `token` as `route` says and prepare the response scrubber for it: returns
/// the upstream query and the [`Secrets`] the response must never carry.
pub fn prepare(
    route: &RouteSpec,
    token: &Token,
    headers: &mut HeaderMap,
    query: Option<&str>,
) -> Result<(Option<String>, Secrets), ProxyError> {
    let query = apply(route.effective_inject(), token, headers, query)?;
    // The response is scrubbed for the secret, which needs an uncompressed body.
    headers.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let sent = route
        .injected_header()
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok());
    // A Basic credential is sent base64-encoded together with the user name: that
    // exact value is one more pattern. Other injections send the token as it is.
    let secrets = match sent.and_then(|v| v.strip_prefix("Basic ")) {
        Some(basic) => Secrets::new(token.access_token.expose_secret(), &[basic]),
        None => token.secrets().clone(),
    };
    Ok((query, secrets))
}

/// Whether the `k=v` pair's key is `param`, comparing the percent-decoded key.
fn names_param(kv: &str, param: &str) -> bool {
    let key = kv.split('=').next().unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(&key.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned();
    decoded == param
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    #[test]
    fn each_form() {
        let t = Token::bare("s3cr3t".into());
        let mut h = HeaderMap::new();
        apply(&Inject::bearer(), &t, &mut h, None).unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer s3cr3t");
        assert!(h[AUTHORIZATION].is_sensitive());
        let mut h = HeaderMap::new();
        let custom = Inject::Header {
            name: HeaderName::from_static("x-api-key"),
            prefix: String::new(),
            suffix: String::new(),
        };
        apply(&custom, &t, &mut h, None).unwrap();
        assert_eq!(h["x-api-key"], "s3cr3t");
        let mut h = HeaderMap::new();
        apply(
            &Inject::Basic {
                username: Some("bot".into()),
            },
            &t,
            &mut h,
            None,
        )
        .unwrap();
        assert_eq!(h[AUTHORIZATION], "Basic Ym90OnMzY3IzdA==");
        let q = apply(
            &Inject::Query {
                param: "api_key".into(),
            },
            &t,
            &mut h,
            Some("a=1&api_key=evil&api%5Fkey=evil2"),
        )
        .unwrap();
        assert_eq!(q.as_deref(), Some("a=1&api_key=s3cr3t"));
    }
}
