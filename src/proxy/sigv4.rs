//! `inject: {aws_sigv4: {region, service}}`: AWS Signature Version 4 on the final
//! upstream request, computed by the maintained `aws-sigv4` crate.
//!
//! The credential is an access-key map (`access_key_id`, `secret_access_key`, optional
//! `session_token`; see [`Token::aws`]). Signing happens once the request is what goes
//! out: method, scheme, host (written as the `Host` header, so the signed host is the
//! sent one), path and query as sent, and every header sidekey forwards. The client's
//! own `Authorization`, `X-Amz-Date`, `X-Amz-Content-Sha256` and
//! `X-Amz-Security-Token` are dropped first; sidekey sets them. A body the proxy
//! buffered (within `limits.replay_body_bytes`) is hashed into the signature; a
//! streamed one is signed as `UNSIGNED-PAYLOAD`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningParams, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use secrecy::ExposeSecret;

use crate::config::{Inject, RouteSpec, SigV4};
use crate::credentials::Token;
use crate::error::ProxyError;

/// What the signature covers of the body.
pub enum Payload<'a> {
    /// The whole body, hashed.
    Bytes(&'a [u8]),
    /// A streamed body: `UNSIGNED-PAYLOAD`.
    Unsigned,
}

/// Headers sidekey sets when signing; the client's are removed.
const SIGNING_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
];

/// Forwarded but never signed: headers a proxy or tracer on the way may change or
/// drop (the set botocore leaves out), so that a signature survives them.
const UNSIGNED_HEADERS: [&str; 15] = [
    "authorization",
    "baggage",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "traceparent",
    "tracestate",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

/// Whether `route` signs its requests with SigV4.
pub fn signs(route: Option<&RouteSpec>) -> bool {
    route.is_some_and(|r| matches!(r.effective_inject(), Inject::AwsSigV4(_)))
}

/// Sign `parts` when the route's injection is SigV4 (a no-op otherwise).
pub fn sign_for(
    route: Option<&RouteSpec>,
    token: Option<&Token>,
    parts: &mut Parts,
    payload: Payload<'_>,
) -> Result<(), ProxyError> {
    let (Some(route), Some(token)) = (route, token) else {
        return Ok(());
    };
    match route.effective_inject() {
        Inject::AwsSigV4(sig) => sign_at(sig, token, parts, payload, SystemTime::now()),
        _ => Ok(()),
    }
}

/// The `Host` the HTTP client would send: the host, and the port unless it is the
/// scheme's default (what hyper-util writes when the header is absent).
fn host_header(uri: &http::Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    let value = match uri.port_u16() {
        Some(p) if p != default => format!("{host}:{p}"),
        _ => host.to_string(),
    };
    HeaderValue::from_str(&value).ok()
}

fn failed(why: &str) -> ProxyError {
    ProxyError::BadRequest(format!("cannot sign the request with SigV4: {why}"))
}

/// Sign `parts` as of `now`.
pub fn sign_at(
    sig: &SigV4,
    token: &Token,
    parts: &mut Parts,
    payload: Payload<'_>,
    now: SystemTime,
) -> Result<(), ProxyError> {
    let Some(keys) = &token.aws else {
        return Err(ProxyError::CredentialStoreUnavailable(
            "the credential is not an AWS access-key map (access_key_id, secret_access_key)".into(),
        ));
    };
    for h in SIGNING_HEADERS {
        parts.headers.remove(h);
    }
    if !parts.headers.contains_key(http::header::HOST) {
        let host = host_header(&parts.uri).ok_or_else(|| failed("the upstream URI has no host"))?;
        parts.headers.insert(http::header::HOST, host);
    }
    let identity: Identity = Credentials::new(
        keys.access_key_id.as_str(),
        token.access_token.expose_secret(),
        keys.session_token
            .as_ref()
            .map(|s| s.expose_secret().to_string()),
        None,
        "sidekey",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.excluded_headers = Some(UNSIGNED_HEADERS.iter().map(|h| (*h).into()).collect());
    let params: SigningParams<'_> = v4::SigningParams::builder()
        .identity(&identity)
        .region(&sig.region)
        .name(&sig.service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|_| failed("incomplete signing parameters"))?
        .into();
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (k, v) in &parts.headers {
        let v = v
            .to_str()
            .map_err(|_| failed(&format!("header `{k}` is not visible ASCII")))?;
        headers.push((k.as_str(), v));
    }
    let uri = parts.uri.to_string();
    let body = match payload {
        Payload::Bytes(b) => SignableBody::Bytes(b),
        Payload::Unsigned => SignableBody::UnsignedPayload,
    };
    let signable = SignableRequest::new(parts.method.as_str(), &uri, headers.into_iter(), body)
        .map_err(|_| failed("the request cannot be signed"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|_| failed("the request cannot be signed"))?
        .into_parts();
    let (new_headers, _params) = instructions.into_parts();
    for h in new_headers {
        let name = HeaderName::from_bytes(h.name().as_bytes())
            .map_err(|_| failed("signer produced a bad header name"))?;
        let mut value =
            HeaderValue::from_str(h.value()).map_err(|_| failed("signer produced a bad value"))?;
        // Never indexed by HPACK: the signature and the session token.
        let plain = name == "x-amz-date" || name == "x-amz-content-sha256";
        value.set_sensitive(h.sensitive() || !plain);
        parts.headers.insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::AwsKeys;
    use secrecy::SecretString;
    use std::time::{Duration, UNIX_EPOCH};

    fn token(session: bool) -> Token {
        Token {
            aws: Some(AwsKeys {
                access_key_id: "AKIDEXAMPLE".into(),
                session_token: session.then(|| SecretString::from("sess-token".to_string())),
            }),
            ..Token::bare("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into())
        }
    }

    fn parts() -> Parts {
        let (p, ()) = http::Request::post("http://api.test/model/x/invoke?b=2&a=1")
            .header("authorization", "Bearer client")
            .header("x-amz-date", "20000101T000000Z")
            .header("content-type", "application/json")
            .body(())
            .unwrap()
            .into_parts();
        p
    }

    fn sig() -> SigV4 {
        SigV4 {
            region: "us-east-1".into(),
            service: "bedrock".into(),
        }
    }

    /// 2015-08-30T12:36:00Z, the AWS test suite's date.
    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    #[test]
    fn signs_the_final_request_and_replaces_the_clients_headers() {
        let mut p = parts();
        sign_at(&sig(), &token(true), &mut p, Payload::Bytes(b"{}"), at()).unwrap();
        let h = &p.headers;
        assert_eq!(h["host"], "api.test");
        assert_eq!(h["x-amz-date"], "20150830T123600Z");
        assert_eq!(
            h["x-amz-content-sha256"],
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(h["x-amz-security-token"], "sess-token");
        assert!(h["x-amz-security-token"].is_sensitive());
        assert_eq!(h.get_all("authorization").iter().count(), 1);
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
        ), "{auth}");
        assert!(h["authorization"].is_sensitive());
        // Deterministic: the same request at the same time signs the same.
        let mut again = parts();
        sign_at(
            &sig(),
            &token(true),
            &mut again,
            Payload::Bytes(b"{}"),
            at(),
        )
        .unwrap();
        assert_eq!(again.headers["authorization"], h["authorization"]);
    }

    #[test]
    fn streamed_bodies_are_unsigned_payload_and_bearer_tokens_refused() {
        let mut p = parts();
        sign_at(&sig(), &token(false), &mut p, Payload::Unsigned, at()).unwrap();
        assert_eq!(p.headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
        assert!(p.headers.get("x-amz-security-token").is_none());
        let mut p = parts();
        let err = sign_at(
            &sig(),
            &Token::bare("t".into()),
            &mut p,
            Payload::Unsigned,
            at(),
        );
        assert_eq!(err.unwrap_err().code(), "credential_store_unavailable");
    }
}
