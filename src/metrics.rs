//! Prometheus metrics: one registry, every metric registered here explicitly.
//!
//! Labels are low-cardinality by construction: route and credential names come from
//! the config, the rest from fixed sets. No user id, host or path is ever a label.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
    pub config_reloads: IntCounterVec,
    pub open_connections: IntGauge,
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
        let config_reloads = IntCounterVec::new(
            Opts::new("sidekey_config_reloads_total", "Config reloads, by result."),
            &["result"],
        )?;
        let open_connections =
            IntGauge::new("sidekey_open_connections", "Open client connections.")?;
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
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(open_connections.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            credential_lookups,
            token_refreshes,
            config_reloads,
            open_connections,
        })
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
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
