//! sidekey: a sidecar proxy that injects credentials into an AI agent's HTTP calls.
//!
//! The folders follow a request: `config` (YAML -> validated [`config::Config`]),
//! `identity` (who the end user is), `policy` (which route, so what to do),
//! `credentials` (the token for that route and user), `throttle` (rate budgets and
//! upstream back-off), `mcp` (tool policy on MCP routes), `proxy` (the listener and
//! the request phases), then `audit` and `metrics`; `connect` lets users connect their
//! own accounts (assistant onboarding). `server` runs it all; `cli` is the command line,
//! `devloop` its `env` and `run -- CMD`, `telemetry` the trace export.

pub(crate) mod admin;
pub(crate) mod audit;
pub mod cli;
pub mod config;
pub(crate) mod connect;
pub mod credentials;
pub(crate) mod devloop;
pub(crate) mod error;
pub(crate) mod explain;
pub mod identity;
pub(crate) mod logging;
pub mod mcp;
pub(crate) mod memory;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod scrub;
pub mod server;
pub(crate) mod telemetry;
pub(crate) mod throttle;
pub mod tls;
