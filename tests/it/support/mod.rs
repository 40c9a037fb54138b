//! Shared black-box harness for sidekey's integration tests.
//!
//! * [`Sidekey`] runs the real binary from a temp dir and captures every byte it writes.
//! * [`Upstream`] is a recording hyper server standing in for the tool APIs.
//! * [`client`] sends requests through the proxy (absolute-form) or to the gateway.
//! * [`assert`] holds contract checks shared by several test files.
//! * [`devloop`]: `sidekey run -- CMD` / `sidekey env` as processes, fixed ports.
//! * HTTPS: [`TlsUpstream`] (a recording TLS upstream), [`test_ca`] and [`SidekeyCa`],
//!   [`processes`] (curl, Python clients), [`tunnel`] (raw CONNECT), [`websocket`].
//!
//! Every test builds its own instances; nothing uses a fixed port, so tests run in
//! parallel safely.
#![allow(dead_code, unused_imports)]

pub mod assert;
pub mod body;
pub mod client;
pub mod devloop;
pub mod processes;
pub mod sidekey;
pub mod test_ca;
pub mod tls_upstream;
pub mod tunnel;
pub mod upstream;
pub mod websocket;

pub use assert::*;
pub use body::*;
pub use client::*;
pub use devloop::*;
pub use processes::*;
pub use sidekey::*;
pub use test_ca::*;
pub use tls_upstream::*;
pub use tunnel::*;
pub use upstream::*;
pub use websocket::*;

/// The fixed head of every test config: version, agent name, ephemeral listeners.
pub fn yaml_head(agent: &str) -> String {
    format!("version: 1\nagent: {agent}\nlisten: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n")
}

/// Standard base64 (with padding), so tests need no extra crate.
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}
