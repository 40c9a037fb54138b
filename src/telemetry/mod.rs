//! Trace export: one OpenTelemetry span per proxied request, POSTed in batches to
//! `{telemetry.otlp.endpoint}/v1/traces` (OTLP/HTTP protobuf) by the SDK's batch span
//! processor on its own thread.
//!
//! The request path pays one hook at the audit phase ([`Telemetry::record`]): the span
//! is built from the finished audit record (`span.rs`) and handed over without
//! waiting. A gate bounds the spans admitted and not yet exported to the queue size,
//! so the SDK's queue never overflows silently: a span over the bound, or in a batch
//! the collector did not take (`export.rs`), is counted in
//! `sidekey_telemetry_dropped_spans_total`. A slow or dead collector costs requests
//! nothing.

mod export;
mod span;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SpanProcessor};
use prometheus::IntCounter;
use secrecy::ExposeSecret;

pub use span::SpanTiming;

use crate::audit::AuditRecord;
use crate::config::{HeaderSource, SecretRef, TelemetryConfig};
use crate::credentials::CredentialStore;
use crate::proxy::Shared;

/// How long one resolution of the export headers' secret references may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often Vault-held export headers are tried again while they do not resolve.
const RESOLVE_RETRY: Duration = Duration::from_secs(5);
/// How long shutdown waits for the last batch to reach the collector.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time between batch exports (`OTEL_BSP_SCHEDULE_DELAY` overrides it).
const EXPORT_INTERVAL: Duration = Duration::from_secs(1);

pub struct Telemetry {
    processor: BatchSpanProcessor,
    in_flight: Arc<export::InFlight>,
    capacity: usize,
    dropped: IntCounter,
    scope: InstrumentationScope,
}

/// Start trace export for the config `shared` runs, if it has `telemetry.otlp`. With
/// only `{env}`/`{file}` (or literal) export headers the exporter runs before this
/// returns; headers from Vault are resolved in the background (retrying while Vault
/// is down) so that sidekey starts serving at once, and spans start once they resolve.
pub async fn start(shared: &Arc<Shared>) {
    let Some(cfg) = shared.runtime().config.telemetry.clone() else {
        return;
    };
    let Some(otlp) = &cfg.otlp else { return };
    let needs_vault = otlp
        .headers
        .iter()
        .any(|(_, h)| matches!(h, HeaderSource::Ref(SecretRef::Vault { .. })));
    if !needs_vault {
        set_up(shared, &cfg, false).await;
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let stop = shared.shutdown.clone();
        tokio::select! {
            () = set_up(&shared, &cfg, true) => {}
            () = stop.cancelled() => {}
        }
    });
}

/// Resolve the headers (again every few seconds when `retry`) and start the exporter.
async fn set_up(shared: &Shared, cfg: &TelemetryConfig, retry: bool) {
    let Some(otlp) = &cfg.otlp else { return };
    let mut logged = false;
    let headers = loop {
        let why =
            match tokio::time::timeout(RESOLVE_TIMEOUT, headers(otlp, &shared.credentials)).await {
                Ok(Ok(h)) => break h,
                Ok(Err(why)) => why,
                Err(_) => "resolving the export headers timed out".to_string(),
            };
        if !retry {
            tracing::error!(error = %why, "trace export off: an export header cannot be resolved");
            return;
        }
        if !logged {
            tracing::warn!(error = %why, "trace export waits for its export headers; retrying");
            logged = true;
        }
        tokio::time::sleep(RESOLVE_RETRY).await;
    };
    let dropped = shared.metrics.telemetry_dropped_spans.clone();
    let cfg = cfg.clone();
    match tokio::task::spawn_blocking(move || Telemetry::build(&cfg, headers, dropped)).await {
        Ok(Ok(t)) => {
            let _ = shared.telemetry.set(Arc::new(t));
        }
        Ok(Err(why)) => tracing::error!(error = %why, "trace export off"),
        Err(e) => tracing::error!(error = %e, "trace export off"),
    }
}

impl Telemetry {
    fn build(
        cfg: &TelemetryConfig,
        headers: HashMap<String, String>,
        dropped: IntCounter,
    ) -> Result<Telemetry, String> {
        let otlp = cfg.otlp.as_ref().ok_or("no otlp block")?;
        let in_flight = Arc::new(export::InFlight::default());
        let exporter = export::Counting {
            inner: export::otlp(otlp, headers)?,
            in_flight: in_flight.clone(),
            dropped: dropped.clone(),
            failures: Default::default(),
        };
        let mut batch = BatchConfigBuilder::default().with_max_queue_size(otlp.queue_size);
        if std::env::var_os("OTEL_BSP_SCHEDULE_DELAY").is_none() {
            batch = batch.with_scheduled_delay(EXPORT_INTERVAL);
        }
        let mut processor = BatchSpanProcessor::new(exporter, batch.build());
        processor.set_resource(
            &Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        );
        tracing::info!(endpoint = %otlp.traces_url(), "exporting a span per request");
        Ok(Telemetry {
            processor,
            in_flight,
            capacity: otlp.queue_size,
            dropped,
            scope: InstrumentationScope::builder("sidekey")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }

    /// Hand one finished request's span to the exporter (never waits). Over the
    /// bound, the span is counted as dropped before anything is built.
    pub fn record(&self, record: &AuditRecord<'_>, timing: &SpanTiming<'_>) {
        if timing.trace.is_some_and(|t| !t.sampled) {
            return;
        }
        let admitted = self
            .in_flight
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.dropped.inc();
            return;
        }
        match span::build(record, timing, &self.scope) {
            Some(span) => self.processor.on_end(span),
            None => {
                self.in_flight.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Export what is queued (waiting up to a few seconds), then stop the exporter.
    pub async fn shutdown(self: Arc<Self>) {
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = self.processor.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                tracing::debug!(error = %e, "trace exporter shutdown");
            }
        })
        .await;
    }
}

/// The export headers with every secret reference resolved.
async fn headers(
    otlp: &crate::config::OtlpConfig,
    credentials: &CredentialStore,
) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (name, source) in &otlp.headers {
        let value = match source {
            HeaderSource::Literal(v) => v.expose_secret().to_string(),
            HeaderSource::Ref(r) => credentials
                .resolve_secret(r)
                .await
                .map_err(|e| format!("telemetry.otlp.headers.{name}: {e}"))?
                .expose_secret()
                .to_string(),
        };
        out.insert(name.as_str().to_string(), value);
    }
    Ok(out)
}
