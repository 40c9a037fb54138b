//! The HTTP side of [`MintEndpoint`]: the OAuth client of `oauth.rs` posting a minted
//! source's [`MintRequest`] (JSON or form body, bearer or client authentication) and
//! reading the JSON answer. Only the status and an RFC 6749 `error` code of a refusal
//! are ever quoted; a body is parsed, never logged.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, header};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};

use super::backend::{
    MintAuth, MintBody, MintEndpoint, MintError, MintRequest, OAuthError, SecretMap,
};
use super::oauth::{HttpTokenEndpoint, basic_header, error_code, form_body};
use crate::config::ClientAuth;

impl HttpTokenEndpoint {
    async fn mint(&self, m: MintRequest) -> Result<SecretMap, MintError> {
        let req = mint_request(m)?;
        let (status, body) = self.round_trip(req).await.map_err(|e| match e {
            OAuthError::Unavailable(m) => MintError::Unavailable(m),
            other => MintError::Unavailable(other.to_string()),
        })?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return match json {
                Some(serde_json::Value::Object(map)) => Ok(map),
                _ => Err(MintError::Refused(format!(
                    "{status} with a body that is not a JSON object"
                ))),
            };
        }
        // Only the status and an RFC 6749 error code are ever quoted.
        let code = json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(|e| e.as_str())
            .map(error_code)
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        match status.as_u16() {
            408 | 429 => Err(MintError::Unavailable(format!(
                "token endpoint answered {status}"
            ))),
            400..=499 => Err(MintError::Refused(format!("{status}{code}"))),
            _ => Err(MintError::Unavailable(format!(
                "token endpoint answered {status}"
            ))),
        }
    }
}

impl MintEndpoint for HttpTokenEndpoint {
    fn post(&self, req: MintRequest) -> BoxFuture<'_, Result<SecretMap, MintError>> {
        Box::pin(self.mint(req))
    }
}

/// The HTTP request for a [`MintRequest`].
fn mint_request(m: MintRequest) -> Result<Request<Full<Bytes>>, MintError> {
    let bad_header = || MintError::Refused("credentials are not a valid header value".into());
    let mut builder = Request::post(&m.url)
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("sidekey/", env!("CARGO_PKG_VERSION")),
        );
    let mut in_form: Vec<(&'static str, SecretString)> = Vec::new();
    match m.auth {
        MintAuth::None => {}
        MintAuth::Bearer(t) => {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose_secret()))
                .map_err(|_| bad_header())?;
            v.set_sensitive(true);
            builder = builder.header(header::AUTHORIZATION, v);
        }
        MintAuth::Client(creds, ClientAuth::Basic) => {
            builder = builder.header(
                header::AUTHORIZATION,
                basic_header(&creds).ok_or_else(bad_header)?,
            );
        }
        MintAuth::Client(creds, ClientAuth::Body | ClientAuth::Post) => {
            in_form.push(("client_id", creds.id));
            in_form.extend(creds.secret.map(|s| ("client_secret", s)));
        }
    }
    let (content_type, body) = match m.body {
        MintBody::Form(mut f) => {
            f.extend(in_form);
            (
                "application/x-www-form-urlencoded",
                form_body(f.iter().map(|(k, v)| (*k, v.expose_secret()))),
            )
        }
        MintBody::Json(j) => ("application/json", j.to_string()),
    };
    let mut req = builder
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| MintError::Refused("the token endpoint URL is not valid".into()))?;
    // A source's own headers replace the defaults (GitHub's media type for `Accept`).
    for (k, v) in m.headers {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            req.headers_mut().insert(k, v);
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::backend::ClientCreds;
    use http_body_util::BodyExt;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_string())
    }

    #[tokio::test]
    async fn request_shapes() {
        let req = mint_request(MintRequest {
            url: "https://gh.test/app/installations/1/access_tokens".into(),
            auth: MintAuth::Bearer(s("app.jwt")),
            body: MintBody::Json(serde_json::json!({"repositories": ["infra"]})),
            headers: vec![("accept", "application/vnd.github+json")],
        })
        .unwrap();
        let h = req.headers();
        assert_eq!(h["authorization"], "Bearer app.jwt");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h.get_all("accept").iter().count(), 1);
        assert_eq!(h["accept"], "application/vnd.github+json");
        assert_eq!(h["content-type"], "application/json");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"repositories":["infra"]}"#);

        let creds = ClientCreds {
            id: s("sts client"),
            secret: Some(s("s&cret")),
        };
        let req = mint_request(MintRequest {
            url: "https://sts.test/token".into(),
            auth: MintAuth::Client(creds, ClientAuth::Body),
            body: MintBody::Form(vec![("subject_token", s("a.b.c"))]),
            headers: vec![],
        })
        .unwrap();
        assert!(req.headers().get("authorization").is_none());
        let body = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            b"subject_token=a.b.c&client_id=sts+client&client_secret=s%26cret"
        );
    }
}
