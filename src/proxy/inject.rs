//! The inject phase: place sidekey's token on the upstream request.
//!
//! This is the only place a token is exposed, and it goes straight into a header
//! value marked sensitive (so HPACK never indexes it) or into the query string.
//! [`apply`] also says how the secret looked on the wire ([`Injected::sent_forms`]), so
//! the response scrubber masks exactly what was sent, whatever the inject form.
//! AWS keys are never sent: `sigv4.rs` signs the final request with them.

use std::borrow::Cow;

use base64::Engine;
use bytes::Bytes;
use http::HeaderValue;
use http::header::{AUTHORIZATION, HeaderMap};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Inject, RouteSpec};
use crate::credentials::Token;
use crate::error::ProxyError;
use crate::scrub::Secrets;

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

/// What [`apply`] put on the request.
pub struct Injected<'q> {
    /// The upstream query (query injection replaces the parameter; the others pass
    /// the client's query on without a copy).
    pub query: Option<Cow<'q, str>>,
    /// Encodings of the secret as sent that are not the token's own text (the Basic
    /// credential's base64, a query value's percent-encoding): the response must not
    /// carry them either.
    pub sent_forms: Vec<SecretString>,
}

impl std::fmt::Debug for Injected<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Injected({} sent forms, redacted)",
            self.sent_forms.len()
        )
    }
}

/// Apply `inject` to `headers` / `query`.
pub fn apply<'q>(
    inject: &Inject,
    token: &Token,
    headers: &mut HeaderMap,
    query: Option<&'q str>,
) -> Result<Injected<'q>, ProxyError> {
    if token.aws.is_some() && !matches!(inject, Inject::AwsSigV4(_)) {
        // Never send an AWS secret access key as a bearer token or query value.
        return Err(ProxyError::CredentialStoreUnavailable(
            "an AWS access-key map is only used with `inject: {aws_sigv4: ...}`".into(),
        ));
    }
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
            // One buffer, handed to the header value without a copy.
            let mut value = Vec::with_capacity(prefix.len() + secret.len() + suffix.len());
            value.extend_from_slice(prefix.as_bytes());
            value.extend_from_slice(secret.as_bytes());
            value.extend_from_slice(suffix.as_bytes());
            let mut v = HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| bad())?;
            v.set_sensitive(true);
            headers.insert(name.clone(), v);
            Ok(Injected {
                query: query.map(Cow::Borrowed),
                sent_forms: Vec::new(),
            })
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
            Ok(Injected {
                query: query.map(Cow::Borrowed),
                sent_forms: vec![SecretString::from(encoded)],
            })
        }
        // Signed once the upstream request is final (`sigv4.rs`); nothing is sent.
        Inject::AwsSigV4(_) => Ok(Injected {
            query: query.map(Cow::Borrowed),
            sent_forms: vec![],
        }),
        Inject::Query { param } => {
            let mut out: Vec<String> = query
                .unwrap_or("")
                .split('&')
                .filter(|kv| !kv.is_empty() && !names_param(kv, param))
                .map(str::to_string)
                .collect();
            let value = utf8_percent_encode(secret, QUERY_VALUE).to_string();
            out.push(format!("{param}={value}"));
            let sent_forms = if value == secret {
                Vec::new()
            } else {
                vec![SecretString::from(value)]
            };
            Ok(Injected {
                query: Some(Cow::Owned(out.join("&"))),
                sent_forms,
            })
        }
    }
}

/// Inject `token` as `route` says and prepare the response scrubber for it: returns
/// the upstream query and the [`Secrets`] the response must never carry.
pub fn prepare<'q>(
    route: &RouteSpec,
    token: &Token,
    headers: &mut HeaderMap,
    query: Option<&'q str>,
) -> Result<(Option<Cow<'q, str>>, Secrets), ProxyError> {
    let injected = apply(route.effective_inject(), token, headers, query)?;
    // The response is scrubbed for the secret, which needs an uncompressed body.
    headers.insert(
        http::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    // The token's own forms are cached on the token; forms only this injection sent
    // are added to them.
    let secrets = if injected.sent_forms.is_empty() {
        token.secrets().clone()
    } else {
        let extra: Vec<&str> = injected
            .sent_forms
            .iter()
            .map(|s| s.expose_secret())
            .collect();
        Secrets::new(token.access_token.expose_secret(), &extra)
    };
    Ok((injected.query, secrets))
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
    fn aws_keys_are_never_sent_as_a_token() {
        let aws = Token {
            aws: Some(crate::credentials::AwsKeys {
                access_key_id: "AKID".into(),
                session_token: None,
            }),
            ..Token::bare("aws-secret".into())
        };
        let mut h = HeaderMap::new();
        assert!(apply(&Inject::bearer(), &aws, &mut h, None).is_err());
        assert!(h.is_empty());
    }

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
        let sent = apply(
            &Inject::Basic {
                username: Some("bot".into()),
            },
            &t,
            &mut h,
            None,
        )
        .unwrap();
        let forms: Vec<&str> = sent.sent_forms.iter().map(|s| s.expose_secret()).collect();
        assert_eq!(forms, ["Ym90OnMzY3IzdA=="]);
        let q = apply(
            &Inject::Query {
                param: "api_key".into(),
            },
            &t,
            &mut h,
            Some("a=1&api_key=evil&api%5Fkey=evil2"),
        )
        .unwrap();
        assert_eq!(q.query.as_deref(), Some("a=1&api_key=s3cr3t"));
        assert!(q.sent_forms.is_empty());
        let odd = Token::bare("a b".into());
        let q = apply(&Inject::Query { param: "k".into() }, &odd, &mut h, None).unwrap();
        assert_eq!(q.query.as_deref(), Some("k=a%20b"));
        assert_eq!(q.sent_forms.len(), 1);
    }
}
