//! Refusals of JSON-RPC requests on MCP routes, as JSON-RPC error responses.
//!
//! Every sidekey error becomes code -32001 with `data: {"error": CODE, "request_id"}`,
//! except `credential_missing` / `credential_expired` with a connect link, which
//! become MCP's `URLElicitationRequiredError` (-32042, MCP 2025-11-25) whose one
//! URL-mode elicitation carries the `ProxyError`'s `connect_url` — whatever built it
//! (the static template, or a signed connect link). HTTP 200, the request's id (an
//! array of answers for a batch), and the `x-sidekey-error` header as always.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::error::ProxyError;

/// JSON-RPC code of every sidekey refusal but the elicitation one.
pub const SIDEKEY_ERROR: i64 = -32001;
/// MCP's `URLElicitationRequiredError`.
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

/// The `error` member of the JSON-RPC answer for `e`.
pub fn error_object(e: &ProxyError, request_id: &str) -> Value {
    let mut data = json!({"error": e.code(), "request_id": request_id});
    if let ProxyError::CredentialMissing {
        credential,
        connect_url,
    }
    | ProxyError::CredentialExpired {
        credential,
        connect_url,
    } = e
    {
        data["credential"] = credential.as_str().into();
        if let Some(url) = connect_url {
            let why = format!("Connect your account for `{credential}` to continue: {e}.");
            data["elicitations"] = json!([{
                "mode": "url",
                "elicitationId": request_id,
                "url": url,
                "message": why,
            }]);
            return json!({"code": URL_ELICITATION_REQUIRED, "message": e.to_string(), "data": data});
        }
    }
    json!({"code": SIDEKEY_ERROR, "message": e.to_string(), "data": data})
}

/// The HTTP response refusing the requests `ids` of one POST (`batch`: the body was an
/// array). `None` when the body held no request (notifications only): then nothing can
/// carry the answer, and the plain HTTP error applies.
pub fn response<B: From<Bytes>>(
    e: &ProxyError,
    request_id: &str,
    ids: &[Value],
    batch: bool,
) -> Option<Response<B>> {
    let first = ids.first()?;
    let error = error_object(e, request_id);
    let answer = |id: &Value| json!({"jsonrpc": "2.0", "id": id, "error": error});
    let body = if batch {
        Value::Array(ids.iter().map(answer).collect())
    } else {
        answer(first)
    };
    // Headers of the plain refusal (WWW-Authenticate, Retry-After, ...) still apply.
    let plain: Response<Bytes> = e.to_response(request_id);
    let (mut parts, _) = plain.into_parts();
    parts.status = StatusCode::OK;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Some(Response::from_parts(parts, B::from(Bytes::from(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: Response<Bytes>) -> Value {
        serde_json::from_slice(r.body()).unwrap()
    }

    #[test]
    fn refusals_carry_the_ids() {
        let e = ProxyError::ToolDenied("no".into());
        let r: Response<Bytes> = response(&e, "rid", &[json!(5)], false).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-sidekey-error"], "tool_denied");
        assert_eq!(r.headers()["content-type"], "application/json");
        let b = body(r);
        assert_eq!(b["id"], 5);
        assert_eq!(b["error"]["code"], SIDEKEY_ERROR);
        assert_eq!(
            b["error"]["data"],
            json!({"error": "tool_denied", "request_id": "rid"})
        );
        let r: Response<Bytes> = response(&e, "rid", &[json!("a"), json!(2)], true).unwrap();
        let b = body(r);
        assert_eq!(b.as_array().map(Vec::len), Some(2));
        assert_eq!(b[0]["id"], "a");
        assert!(response::<Bytes>(&e, "rid", &[], false).is_none());
    }

    #[test]
    fn credential_errors_elicit_the_connect_url() {
        let e = ProxyError::CredentialMissing {
            credential: "gh".into(),
            connect_url: Some("https://c/connect/gh?t=x".into()),
        };
        let b = body(response(&e, "rid", &[json!(1)], false).unwrap());
        assert_eq!(b["error"]["code"], URL_ELICITATION_REQUIRED);
        let el = &b["error"]["data"]["elicitations"][0];
        assert_eq!(
            (el["mode"].as_str(), el["url"].as_str()),
            (Some("url"), Some("https://c/connect/gh?t=x"))
        );
        assert_eq!(el["elicitationId"], "rid");
        let e = ProxyError::CredentialExpired {
            credential: "gh".into(),
            connect_url: None,
        };
        let b = body(response(&e, "rid", &[json!(1)], false).unwrap());
        assert_eq!(b["error"]["code"], SIDEKEY_ERROR);
        assert_eq!(b["error"]["data"]["error"], "credential_expired");
    }
}
