//! The respond phase: response hygiene before the answer goes back to the agent.
//! Hop-by-hop headers and the upstream's reason phrase go; on an injecting route no
//! secret (headers and streamed body are scrubbed), no upstream cookies unless the
//! route keeps them, and no body sidekey cannot scan.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::BodyExt;

use super::forward::{Reply, Sent};
use crate::config::RouteSpec;
use crate::error::ProxyError;
use crate::proxy::forward::{BoxError, UpstreamBody};
use crate::proxy::headers;
use crate::scrub::{ScrubBody, Secrets};

pub(super) fn respond(
    sent: Sent,
    route: Option<&RouteSpec>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    let secured = sent.secrets.zip(route);
    match sent.reply {
        // Asking for an upgrade must not dodge response hygiene: a refused handshake
        // is an ordinary response. (Frames of an accepted WebSocket are not scanned.)
        Reply::Upgrade(resp) => match secured {
            Some((secrets, r)) if resp.status() != StatusCode::SWITCHING_PROTOCOLS => {
                scrubbed(resp, secrets, r)
            }
            Some((secrets, r)) => {
                let mut resp = resp;
                response_headers(resp.headers_mut(), &secrets, r);
                Ok(resp)
            }
            None => Ok(resp),
        },
        Reply::Response(mut resp) => {
            headers::strip_hop_by_hop(resp.headers_mut(), false);
            *resp.version_mut() = http::Version::HTTP_11;
            // The status line is sidekey's: a custom upstream reason phrase is not relayed.
            resp.extensions_mut().remove::<hyper::ext::ReasonPhrase>();
            match secured {
                Some((secrets, r)) => scrubbed(resp, secrets, r),
                None => Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync())),
            }
        }
    }
}

/// Response hygiene on an injecting route: no secret, no upstream cookies (unless the
/// route keeps cookies), and no body sidekey cannot scan.
fn scrubbed<B>(
    mut resp: Response<B>,
    secrets: Secrets,
    route: &RouteSpec,
) -> Result<Response<UpstreamBody>, ProxyError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let encoded = resp
        .headers()
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|t| {
            let t = t.trim_ascii();
            !t.is_empty() && !t.eq_ignore_ascii_case(b"identity")
        });
    if encoded {
        return Err(ProxyError::Upstream(
            "upstream sent a compressed body on an injecting route; sidekey asked for identity encoding and cannot scan it for the secret".into(),
        ));
    }
    response_headers(resp.headers_mut(), &secrets, route);
    Ok(resp.map(|b| {
        ScrubBody::new(b, secrets)
            .map_err(Into::into)
            .boxed_unsync()
    }))
}

/// Header hygiene on an injecting route's response: no upstream cookies unless the
/// route keeps cookies, and no secret in any header.
fn response_headers(headers: &mut http::HeaderMap, secrets: &Secrets, route: &RouteSpec) {
    let keeps_cookies = route
        .keep_client_headers
        .iter()
        .any(|h| h == http::header::COOKIE || h == http::header::SET_COOKIE);
    if !keeps_cookies {
        headers.remove(http::header::SET_COOKIE);
    }
    if secrets.mask_headers(headers) > 0 {
        tracing::warn!(route = %route.name, "upstream echoed the injected secret in a response header; masked");
    }
}
