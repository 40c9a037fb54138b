//! sidekey: a sidecar proxy that injects credentials into an AI agent's HTTP calls.
//!
//! The folders follow a request: `config` (YAML -> validated [`config::Config`]),
//! `identity` (who the end user is), `policy` (which route, so what to do),
//! `credentials` (the token for that route and user), `throttle` (rate budgets and
//! upstream back-off), `mcp` (tool policy on MCP routes), `proxy` (the listener and
//! the request phases), then `audit` and `metrics`; `connect` lets users connect their
//! own accounts (assistant onboarding). `server` runs it all; `cli` is the command line,
//! `devloop` its `env` and `run -- CMD`, `telemetry` the trace export.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod connect;
pub mod credentials;
pub mod devloop;
pub mod error;
pub mod explain;
pub mod identity;
pub mod logging;
pub mod mcp;
pub mod memory;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod scrub;
pub mod server;
pub mod telemetry;
pub mod throttle;
pub mod tls;
