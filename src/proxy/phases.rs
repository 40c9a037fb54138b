//! The request path, as named phases: identify -> decide -> resolve -> inject ->
//! forward -> audit. Each change to request handling has one obvious home here.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::exchange::{AuditedBody, CountingBody, Exchange};
use super::forward::UpstreamBody;
use super::scrub::{ScrubBody, Secrets};
use super::target::Target;
use super::{ConnInfo, Runtime, Shared, connect, headers, inject, replay, target};
use crate::config::{Action, CredentialSpec, DefaultAction, RouteSpec};
use crate::credentials::{CredError, Token, template};
use crate::error::ProxyError;
use crate::identity::Identity;
use crate::policy::MatchInput;

/// Entry point for every request on the proxy listener (and inside tunnels).
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<AuditedBody>, Infallible> {
    let rt = shared.runtime();
    // A CONNECT opens an HTTPS tunnel; it is audited as such.
    let tls = conn.intercepted.is_some() || req.method() == http::Method::CONNECT;
    let scheme = if tls { "https" } else { "http" };
    let mut ex = Exchange::new(req.method(), scheme);
    let resp = match process(&shared, &rt, &conn, &mut ex, req).await {
        Ok(resp) => resp,
        Err(e) => {
            ex.fail(&e);
            log_failure(&ex, &e);
            e.to_response::<Full<Bytes>>(&ex.request_id).map(box_full)
        }
    };
    Ok(ex.respond(resp, shared))
}

fn box_full(b: Full<Bytes>) -> UpstreamBody {
    b.map_err(|never| match never {}).boxed_unsync()
}

fn log_failure(ex: &Exchange, e: &ProxyError) {
    if e.status().is_server_error() {
        tracing::warn!(request_id = %ex.request_id, code = e.code(), error = %e, "request failed");
    } else {
        tracing::debug!(request_id = %ex.request_id, code = e.code(), error = %e, "request refused");
    }
}

async fn process(
    shared: &Arc<Shared>,
    rt: &Arc<Runtime>,
    conn: &Arc<ConnInfo>,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    if req.method() == http::Method::CONNECT && conn.intercepted.is_none() {
        return connect::handle(shared, rt, conn, ex, req).await;
    }
    let (mut parts, body) = req.into_parts();
    // hyper's HTTP/1 buffer cannot go below 8 KiB, so the configured limit is also
    // checked here, for both protocols.
    let limit = rt.config.limits.max_header_bytes;
    let uri_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len())
        + parts.uri.authority().map_or(0, |a| a.as_str().len());
    let size: usize = uri_len
        + parts
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > limit {
        return Err(ProxyError::HeadersTooLarge(limit));
    }
    ex.trace = Some(headers::trace_context(
        &mut parts.headers,
        shared.telemetry.is_some(),
    ));

    // target: where the request goes, with its path normalised once.
    let target = match target::resolve(
        &parts,
        conn.intercepted.as_ref(),
        shared.proxy_addr,
        &rt.table,
    ) {
        Ok(t) => t,
        Err(e) => {
            // No target: audit what the client asked for (never the query).
            ex.host = parts
                .uri
                .host()
                .map(str::to_string)
                .or_else(|| host_header(&parts.headers))
                .unwrap_or_default();
            ex.path = parts.uri.path().to_string();
            return Err(e);
        }
    };
    ex.host = target.host.clone();
    ex.path = target.path.clone();

    // identify: the end user, if any. The header is removed below whatever happens.
    let identity = identify(rt, conn, &parts.headers).await?;
    ex.identity = identity.clone();

    // decide: first matching route, else the default.
    let route = match &target.gateway {
        Some(r) => Some(r.clone()),
        None => rt
            .table
            .decide(&MatchInput {
                host: &target.host,
                path: &target.policy_path,
                method: &parts.method,
            })
            .cloned(),
    };
    ex.route = route.clone();
    let action = match (&route, rt.config.default_action) {
        (Some(r), _) => r.action,
        (None, DefaultAction::Deny) => {
            return Err(ProxyError::RouteDenied(format!(
                "no route matches {} {}",
                parts.method,
                crate::audit::bounded(&target.host)
            )));
        }
        (None, DefaultAction::Passthrough) => Action::Passthrough,
    };
    ex.action = Some(action);
    if action == Action::Deny {
        let name = route
            .as_ref()
            .map(|r| r.name.to_string())
            .unwrap_or_default();
        return Err(ProxyError::RouteDenied(format!(
            "route `{name}` denies this call"
        )));
    }
    authorize(rt, route.as_deref(), action, identity.as_ref())?;
    egress_intent(rt, &target, route.as_deref())?;

    // resolve: the credential for this route and user.
    let token = match (&route, action) {
        (Some(r), Action::Claw | Action::Assistant) => {
            Some(resolve(shared, r, identity.as_ref()).await?)
        }
        _ => None,
    };

    // inject: build the upstream request.
    headers::strip_identity(&mut parts.headers, rt.identifier.header());
    headers::strip_underscore_lookalikes(&mut parts.headers);
    let upgrade = is_upgrade(&parts);
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(http::header::HOST);
    let mut query = target.query.clone();
    let mut secrets = None;
    if let (Some(r), Some(token)) = (&route, &token) {
        headers::strip_client_credentials(
            &mut parts.headers,
            r.injected_header(),
            &r.keep_client_headers,
        );
        let (q, s) = inject::prepare(r, token, &mut parts.headers, query.as_deref())?;
        query = q;
        secrets = Some(s);
    }
    if let Some(r) = &route {
        for (k, v) in &r.set_headers {
            parts.headers.insert(k.clone(), v.clone());
        }
    }
    parts.uri = upstream_uri(&target, query.as_deref())?;
    parts.version = http::Version::HTTP_11;
    if upgrade {
        let resp = super::upgrade::forward(shared, rt, conn, ex, parts, body).await?;
        // Asking for an upgrade must not dodge response hygiene: a refused handshake is
        // an ordinary response. (Frames of an accepted WebSocket are not scanned.)
        return match (secrets, &route) {
            (Some(secrets), Some(r)) if resp.status() != StatusCode::SWITCHING_PROTOCOLS => {
                scrubbed(resp, secrets, r)
            }
            (Some(secrets), Some(r)) => {
                let mut resp = resp;
                response_headers(resp.headers_mut(), &secrets, r);
                Ok(resp)
            }
            _ => Ok(resp),
        };
    }
    // forward: an assistant call whose body is small enough is buffered, so that an
    // upstream 401 can be answered by one refresh and one retry.
    let replay = action == Action::Assistant && token.is_some();
    let started = Instant::now();
    let sent = async {
    Ok::<_, ProxyError>(match replay::outgoing(&parts, body, rt.config.limits.replay_body_bytes, replay)
        .await?
    {
        replay::Outgoing::Stream(body) => {
            let body = CountingBody::new(body, ex.bytes_in.clone())
                .map_err(Into::into)
                .boxed_unsync();
            rt.upstream.send(Request::from_parts(parts, body)).await?
        }
        replay::Outgoing::Buffered(bytes) => {
            ex.bytes_in
                .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let first = rt
                .upstream
                .send(replay::request(&parts, bytes.clone()))
                .await?;
            match (&route, &token) {
                (Some(r), Some(rejected)) if first.status() == StatusCode::UNAUTHORIZED => {
                    drop(first);
                    let user = identity.as_ref().map(|i| &*i.user);
                    let fresh = refreshed(shared, r, user, rejected).await?;
                    tracing::info!(route = %r.name, "upstream refused the credential; retrying once with a refreshed one");
                    let (q, s) =
                        inject::prepare(r, &fresh, &mut parts.headers, target.query.as_deref())?;
                    parts.uri = upstream_uri(&target, q.as_deref())?;
                    secrets = Some(s);
                    rt.upstream.send(replay::request(&parts, bytes)).await?
                }
                _ => first,
            }
        }
    })
    }
    .await;
    // Upstream time counts for failures too: a hanging upstream must show in latency.
    if !matches!(sent, Err(ProxyError::EgressDenied(_))) {
        ex.upstream = Some(started.elapsed());
    }
    let mut resp = sent?;
    headers::strip_hop_by_hop(resp.headers_mut(), false);
    *resp.version_mut() = http::Version::HTTP_11;
    // The status line is sidekey's: a custom upstream reason phrase is not relayed.
    resp.extensions_mut().remove::<hyper::ext::ReasonPhrase>();
    match (secrets, &route) {
        (Some(secrets), Some(r)) => scrubbed(resp, secrets, r),
        _ => Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync())),
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
    B::Error: Into<super::forward::BoxError>,
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

async fn identify(
    rt: &Runtime,
    conn: &ConnInfo,
    h: &http::HeaderMap,
) -> Result<Option<Identity>, ProxyError> {
    let inner = rt.identifier.identify(h, conn.loopback).await?;
    let Some(tunnel) = &conn.intercepted else {
        return Ok(inner);
    };
    // Inside a tunnel, the CONNECT request's identity holds for every inner request;
    // an inner request may repeat it but never name someone else.
    match (&tunnel.identity, inner) {
        (None, inner) => Ok(inner),
        (Some(outer), None) => Ok(Some(outer.clone())),
        (Some(outer), Some(inner)) if outer.user == inner.user => Ok(Some(inner)),
        (Some(_), Some(_)) => Err(ProxyError::BadRequest(
            "inner request identity differs from the CONNECT identity".into(),
        )),
    }
}

fn authorize(
    rt: &Runtime,
    route: Option<&RouteSpec>,
    action: Action,
    identity: Option<&Identity>,
) -> Result<(), ProxyError> {
    let allow = route.and_then(|r| r.allow.as_ref());
    let needs_identity = action == Action::Assistant || allow.is_some();
    let Some(id) = identity else {
        if needs_identity {
            return Err(ProxyError::IdentityRequired {
                header: rt.identifier.header().to_string(),
            });
        }
        return Ok(());
    };
    if let (Some(allow), Some(r)) = (allow, route) {
        let user_ok = allow.users.iter().any(|u| **u == *id.user);
        let group_ok = id
            .groups
            .iter()
            .flatten()
            .any(|g| allow.groups.iter().any(|a| **a == **g));
        if !(user_ok || group_ok) {
            return Err(ProxyError::UserNotAllowed {
                route: r.name.to_string(),
            });
        }
    }
    Ok(())
}

async fn resolve(
    shared: &Shared,
    route: &RouteSpec,
    identity: Option<&Identity>,
) -> Result<Arc<Token>, ProxyError> {
    let Some(spec) = &route.credential else {
        return Err(ProxyError::CredentialStoreUnavailable(
            "route has no credential".into(),
        ));
    };
    let user = identity.map(|i| &*i.user);
    shared
        .credentials
        .get(spec, user)
        .await
        .map_err(|e| cred_error(e, route, spec, user))
}

/// After an upstream 401: a refreshed (or already rotated) token, or why there is none.
async fn refreshed(
    shared: &Shared,
    route: &RouteSpec,
    user: Option<&str>,
    rejected: &Token,
) -> Result<Arc<Token>, ProxyError> {
    let Some(spec) = &route.credential else {
        return Err(ProxyError::CredentialStoreUnavailable(
            "route has no credential".into(),
        ));
    };
    shared
        .credentials
        .reject(spec, user, rejected)
        .await
        .map_err(|e| cred_error(e, route, spec, user))
}

fn cred_error(
    e: CredError,
    route: &RouteSpec,
    spec: &CredentialSpec,
    user: Option<&str>,
) -> ProxyError {
    let connect_url = || {
        route
            .effective_connect_url()
            .map(|u| template::fill_url(u, user))
    };
    match e {
        CredError::Missing => ProxyError::CredentialMissing {
            credential: spec.name.to_string(),
            connect_url: connect_url(),
        },
        CredError::Expired => ProxyError::CredentialExpired {
            credential: spec.name.to_string(),
            connect_url: connect_url(),
        },
        CredError::Unavailable(m) | CredError::Invalid(m) => {
            ProxyError::CredentialStoreUnavailable(m)
        }
    }
}

fn host_header(h: &http::HeaderMap) -> Option<String> {
    let v = h.get(http::header::HOST)?.to_str().ok()?;
    let a: http::uri::Authority = v.parse().ok()?;
    Some(a.host().trim_matches(['[', ']']).to_ascii_lowercase())
}

/// A literal-IP destination is the operator's intent only for the route that names
/// that IP (or a gateway / `upstreams:` entry); any other request to it, such as one
/// that fell through to `default: passthrough`, is checked like any destination. Host
/// names are checked by the connector, which resolves once and dials what it checked.
pub(super) fn egress_intent(
    rt: &Runtime,
    target: &Target,
    route: Option<&RouteSpec>,
) -> Result<(), ProxyError> {
    let named_by_route =
        target.gateway.is_some() || route.is_some_and(|r| names_host(r, &target.host));
    literal_ip_allowed(rt, &target.host, named_by_route)
}

/// Whether `route` matches exactly this host (a literal IP written in the config).
pub(super) fn names_host(route: &RouteSpec, host: &str) -> bool {
    matches!(&route.host, Some(crate::policy::HostPattern::Exact(h)) if h == host)
}

/// The egress check for a literal-IP host: allowed when the operator wrote it (a
/// route naming it, an `upstreams:` key), else only if public or in `allow_cidrs`.
pub(super) fn literal_ip_allowed(
    rt: &Runtime,
    host: &str,
    named_by_route: bool,
) -> Result<(), ProxyError> {
    let Ok(ip) = host.parse::<std::net::IpAddr>() else {
        return Ok(());
    };
    if named_by_route || rt.config.upstreams.contains_key(host) {
        return Ok(());
    }
    super::egress::allowed(ip, &rt.config.egress_allow)
        .map_err(|reason| ProxyError::EgressDenied(format!("{ip} is a {reason} address")))
}

fn is_upgrade(parts: &http::request::Parts) -> bool {
    parts.version == http::Version::HTTP_11
        && parts.headers.contains_key(http::header::UPGRADE)
        && parts
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| {
                v.to_str().is_ok_and(|s| {
                    s.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
            })
}

fn upstream_uri(t: &Target, query: Option<&str>) -> Result<Uri, ProxyError> {
    let pq = match query {
        Some(q) if !q.is_empty() => format!("{}?{q}", t.path),
        _ => t.path.clone(),
    };
    Uri::builder()
        .scheme(t.scheme.clone())
        .authority(t.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| ProxyError::BadRequest("cannot build the upstream URI".into()))
}

/// A bare response sidekey answers itself (CONNECT established, for example).
pub fn empty(status: StatusCode) -> Response<UpstreamBody> {
    let mut r = Response::new(box_full(Full::new(Bytes::new())));
    *r.status_mut() = status;
    r
}
