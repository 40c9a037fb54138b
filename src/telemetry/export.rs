//! The OTLP/HTTP protobuf exporter (opentelemetry-otlp) behind a wrapper that keeps
//! the span gate's books: every span handed to the SDK is released here when its
//! batch is done, and a batch the collector did not take is counted as dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prometheus::IntCounter;

use crate::config::OtlpConfig;

/// Builds the OTLP span exporter for `cfg` with resolved `headers`. Its HTTP client
/// never uses a proxy: `HTTP_PROXY` in sidekey's own environment must not send the
/// spans through sidekey.
pub fn otlp(
    cfg: &OtlpConfig,
    headers: HashMap<String, String>,
) -> Result<opentelemetry_otlp::SpanExporter, String> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let timeout = cfg.timeout;
    // reqwest's blocking client runs its own runtime: built off any tokio thread.
    let client = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
    })
    .join()
    .map_err(|_| "cannot build the OTLP HTTP client".to_string())?
    .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(cfg.traces_url())
        .with_timeout(timeout)
        .with_headers(headers)
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))
}

/// The spans admitted and not yet done with, shared by the gate and the exporter.
#[derive(Debug, Default)]
pub struct InFlight(pub AtomicUsize);

/// Wraps the exporter: releases each batch from the gate and counts failed ones.
#[derive(Debug)]
pub struct Counting<E> {
    pub inner: E,
    pub in_flight: Arc<InFlight>,
    pub dropped: IntCounter,
    pub failures: AtomicU64,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.in_flight.0.fetch_sub(n, Ordering::AcqRel);
        if let Err(e) = &result {
            self.dropped.inc_by(n as u64);
            // One line for the first failure, then one per 100: a collector that is
            // down must not flood the log.
            let failures = self.failures.fetch_add(1, Ordering::Relaxed);
            if failures.is_multiple_of(100) {
                tracing::warn!(error = %e, spans = n, failures = failures + 1, "trace export failed; spans dropped");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
