//! sidekey's integration tests: one test binary, modules by area.
//!
//! * `support` is the harness: the real `sidekey` binary in a temp dir, recording
//!   upstreams, clients, a test CA; `openbao` and `jwt_support` add OpenBao and an IdP.
//! * Areas: `spine` (policy, injection, audit, streaming, lifecycle), `https`
//!   (interception with real clients), `vault` (OpenBao-backed credentials), `jwt`
//!   (verified identity), `ops` (metrics, reload, drain), `hardening` (egress, protocol,
//!   leaks, regressions), `devloop` (`env`, `run -- CMD`, the examples, trace export),
//!   `check_cli`, `config_files`, `deploy_manifests`.
//!
//! Run one area with `cargo test --test it spine::`.

mod jwt_support;
mod openbao;
mod prom;
mod support;

mod check_cli;
mod config_files;
mod deploy_manifests;
mod devloop;
mod hardening;
mod https;
mod jwt;
mod ops;
mod spine;
mod vault;
