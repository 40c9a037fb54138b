//! MCP servers over Streamable HTTP: per-tool policy, `tools/list` filtering,
//! definition pinning and consent prompts on routes with an `mcp:` block.
//!
//! * [`config`]: the validated `mcp:` types (checked in `config::validate_mcp`).
//! * [`jsonrpc`]: the classifier of POST bodies (single messages and batches).
//! * [`rules`]: the pure tool decision [`rules::decide_tool`] (also used by `explain`).
//! * [`gate`]: the request side (bounded body, decisions, audit entries).
//! * [`filter`]: the response side (`tools/list` answers); [`sse`]: SSE event by event.
//! * [`pin`]: definition hashes, `tofu` / file pins, `sidekey mcp hash`.
//! * [`errors`]: refusals as JSON-RPC errors (-32001, and -32042 URL elicitation).

pub mod config;
pub(crate) mod errors;
pub mod filter;
pub(crate) mod gate;
pub mod glob;
pub mod jsonrpc;
pub mod pin;
pub mod rules;
pub mod sse;

pub use config::McpConfig;
pub use gate::McpCall;
pub use pin::PinStore;
pub use rules::decide_tool;
