//! Replayable request bodies: what lets an assistant call survive one upstream 401.
//!
//! A body is buffered only when it is known to be small (no body, or a
//! `Content-Length` within `limits.replay_body_bytes`); anything else streams and is
//! never retried, so a retry can never cost unbounded memory or resend half a stream.

use bytes::Bytes;
use http::Request;
use http::request::Parts;
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::forward::UpstreamBody;
use crate::error::ProxyError;

pub enum Outgoing {
    Stream(Incoming),
    Buffered(Bytes),
}

/// A request body as the phases hold it: still streaming, or already read (an MCP
/// POST, read whole to be inspected).
pub enum Arrived {
    Stream(Incoming),
    Read(Bytes),
}

/// Buffer `body` when `want` and it is known to fit in `limit`; otherwise stream it.
/// A body that was already read is sent (and replayed) as it is.
pub async fn outgoing(
    parts: &Parts,
    body: Arrived,
    limit: usize,
    want: bool,
) -> Result<Outgoing, ProxyError> {
    let body = match body {
        Arrived::Stream(b) => b,
        Arrived::Read(bytes) => return Ok(Outgoing::Buffered(bytes)),
    };
    if !want {
        return Ok(Outgoing::Stream(body));
    }
    let declared = if body.is_end_stream() {
        Some(0)
    } else {
        parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
    };
    match declared {
        Some(n) if n <= limit => {
            let collected = Limited::new(body, limit).collect().await.map_err(|_| {
                ProxyError::BadRequest("request body ended early or exceeded its length".into())
            })?;
            Ok(Outgoing::Buffered(collected.to_bytes()))
        }
        _ => Ok(Outgoing::Stream(body)),
    }
}

/// A fresh upstream request from `parts` with a buffered body.
pub fn request(parts: &Parts, body: Bytes) -> Request<UpstreamBody> {
    let mut req = Request::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    req
}
