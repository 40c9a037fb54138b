//! The audit phase: one [`Exchange`] per request, finished exactly once.
//!
//! Each phase fills in what it learnt (target, user, route, error, upstream time).
//! The response body is wrapped in [`AuditedBody`], which counts bytes out and, when
//! the body ends or is dropped (client gone), writes the audit record and the request
//! metrics. Denied and failed requests go through the same path as allowed ones.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body::{Body, Frame, SizeHint};

use super::Shared;
use super::forward::{BoxError, UpstreamBody};
use super::headers::TraceContext;
use crate::audit::{AuditRecord, bounded};
use crate::config::{Action, RouteSpec};
use crate::error::ProxyError;
use crate::identity::Identity;

pub struct Exchange {
    pub request_id: String,
    /// The request's W3C trace context (its `trace_id` is the audit record's).
    pub trace: Option<TraceContext>,
    start: Instant,
    ts: time::OffsetDateTime,
    method: Method,
    pub scheme: &'static str,
    pub host: String,
    pub path: String,
    pub identity: Option<Identity>,
    pub route: Option<Arc<RouteSpec>>,
    pub action: Option<Action>,
    pub error: Option<&'static str>,
    /// Report mode: the code enforcement would have refused this call with.
    pub report: Option<&'static str>,
    denied: bool,
    pub upstream: Option<Duration>,
    pub bytes_in: Arc<AtomicU64>,
    /// Set on an MCP POST: what its JSON-RPC messages were and how they were decided.
    pub mcp: Option<crate::mcp::McpCall>,
    /// This exchange writes no record itself (it was detached: a tunnel finishes the
    /// copy when it closes).
    skip: bool,
}

/// Every response's header naming its audit record.
const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-sidekey-request-id");

/// 32 random lower-case hex digits (on every request, so without `format!`).
fn new_request_id() -> String {
    let mut id = [0u8; 32];
    super::headers::lower_hex(fastrand::u128(..), &mut id);
    String::from_utf8_lossy(&id).into_owned()
}

impl Exchange {
    pub fn new(method: &Method, scheme: &'static str) -> Self {
        Exchange {
            request_id: new_request_id(),
            trace: None,
            start: Instant::now(),
            ts: time::OffsetDateTime::now_utc(),
            method: method.clone(),
            scheme,
            host: String::new(),
            path: String::new(),
            identity: None,
            route: None,
            action: None,
            error: None,
            report: None,
            denied: false,
            upstream: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            mcp: None,
            skip: false,
        }
    }

    /// Hand the audit record to someone who finishes it later (a tunnel, when it
    /// closes); this exchange then writes nothing itself.
    pub fn detach(&mut self) -> Exchange {
        let mut copy = Exchange::new(&self.method, self.scheme);
        copy.request_id = self.request_id.clone();
        copy.trace = self.trace.clone();
        copy.start = self.start;
        copy.ts = self.ts;
        copy.host = self.host.clone();
        copy.path = self.path.clone();
        copy.identity = self.identity.clone();
        copy.route = self.route.clone();
        copy.action = self.action;
        copy.report = self.report;
        copy.upstream = self.upstream;
        copy.bytes_in = self.bytes_in.clone();
        self.skip = true;
        copy
    }

    pub fn fail(&mut self, e: &ProxyError) {
        self.error = Some(e.code());
        self.denied = e.is_denial();
    }

    fn decision(&self) -> &'static str {
        match (self.error, self.denied) {
            (None, _) if self.report.is_some() => "report",
            (None, _) => "allow",
            (Some(_), true) => "deny",
            (Some(_), false) => "error",
        }
    }

    fn auth_context(&self) -> &'static str {
        self.action.map(Action::auth_context).unwrap_or("none")
    }

    /// Attach the request id and hand the response to the audit-on-completion body.
    pub fn respond(
        self,
        mut resp: Response<UpstreamBody>,
        shared: Arc<Shared>,
    ) -> Response<AuditedBody> {
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
        let status = resp.status().as_u16();
        resp.map(|inner| AuditedBody {
            inner,
            bytes_out: 0,
            pending: Some(Pending {
                ex: self,
                status,
                shared,
            }),
        })
    }

    pub fn finish(self, status: u16, bytes_out: u64, shared: &Shared) {
        if self.skip {
            return;
        }
        let total = self.start.elapsed();
        let decision = self.decision();
        shared.metrics.observe_request(
            self.route.as_ref().map(|r| &*r.name),
            (self.auth_context(), decision, status),
            total,
            self.upstream,
        );
        let ms = |d: Duration| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        // RFC 3339 with nanoseconds is at most 35 bytes; formatted on the stack.
        let mut ts = [0u8; 40];
        let ts_len = {
            let mut cursor = std::io::Cursor::new(&mut ts[..]);
            let format = &time::format_description::well_known::Rfc3339;
            // The cursor's position, not the returned count, says what was written.
            match self.ts.format_into(&mut cursor, format) {
                Ok(_) => cursor.position() as usize,
                Err(_) => 0,
            }
        };
        let agent = shared.agent();
        let record = AuditRecord {
            ts: std::str::from_utf8(&ts[..ts_len]).unwrap_or_default(),
            request_id: &self.request_id,
            trace_id: self.trace.as_ref().map(|t| &*t.trace_id),
            agent: &agent,
            user: self.identity.as_ref().map(|i| bounded(&i.user)),
            groups: self
                .identity
                .as_ref()
                .and_then(|i| i.groups.as_ref())
                .map(|g| g.iter().map(|s| bounded(s)).collect()),
            auth_context: self.action.map(Action::auth_context).unwrap_or("none"),
            // A report-mode call carried no credential.
            credential: self
                .route
                .as_ref()
                .filter(|_| self.report.is_none())
                .and_then(|r| r.credential.as_ref())
                .map(|c| &*c.name),
            route: self.route.as_ref().map(|r| &*r.name),
            decision,
            error: self.error.or(self.report),
            method: bounded(self.method.as_str()),
            scheme: self.scheme,
            host: bounded(&self.host),
            path: bounded(&self.path),
            status,
            upstream_ms: self.upstream.map(ms),
            total_ms: ms(total),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            mcp: self.mcp.as_ref().map(|m| m.entries.as_slice()),
        };
        shared.audit.write(&record);
        if let Some(telemetry) = shared.telemetry.get() {
            telemetry.record(
                &record,
                &crate::telemetry::SpanTiming {
                    trace: self.trace.as_ref(),
                    start: self.ts.into(),
                    duration: total,
                },
            );
        }
    }
}

struct Pending {
    ex: Exchange,
    status: u16,
    shared: Arc<Shared>,
}

/// A response body that writes the audit record when it ends.
pub struct AuditedBody {
    inner: UpstreamBody,
    bytes_out: u64,
    pending: Option<Pending>,
}

impl AuditedBody {
    fn complete(&mut self) {
        if let Some(p) = self.pending.take() {
            p.ex.finish(p.status, self.bytes_out, &p.shared);
        }
    }
}

impl Drop for AuditedBody {
    fn drop(&mut self) {
        self.complete();
    }
}

impl Body for AuditedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes_out += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.complete(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A request body counted into the exchange's `bytes_in` as it streams upstream.
    pub struct CountingBody<B> {
        #[pin]
        inner: B,
        counter: Arc<AtomicU64>,
    }
}

impl<B> CountingBody<B> {
    pub fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        CountingBody { inner, counter }
    }
}

impl<B: Body<Data = Bytes>> Body for CountingBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(d) = frame.data_ref()
        {
            this.counter.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
