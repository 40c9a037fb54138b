//! The OAuth 2.0 token endpoint client (RFC 6749): the `refresh_token` grant for
//! `refresh:` and the `client_credentials` grant for `source: oauth_client_credentials`,
//! and for the connect flow the `authorization_code` grant (with PKCE; its OpenID
//! `id_token` kept apart) and plain JSON GETs (OpenID discovery). The same client
//! posts the minted sources' requests (`mint_http.rs`).
//!
//! HTTP goes through the hyper-util legacy client with rustls, verified against the
//! same roots as upstreams (`tls.upstream_roots`). The client authenticates with HTTP
//! Basic (`client_auth: basic`, RFC 6749 2.3.1, form-encoded id and secret) or in the
//! form body (`client_auth: body`). Response bodies are parsed, never logged: only the
//! status and the RFC 6749 `error` code ever reach an error message.

use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};

use super::Token;
use super::backend::{ClientCreds, Grant, OAuthError, TokenEndpoint};
use super::token::non_empty_str;
use crate::config::{ClientAuth, OAuthClient, Roots};

/// Whole exchange with the token endpoint, connect included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token response read.
const MAX_RESPONSE: usize = 64 * 1024;

/// `application/x-www-form-urlencoded` leaves these unescaped.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'*');

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct HttpTokenEndpoint {
    client: Client<Https, Full<Bytes>>,
}

impl HttpTokenEndpoint {
    pub fn new(roots: &Roots) -> anyhow::Result<Self> {
        let mut tls = (*crate::tls::client_config_http1(roots.system, &roots.bundles)?).clone();
        tls.alpn_protocols.clear(); // hyper-rustls sets ALPN itself
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(REQUEST_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(HttpTokenEndpoint { client })
    }

    async fn exchange(
        &self,
        c: &OAuthClient,
        creds: ClientCreds,
        grant: Grant<'_>,
    ) -> Result<Token, OAuthError> {
        let map = self.token_response(c, &creds, &grant).await?;
        parse_token(&map, &grant, c)
    }

    /// The authorization-code grant: the token, and the ID token when the answer has one.
    pub async fn authorization_code(
        &self,
        c: &OAuthClient,
        creds: ClientCreds,
        code: &SecretString,
        redirect_uri: &str,
        verifier: &SecretString,
    ) -> Result<CodeTokens, OAuthError> {
        let grant = Grant::AuthorizationCode {
            code,
            redirect_uri,
            verifier,
        };
        let map = self.token_response(c, &creds, &grant).await?;
        let id_token = non_empty_str(&map, "id_token").map(|s| SecretString::from(s.to_string()));
        Ok(CodeTokens {
            token: parse_token(&map, &grant, c)?,
            id_token,
        })
    }

    /// GET a JSON object (an OpenID discovery document). Errors name the status only.
    pub async fn get_json(
        &self,
        url: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let req = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|_| format!("`{url}` is not a valid URL"))?;
        let (status, json) = self
            .send(req)
            .await
            .map_err(|_| format!("cannot fetch {url}"))?;
        match json {
            Some(serde_json::Value::Object(map)) if status.is_success() => Ok(map),
            _ => Err(format!("{url} answered {status} without a JSON object")),
        }
    }

    /// POST the grant and return the JSON object of a successful answer.
    async fn token_response(
        &self,
        c: &OAuthClient,
        creds: &ClientCreds,
        grant: &Grant<'_>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, OAuthError> {
        let req = build_request(c, creds, grant)?;
        let (status, json) = self.send(req).await?;
        if !status.is_success() {
            let code = json
                .as_ref()
                .and_then(|j| j.get("error"))
                .and_then(|e| e.as_str())
                .map(error_code);
            return Err(match (status.as_u16(), code) {
                (400 | 401, Some(c)) if c == "invalid_grant" => OAuthError::InvalidGrant,
                (400 | 401 | 403, Some(c)) => OAuthError::Rejected(format!("{status} {c}")),
                (400 | 401 | 403, None) => OAuthError::Rejected(status.to_string()),
                _ => OAuthError::Unavailable(format!("token endpoint answered {status}")),
            });
        }
        match json {
            Some(serde_json::Value::Object(map)) => Ok(map),
            _ => Err(OAuthError::Rejected(
                "token response is not a JSON object".into(),
            )),
        }
    }

    /// Send one request (bounded in time and size); the status and the body as JSON.
    async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<(http::StatusCode, Option<serde_json::Value>), OAuthError> {
        let (status, body) = self.round_trip(req).await?;
        Ok((status, serde_json::from_slice(&body).ok()))
    }

    /// Send one request and read the whole (bounded) answer, within [`REQUEST_TIMEOUT`].
    pub(super) async fn round_trip(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<(http::StatusCode, Bytes), OAuthError> {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let resp = self.client.request(req).await.map_err(|e| {
                tracing::debug!(error = %e, "token endpoint request failed");
                OAuthError::Unavailable("cannot reach the token endpoint".into())
            })?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|_| {
                    OAuthError::Unavailable(
                        "token endpoint response unreadable or too large".into(),
                    )
                })?
                .to_bytes();
            Ok::<_, OAuthError>((status, body))
        })
        .await
        .map_err(|_| OAuthError::Unavailable("token endpoint timed out".into()))?
    }
}

/// What the authorization-code grant returned. Both are secrets.
pub struct CodeTokens {
    pub token: Token,
    pub id_token: Option<SecretString>,
}

impl TokenEndpoint for HttpTokenEndpoint {
    fn request<'a>(
        &'a self,
        client: &'a OAuthClient,
        creds: ClientCreds,
        grant: Grant<'a>,
    ) -> BoxFuture<'a, Result<Token, OAuthError>> {
        Box::pin(self.exchange(client, creds, grant))
    }
}

fn build_request(
    c: &OAuthClient,
    creds: &ClientCreds,
    grant: &Grant<'_>,
) -> Result<Request<Full<Bytes>>, OAuthError> {
    let mut form: Vec<(&str, &str)> = Vec::new();
    let scope = c.scopes.join(" ");
    match grant {
        Grant::ClientCredentials => {
            form.push(("grant_type", "client_credentials"));
            if !scope.is_empty() {
                form.push(("scope", &scope));
            }
        }
        Grant::RefreshToken(rt) => {
            form.push(("grant_type", "refresh_token"));
            form.push(("refresh_token", rt.expose_secret()));
        }
        Grant::AuthorizationCode {
            code,
            redirect_uri,
            verifier,
        } => {
            form.push(("grant_type", "authorization_code"));
            form.push(("code", code.expose_secret()));
            form.push(("redirect_uri", redirect_uri));
            form.push(("code_verifier", verifier.expose_secret()));
        }
    }
    let mut builder = Request::post(&c.token_url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json");
    match c.client_auth {
        ClientAuth::Post | ClientAuth::Body => {
            form.push(("client_id", creds.id.expose_secret()));
            if let Some(s) = &creds.secret {
                form.push(("client_secret", s.expose_secret()));
            }
        }
        ClientAuth::Basic => {
            let v = basic_header(creds).ok_or_else(|| {
                OAuthError::Rejected("client credentials are not a valid header".into())
            })?;
            builder = builder.header(header::AUTHORIZATION, v);
        }
    }
    builder
        .body(Full::new(Bytes::from(form_body(form))))
        .map_err(|_| OAuthError::Rejected("invalid token_url".into()))
}

/// `client_secret_basic` (RFC 6749 2.3.1): form-encoded id and secret, base64.
pub(super) fn basic_header(creds: &ClientCreds) -> Option<HeaderValue> {
    let pair = format!(
        "{}:{}",
        encode(creds.id.expose_secret()),
        creds
            .secret
            .as_ref()
            .map(|s| encode(s.expose_secret()))
            .unwrap_or_default()
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut v = HeaderValue::from_str(&format!("Basic {b64}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

pub(super) fn form_body<'a>(form: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    form.into_iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, FORM).to_string().replace("%20", "+")
}

/// An RFC 6749 error code as safe log text: its allowed characters only, bounded.
pub(super) fn error_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

fn parse_token(
    map: &serde_json::Map<String, serde_json::Value>,
    grant: &Grant<'_>,
    c: &OAuthClient,
) -> Result<Token, OAuthError> {
    let access = non_empty_str(map, "access_token")
        .ok_or_else(|| OAuthError::Rejected("token response has no access_token".into()))?;
    let expires_at = map
        .get("expires_in")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .map(|secs| SystemTime::now() + Duration::from_secs(secs));
    // A refresh response without a new refresh token keeps the old one (RFC 6749 6).
    let refresh_token = match non_empty_str(map, "refresh_token") {
        Some(r) => Some(SecretString::from(r.to_string())),
        None => match grant {
            Grant::RefreshToken(old) => Some((*old).clone()),
            Grant::ClientCredentials | Grant::AuthorizationCode { .. } => None,
        },
    };
    let scopes = match map.get("scope").and_then(|v| v.as_str()) {
        Some(s) => s.split_whitespace().map(String::from).collect(),
        None => c.scopes.clone(),
    };
    Ok(Token {
        refresh_token,
        expires_at,
        scopes,
        ..Token::bare(access.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretRef;

    fn client(auth: ClientAuth) -> OAuthClient {
        OAuthClient {
            token_url: "http://127.0.0.1:9/token".into(),
            client_id: SecretRef::Env("X".into()),
            client_secret: None,
            scopes: vec!["a".into(), "b c".into()],
            client_auth: auth,
        }
    }

    #[tokio::test]
    async fn request_shapes() {
        let creds = || ClientCreds {
            id: SecretString::from("id:1".to_string()),
            secret: Some(SecretString::from("s&2".to_string())),
        };
        let req = build_request(
            &client(ClientAuth::Basic),
            &creds(),
            &Grant::ClientCredentials,
        )
        .unwrap();
        let auth = req.headers()[header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .to_string();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim_start_matches("Basic "))
            .unwrap();
        assert_eq!(decoded, b"id%3A1:s%262");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"grant_type=client_credentials&scope=a+b+c");

        let rt = SecretString::from("r/1".to_string());
        let req = build_request(
            &client(ClientAuth::Body),
            &creds(),
            &Grant::RefreshToken(&rt),
        )
        .unwrap();
        assert!(req.headers().get(header::AUTHORIZATION).is_none());
        let body = req.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            b"grant_type=refresh_token&refresh_token=r%2F1&client_id=id%3A1&client_secret=s%262"
        );
    }

    #[test]
    fn keeps_the_old_refresh_token_when_none_is_returned() {
        let old = SecretString::from("old".to_string());
        let m = serde_json::json!({"access_token": "a", "expires_in": 60});
        let t = parse_token(
            m.as_object().unwrap(),
            &Grant::RefreshToken(&old),
            &client(ClientAuth::Basic),
        )
        .unwrap();
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "old");
        assert!(t.expires_at.is_some());
        assert_eq!(error_code("invalid_grant\n<script>"), "invalid_grantscript");
    }
}
