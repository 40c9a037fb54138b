//! Prometheus metrics: one registry, every metric registered here explicitly.
//!
//! Labels are low-cardinality by construction: route and credential names come from
//! the config, the rest from fixed sets. No user id, host or path is ever a label.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for a proxy that adds well under a millisecond: 100µs .. 30s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub credential_lookups: IntCounterVec,
    pub token_refreshes: IntCounterVec,
    pub connects: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub open_connections: IntGauge,
    /// `sidekey_mcp_calls_total{route,rule,decision}`: `rule` is a configured pattern.
    pub mcp_calls: IntCounterVec,
    /// `sidekey_mcp_tool_changes_total{route}`.
    pub mcp_tool_changes: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub credential_quarantines: IntCounterVec,
    /// Spans not delivered to the trace collector (queue full or export failed).
    pub telemetry_dropped_spans: IntCounter,
    /// Per-route handles for the routes of the config in force (see [`RouteMetrics`]).
    routes: ArcSwap<HashMap<Arc<str>, RouteMetrics>>,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("sidekey_requests_total", "Requests handled, by outcome."),
            &["route", "auth_context", "decision", "status_class"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "sidekey_request_duration_seconds",
                "Time from request to end of response.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "sidekey_upstream_duration_seconds",
                "Time for the upstream to answer with headers.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let credential_lookups = IntCounterVec::new(
            Opts::new(
                "sidekey_credential_lookups_total",
                "Credential lookups, by cache result.",
            ),
            &["credential", "source", "result"],
        )?;
        let token_refreshes = IntCounterVec::new(
            Opts::new(
                "sidekey_token_refreshes_total",
                "OAuth token refreshes and fetches.",
            ),
            &["credential", "result"],
        )?;
        let connects = IntCounterVec::new(
            Opts::new(
                "sidekey_connect_total",
                "Finished connect callbacks (users connecting their accounts), by result.",
            ),
            &["credential", "result"],
        )?;
        let config_reloads = IntCounterVec::new(
            Opts::new("sidekey_config_reloads_total", "Config reloads, by result."),
            &["result"],
        )?;
        let mcp_calls = IntCounterVec::new(
            Opts::new(
                "sidekey_mcp_calls_total",
                "MCP tools/call requests, by the applying rule's pattern and decision.",
            ),
            &["route", "rule", "decision"],
        )?;
        let mcp_tool_changes = IntCounterVec::new(
            Opts::new(
                "sidekey_mcp_tool_changes_total",
                "MCP tools found changed or unpinned against their pins.",
            ),
            &["route"],
        )?;
        let open_connections =
            IntGauge::new("sidekey_open_connections", "Open client connections.")?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "sidekey_rate_limited_total",
                "Calls answered 429 rate_limited instead of going upstream, by reason (limit: the route's rate; upstream: its Retry-After).",
            ),
            &["route", "reason"],
        )?;
        let credential_quarantines = IntCounterVec::new(
            Opts::new(
                "sidekey_credential_quarantines_total",
                "(credential, user) pairs quarantined after invalid_grant: answered credential_expired without calling the token endpoint until the stored secret changes.",
            ),
            &["credential"],
        )?;
        let telemetry_dropped_spans = IntCounter::new(
            "sidekey_telemetry_dropped_spans_total",
            "Spans dropped by trace export: queue full, or the collector did not take them.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("sidekey_build_info", "Build information; always 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["success", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(credential_lookups.clone()))?;
        registry.register(Box::new(token_refreshes.clone()))?;
        registry.register(Box::new(connects.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        registry.register(Box::new(mcp_calls.clone()))?;
        registry.register(Box::new(mcp_tool_changes.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(credential_quarantines.clone()))?;
        registry.register(Box::new(telemetry_dropped_spans.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            credential_lookups,
            token_refreshes,
            connects,
            config_reloads,
            open_connections,
            mcp_calls,
            mcp_tool_changes,
            rate_limited,
            credential_quarantines,
            telemetry_dropped_spans,
            routes: ArcSwap::default(),
        })
    }

    /// Resolve the handles of these routes (and of "none"); called for every config
    /// loaded. Requests still finishing on a route a reload removed fall back to a
    /// label lookup.
    pub fn set_routes<'a>(&self, names: impl IntoIterator<Item = &'a Arc<str>>) {
        let mut map = HashMap::new();
        for name in names.into_iter().cloned().chain([Arc::from(NO_ROUTE)]) {
            map.insert(name.clone(), RouteMetrics::new(name));
        }
        self.routes.store(Arc::new(map));
    }

    /// Record one finished request: its outcome, its duration, and the upstream's.
    pub fn observe_request(
        &self,
        route: Option<&str>,
        outcome: (&str, &str, u16),
        total: Duration,
        upstream: Option<Duration>,
    ) {
        let name = route.unwrap_or(NO_ROUTE);
        let routes = self.routes.load();
        let slow;
        let handles = match routes.get(name) {
            Some(h) => h,
            None => {
                slow = RouteMetrics::new(Arc::from(name));
                &slow
            }
        };
        let (auth_context, decision, status) = outcome;
        handles.count(&self.requests, auth_context, decision, status);
        let route_label = [&*handles.route];
        handles
            .request_duration
            .get_or_init(|| self.request_duration.with_label_values(&route_label))
            .observe(total.as_secs_f64());
        if let Some(u) = upstream {
            handles
                .upstream_duration
                .get_or_init(|| self.upstream_duration.with_label_values(&route_label))
                .observe(u.as_secs_f64());
        }
    }

    pub fn credential_lookup(&self, credential: &str, source: &str, result: &str) {
        self.credential_lookups
            .with_label_values(&[credential, source, result])
            .inc();
    }

    pub fn token_refresh(&self, credential: &str, result: &str) {
        self.token_refreshes
            .with_label_values(&[credential, result])
            .inc();
    }

    /// One decided MCP `tools/call`. `route` and `rule` come from the config (a rule's
    /// pattern or `default`), never from the request.
    pub fn mcp_call(&self, route: &str, rule: &str, decision: &str) {
        self.mcp_calls
            .with_label_values(&[route, rule, decision])
            .inc();
    }

    pub fn mcp_tool_changed(&self, route: &str) {
        self.mcp_tool_changes.with_label_values(&[route]).inc();
    }

    pub fn rate_limited(&self, route: &str, reason: &str) {
        self.rate_limited.with_label_values(&[route, reason]).inc();
    }

    pub fn credential_quarantined(&self, credential: &str) {
        self.credential_quarantines
            .with_label_values(&[credential])
            .inc();
    }

    /// One finished connect callback: `result` is connected | denied | error.
    pub fn connect(&self, credential: &str, result: &str) {
        self.connects.with_label_values(&[credential, result]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The `route` label of requests no route matched.
pub const NO_ROUTE: &str = "none";

/// One route's request metrics, resolved once per config load: a label lookup hashes
/// every label value under a lock, which showed in load profiles at three per request.
/// Series are created on first use, so the exposition only lists what happened.
struct RouteMetrics {
    route: Arc<str>,
    /// By [`outcome_index`]: auth context x decision x status class.
    requests: Box<[OnceLock<IntCounter>]>,
    request_duration: OnceLock<Histogram>,
    upstream_duration: OnceLock<Histogram>,
}

const AUTH_CONTEXTS: [&str; 3] = ["system_service", "user_delegated", "none"];
const DECISIONS: [&str; 4] = ["allow", "deny", "error", "report"];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn outcome_index(auth_context: &str, decision: &str, class: &str) -> Option<usize> {
    let a = AUTH_CONTEXTS.iter().position(|x| *x == auth_context)?;
    let d = DECISIONS.iter().position(|x| *x == decision)?;
    let c = STATUS_CLASSES.iter().position(|x| *x == class)?;
    Some((a * DECISIONS.len() + d) * STATUS_CLASSES.len() + c)
}

impl RouteMetrics {
    /// Handles for `route` (`"none"` for requests no route matched).
    fn new(route: Arc<str>) -> Self {
        let slots = AUTH_CONTEXTS.len() * DECISIONS.len() * STATUS_CLASSES.len();
        RouteMetrics {
            requests: (0..slots).map(|_| OnceLock::new()).collect(),
            request_duration: OnceLock::new(),
            upstream_duration: OnceLock::new(),
            route,
        }
    }

    /// Count one finished request.
    fn count(&self, vec: &IntCounterVec, auth_context: &str, decision: &str, status: u16) {
        let class = status_class(status);
        let labels = [&*self.route, auth_context, decision, class];
        match outcome_index(auth_context, decision, class) {
            Some(i) => self.requests[i]
                .get_or_init(|| vec.with_label_values(&labels))
                .inc(),
            None => vec.with_label_values(&labels).inc(),
        }
    }
}

/// `2xx`, `4xx`, ... for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(m: &Metrics) -> String {
        String::from_utf8(m.render()).unwrap()
    }

    #[test]
    fn route_handles_and_label_lookups_agree() {
        let m = Metrics::new().unwrap();
        let claw: Arc<str> = Arc::from("claw");
        m.set_routes([&claw]);
        let ms = Duration::from_millis(1);
        m.observe_request(Some("claw"), ("system_service", "allow", 200), ms, Some(ms));
        m.observe_request(Some("claw"), ("system_service", "allow", 204), ms, Some(ms));
        m.observe_request(None, ("none", "deny", 403), ms, None);
        // A route a reload removed, and an outcome outside the fixed sets.
        m.observe_request(Some("gone"), ("user_delegated", "error", 502), ms, Some(ms));
        m.observe_request(Some("claw"), ("other", "allow", 200), ms, None);
        let text = exposition(&m);
        for line in [
            r#"sidekey_requests_total{auth_context="system_service",decision="allow",route="claw",status_class="2xx"} 2"#,
            r#"sidekey_requests_total{auth_context="none",decision="deny",route="none",status_class="4xx"} 1"#,
            r#"sidekey_requests_total{auth_context="user_delegated",decision="error",route="gone",status_class="5xx"} 1"#,
            r#"sidekey_requests_total{auth_context="other",decision="allow",route="claw",status_class="2xx"} 1"#,
            r#"sidekey_request_duration_seconds_count{route="claw"} 3"#,
            r#"sidekey_upstream_duration_seconds_count{route="claw"} 2"#,
            r#"sidekey_upstream_duration_seconds_count{route="gone"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        // No series for what did not happen.
        assert!(!text.contains(r#"sidekey_upstream_duration_seconds_count{route="none"}"#));
        assert!(!text.contains(r#"status_class="1xx""#));
    }
}
