//! Shared black-box harness for sidekey's integration tests.
//!
//! * [`Sidekey`] runs the real binary from a temp dir and captures every byte it writes.
//! * [`Upstream`] is a recording hyper server standing in for the tool APIs.
//! * [`client`] sends requests through the proxy (absolute-form) or to the gateway: the
//!   one HTTP client of the tests (the `openbao` and `jwt_support` helpers use it too).
//! * [`assert`] holds contract checks shared by several test files.
//! * [`MintServer`] is a token endpoint whose answers (and checks) a test supplies.
//! * [`devloop`]: `sidekey run -- CMD` / `sidekey env` as processes, fixed ports.
//! * [`InProcess`]: `server::run` inside the test process (injected listeners and
//!   shutdown), for tests that need neither the binary's output nor signals.
//! * HTTPS: [`TlsUpstream`] (a recording TLS upstream), [`test_ca`] and [`SidekeyCa`],
//!   [`processes`] (curl, Python clients), [`tunnel`] (raw CONNECT), [`websocket`].
//! * MCP: [`McpServer`] (the Python SDK's FastMCP) and raw JSON-RPC posts.
//! * [`SlowDownUpstream`] answers 429/503 with `Retry-After` on request and counts hits.
//!
//! * [`connect`]: the connect tests' own pieces: the npm `oidc-provider` under node, a
//!   sidekey launcher that also runs `sidekey connect` and reports the connect listener,
//!   and the cookie-keeping flow driver (`tests/py/connect_flow.py`).
//! * [`tools`]: the external programs (`bao`, the Python venv, `promtool`, `curl`), found
//!   in one place; a missing one fails with the command to run (`scripts/test.sh`).
//!
//! The `openbao` and `jwt_support` modules are thin layers over this one: the same
//! sidekey launcher ([`Sidekey::builder`]), the same recording [`Upstream`] (with a
//! custom [`Responder`] for token endpoints and JWKS documents), the same client.
//!
//! Every test builds its own instances; nothing uses a fixed port, so tests run in
//! parallel safely.
#![allow(dead_code, unused_imports)]

pub mod assert;
pub mod body;
pub mod client;
pub mod connect;
pub mod devloop;
pub mod in_process;
pub mod mcp_server;
pub mod mint_server;
pub mod processes;
pub mod sidekey;
pub mod slowdown;
pub mod test_ca;
pub mod tls_upstream;
pub mod tools;
pub mod tunnel;
pub mod upstream;
pub mod websocket;

pub use assert::*;
pub use body::*;
pub use client::*;
pub use devloop::*;
pub use in_process::InProcess;
pub use mcp_server::*;
pub use mint_server::*;
pub use processes::*;
pub use sidekey::*;
pub use slowdown::*;
pub use test_ca::*;
pub use tls_upstream::*;
pub use tools::*;
pub use tunnel::*;
pub use upstream::*;
pub use websocket::*;

/// The fixed head of every test config: version, agent name, ephemeral listeners.
pub fn yaml_head(agent: &str) -> String {
    format!("version: 1\nagent: {agent}\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n")
}

/// Standard base64 (with padding).
pub fn base64(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}
