//! The development loop (SPEC "Local development", "Trace export"): `sidekey env`
//! eval'd in bash with real clients, `sidekey run -- CMD` as a supervisor (status,
//! signals, readiness, listeners), the examples under `examples/` run end to end, and
//! spans received by an OTLP/HTTP collector decoding them with `opentelemetry-proto`.

mod env;
mod examples;
mod otlp;
mod run;

use crate::support::*;

/// A claw route for `api.example.test`, reached through `upstreams:` at `upstream`
/// (`host:port`), injecting [`TOKEN`] from `DEVLOOP_API_TOKEN`; `extra` goes before it.
pub fn claw_config(agent: &str, upstream: &str, extra: &str) -> String {
    format!(
        "{head}default: deny\n{extra}upstreams:\n  api.example.test: {upstream}\ncredentials:\n  api-key:\n    source: env\n    env: DEVLOOP_API_TOKEN\nroutes:\n  - name: example-api\n    match: {{host: api.example.test}}\n    auth: claw\n    credential: api-key\n",
        head = yaml_head(agent)
    )
}

/// The claw credential of [`claw_config`].
pub const TOKEN: &str = "devloop-token-7f3a9c1e55";

/// Environment that gives sidekey its credential.
pub fn token_env() -> [(&'static str, &'static str); 1] {
    [("DEVLOOP_API_TOKEN", TOKEN)]
}

/// Asserts no captured text holds a secret.
#[track_caller]
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(s),
            "secret {s:?} leaked into output:\n{text}"
        );
    }
}
