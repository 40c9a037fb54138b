//! `telemetry:`: where the per-request spans go (OTLP/HTTP protobuf), validated with
//! the YAML path of each problem. The exporter itself lives in `crate::telemetry`.

use std::path::Path;
use std::time::Duration;

use http::HeaderName;
use secrecy::SecretString;

use super::SecretRef;
use super::raw::{RawHeaderValue, RawTelemetry};
use super::validate::Problems;
use super::validate_credentials::secret_ref;

/// Default `service_name`, the OTel resource's `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "sidekey";
/// Default bound of the span queue; spans beyond it are dropped (and counted).
pub const DEFAULT_QUEUE_SIZE: usize = 2048;
/// Default time one export POST may take before it is abandoned.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `None`: no export (a `telemetry:` block with only `service_name`).
    pub otlp: Option<OtlpConfig>,
    pub service_name: String,
}

#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Base URL without a trailing slash; spans are POSTed to `{endpoint}/v1/traces`.
    pub endpoint: String,
    pub headers: Vec<(HeaderName, HeaderSource)>,
    pub timeout: Duration,
    pub queue_size: usize,
}

impl OtlpConfig {
    /// The URL spans are POSTed to.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint)
    }
}

/// An export header's value: written in the config, or a secret reference. Both are
/// treated as secrets (an API key is the usual header), so neither shows in Debug.
#[derive(Debug, Clone)]
pub enum HeaderSource {
    Literal(SecretString),
    Ref(SecretRef),
}

pub(super) fn telemetry(
    p: &mut Problems,
    raw: Option<RawTelemetry>,
    base: &Path,
    have_vault: bool,
) -> Option<TelemetryConfig> {
    let raw = raw?;
    let service_name = raw
        .service_name
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());
    if service_name.trim().is_empty() {
        p.push("telemetry.service_name", "must not be empty");
    }
    let otlp = raw.otlp.map(|o| {
        let endpoint = endpoint(p, &o.endpoint);
        let mut headers = Vec::new();
        for (name, value) in &o.headers {
            let at = format!("telemetry.otlp.headers.{name}");
            let Ok(header) = HeaderName::try_from(name.to_ascii_lowercase()) else {
                p.push(&at, format!("`{name}` is not a valid header name"));
                continue;
            };
            let source = match value {
                RawHeaderValue::Literal(v) => {
                    if http::HeaderValue::from_str(v).is_err() {
                        p.push(&at, "not a valid header value");
                    }
                    HeaderSource::Literal(SecretString::from(v.clone()))
                }
                RawHeaderValue::Secret(r) => {
                    HeaderSource::Ref(secret_ref(p, &at, r, base, have_vault))
                }
            };
            headers.push((header, source));
        }
        let timeout = p.duration(
            "telemetry.otlp.timeout",
            o.timeout.as_deref(),
            DEFAULT_EXPORT_TIMEOUT,
        );
        if timeout.is_zero() {
            p.push("telemetry.otlp.timeout", "must be longer than 0s");
        }
        let queue_size = o.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
        if queue_size == 0 {
            p.push("telemetry.otlp.queue_size", "must be at least 1");
        }
        OtlpConfig {
            endpoint,
            headers,
            timeout,
            queue_size,
        }
    });
    Some(TelemetryConfig { otlp, service_name })
}

/// An `http://` or `https://` base URL with a host and no query; trailing `/` dropped.
fn endpoint(p: &mut Problems, raw: &str) -> String {
    let at = "telemetry.otlp.endpoint";
    let trimmed = raw.trim_end_matches('/');
    match trimmed.parse::<http::Uri>() {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.host().is_some_and(|h| !h.is_empty()) =>
        {
            if uri.query().is_some() {
                p.push(at, "must not have a query string");
            }
        }
        _ => p.push(
            at,
            format!(
                "`{raw}` must be an http:// or https:// URL such as http://otel-collector:4318"
            ),
        ),
    }
    trimmed.to_string()
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, from_str};
    use std::path::Path;

    fn errors(yaml: &str) -> Vec<ConfigError> {
        let text = format!("version: 1\nagent: a\n{yaml}");
        from_str(&text, Path::new("t.yaml"), Path::new("/tmp"))
            .err()
            .unwrap_or_default()
    }

    fn paths(yaml: &str) -> Vec<String> {
        errors(yaml).into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn a_valid_block_is_read() {
        let text = "version: 1\nagent: a\ntelemetry:\n  otlp:\n    endpoint: http://collector:4318/\n    headers: {x-api-key: {env: OTLP_KEY}, x-team: ops}\n  service_name: hr-agent\n";
        let cfg = from_str(text, Path::new("t.yaml"), Path::new("/tmp")).unwrap();
        let t = cfg.telemetry.unwrap();
        assert_eq!(t.service_name, "hr-agent");
        let o = t.otlp.unwrap();
        assert_eq!(o.traces_url(), "http://collector:4318/v1/traces");
        assert_eq!(o.headers.len(), 2);
        assert!(
            !format!("{o:?}").contains("ops"),
            "header values stay redacted"
        );
    }

    #[test]
    fn the_service_name_defaults_and_otlp_is_optional() {
        let text = "version: 1\nagent: a\ntelemetry: {}\n";
        let cfg = from_str(text, Path::new("t.yaml"), Path::new("/tmp")).unwrap();
        let t = cfg.telemetry.unwrap();
        assert_eq!(t.service_name, "sidekey");
        assert!(t.otlp.is_none());
    }

    #[test]
    fn problems_name_their_yaml_path() {
        assert_eq!(
            paths("telemetry:\n  otlp: {endpoint: \"collector:4318\"}\n"),
            ["telemetry.otlp.endpoint"]
        );
        assert_eq!(
            paths("telemetry:\n  otlp: {endpoint: \"http://c:4318?x=1\"}\n"),
            ["telemetry.otlp.endpoint"]
        );
        assert_eq!(
            paths(
                "telemetry:\n  otlp: {endpoint: \"http://c:4318\", headers: {\"bad header\": v}}\n"
            ),
            ["telemetry.otlp.headers.bad header"]
        );
        assert_eq!(
            paths(
                "telemetry:\n  otlp: {endpoint: \"http://c:4318\", headers: {k: {vault: x, field: f}}}\n"
            ),
            ["telemetry.otlp.headers.k.vault"]
        );
        assert_eq!(
            paths(
                "telemetry:\n  otlp: {endpoint: \"http://c:4318\", timeout: soon, queue_size: 0}\n"
            ),
            ["telemetry.otlp.timeout", "telemetry.otlp.queue_size"]
        );
        assert_eq!(
            paths("telemetry: {service_name: \" \"}\n"),
            ["telemetry.service_name"]
        );
        assert_eq!(
            paths("telemetry: {otlp: {endpoint: \"http://c\", bogus: 1}}\n"),
            ["telemetry.otlp.bogus"]
        );
    }
}
