//! sidekey's integration tests: one test binary, modules by area.
//!
//! * `support` is the harness: the one launcher of the real `sidekey` binary
//!   (`Sidekey::builder`), the recording `Upstream` (with custom responders), the one
//!   HTTP client, real client processes, a test CA, and `tools` (the external programs;
//!   a missing one fails naming `scripts/test.sh`). `openbao` adds OpenBao (the one
//!   `bao server -dev` launcher) and `jwt_support` an IdP, both thin layers over it.
//! * Areas: `spine` (policy, injection, audit, streaming, lifecycle), `https`
//!   (interception with real clients), `vault` (OpenBao-backed credentials), `jwt`
//!   (verified identity), `ops` (metrics, reload, drain), `hardening` (egress, protocol,
//!   leaks, regressions), `mcp` (MCP routes with the Python SDK), `minted` (GitHub App,
//!   Google service account, token exchange, SigV4), `policy` (explain, report mode,
//!   rate limits, upstream back-off, credential quarantine), `connect` (users connecting
//!   their accounts, against the real oidc-provider), `devloop` (`env`, `run -- CMD`, the
//!   examples, trace export), `check_cli`, `config_files`, `deploy_manifests`, `docs`
//!   (links stay inside the repository), `quickstart` (the README's quick example is
//!   true).
//!
//! Run one area with `cargo test --test it spine::`; the layout and how to add an area:
//! CONTRIBUTING.md.

mod jwt_support;
mod openbao;
mod prom;
mod support;

mod check_cli;
mod config_files;
mod connect;
mod deploy_manifests;
mod devloop;
mod docs;
mod hardening;
mod https;
mod jwt;
mod mcp;
mod minted;
mod ops;
mod policy;
mod quickstart;
mod spine;
mod vault;
