//! The one error type at the request edge.
//!
//! Every way a request can fail inside sidekey ends as a [`ProxyError`]. This file is
//! the single place that maps an error to its HTTP status and its contract `CODE`; the
//! same code is the `x-sidekey-error` header, the audit record's `error` field and the
//! `decision` metric label, so the three can never disagree.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::throttle::Reason;

/// A request that sidekey itself answers instead of the upstream.
///
/// Messages are written by sidekey and never carry a secret value: callers pass
/// descriptions ("connection refused"), never tokens or upstream bodies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    BadRequest(String),
    /// Request headers over `limits.max_header_bytes` (431, code `bad_request`).
    #[error("request headers exceed {0} bytes")]
    HeadersTooLarge(usize),
    #[error("this route needs the end user's identity in the `{header}` header")]
    IdentityRequired { header: String },
    #[error("identity rejected: {0}")]
    IdentityInvalid(String),
    #[error("no credential `{credential}` is stored for this user")]
    CredentialMissing {
        credential: String,
        connect_url: Option<String>,
    },
    #[error("credential `{credential}` expired and could not be refreshed")]
    CredentialExpired {
        credential: String,
        connect_url: Option<String>,
    },
    #[error("{0}")]
    RouteDenied(String),
    #[error("user is not allowed on route `{route}`")]
    UserNotAllowed { route: String },
    #[error("{0}")]
    EgressDenied(String),
    #[error("upstream error: {0}")]
    Upstream(String),
    #[error("credential store unavailable: {0}")]
    CredentialStoreUnavailable(String),
    #[error("upstream did not answer within {0}")]
    UpstreamTimeout(String),
    /// An MCP `tools/call` refused by the route's tool rules.
    #[error("{0}")]
    ToolDenied(String),
    /// An MCP tool whose definition no longer matches its pin.
    #[error("{0}")]
    ToolChanged(String),
    /// An MCP request body over `mcp.max_body_bytes`.
    #[error("the request body exceeds the MCP limit of {0} bytes")]
    BodyTooLarge(usize),
    /// Held back by `crate::throttle`; `retry_after` is whole seconds, at least 1.
    #[error("{}", rate_limited_message(route, *reason, *retry_after))]
    RateLimited {
        route: String,
        reason: Reason,
        retry_after: u64,
    },
}

fn rate_limited_message(route: &str, reason: Reason, retry_after: u64) -> String {
    match reason {
        Reason::Limit => {
            format!("route `{route}` is over its rate limit; retry after {retry_after} s")
        }
        Reason::Upstream => format!(
            "the upstream of route `{route}` asked to slow down; retry after {retry_after} s"
        ),
    }
}

impl ProxyError {
    /// The contract's error code: header, audit field and metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::HeadersTooLarge(_) => "bad_request",
            Self::IdentityRequired { .. } => "identity_required",
            Self::IdentityInvalid(_) => "identity_invalid",
            Self::CredentialMissing { .. } => "credential_missing",
            Self::CredentialExpired { .. } => "credential_expired",
            Self::RouteDenied(_) => "route_denied",
            Self::UserNotAllowed { .. } => "user_not_allowed",
            Self::EgressDenied(_) => "egress_denied",
            Self::Upstream(_) => "upstream_error",
            Self::CredentialStoreUnavailable(_) => "credential_store_unavailable",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::ToolDenied(_) => "tool_denied",
            Self::ToolChanged(_) => "tool_changed",
            Self::BodyTooLarge(_) => "body_too_large",
            Self::RateLimited { .. } => "rate_limited",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::IdentityRequired { .. }
            | Self::IdentityInvalid(_)
            | Self::CredentialMissing { .. }
            | Self::CredentialExpired { .. } => StatusCode::UNAUTHORIZED,
            Self::RouteDenied(_)
            | Self::UserNotAllowed { .. }
            | Self::EgressDenied(_)
            | Self::ToolDenied(_)
            | Self::ToolChanged(_) => StatusCode::FORBIDDEN,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::CredentialStoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Whether the policy refused the call (`deny`) rather than something failing (`error`).
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            Self::IdentityRequired { .. }
                | Self::IdentityInvalid(_)
                | Self::RouteDenied(_)
                | Self::UserNotAllowed { .. }
                | Self::EgressDenied(_)
                | Self::BadRequest(_)
                | Self::HeadersTooLarge(_)
                | Self::ToolDenied(_)
                | Self::ToolChanged(_)
                | Self::BodyTooLarge(_)
                | Self::RateLimited { .. }
        )
    }

    /// The JSON body of the contract: `{"error", "message", "request_id"}` plus the
    /// onboarding fields of credential errors.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        let mut body = serde_json::json!({
            "error": self.code(),
            "message": self.to_string(),
            "request_id": request_id,
        });
        if let Self::CredentialMissing {
            credential,
            connect_url,
        }
        | Self::CredentialExpired {
            credential,
            connect_url,
        } = self
        {
            body["credential"] = credential.as_str().into();
            body["connect_url"] = connect_url.as_deref().into();
        }
        body
    }

    /// The response sidekey sends for this error. `x-sidekey-request-id` is added by the
    /// caller, like on every other response.
    pub fn to_response<B: From<Bytes>>(&self, request_id: &str) -> Response<B> {
        let body = serde_json::to_vec(&self.body(request_id)).unwrap_or_default();
        let mut resp = Response::new(B::from(Bytes::from(body)));
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("x-sidekey-error", HeaderValue::from_static(self.code()));
        if matches!(
            self,
            Self::IdentityRequired { .. } | Self::IdentityInvalid(_)
        ) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sidekey\""),
            );
        }
        if let Self::RateLimited { retry_after, .. } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_follow_the_contract() {
        let e = ProxyError::CredentialMissing {
            credential: "notion-user".into(),
            connect_url: Some("https://x/connect?user=alice".into()),
        };
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        let body = e.body("r1");
        assert_eq!(body["error"], "credential_missing");
        assert_eq!(body["connect_url"], "https://x/connect?user=alice");
        assert_eq!(body["request_id"], "r1");
        let resp: Response<Bytes> = ProxyError::UpstreamTimeout("5s".into()).to_response("r2");
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(resp.headers()["x-sidekey-error"], "upstream_timeout");
        let limited = ProxyError::RateLimited {
            route: "slack".into(),
            reason: Reason::Upstream,
            retry_after: 7,
        };
        let resp: Response<Bytes> = limited.to_response("r3");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()["x-sidekey-error"], "rate_limited");
        assert_eq!(resp.headers()["retry-after"], "7");
        assert_eq!(limited.body("r3")["error"], "rate_limited");
    }
}
