//! The MCP upstream for tests: the official Python SDK's FastMCP server
//! (`tests/py/mcp_server.py`) on the Streamable HTTP transport, plus raw JSON-RPC
//! posts through sidekey for exact shapes.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::client::{Resp, gateway_request, proxy_request};
use super::processes::PyChild;

/// How an [`McpServer`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpMode {
    /// `application/json` answers (`json_response=True`).
    Json,
    /// `text/event-stream` answers.
    Sse,
}

/// A running FastMCP server (killed on drop).
pub struct McpServer {
    _proc: PyChild,
    pub addr: SocketAddr,
    pub mode: McpMode,
}

impl McpServer {
    /// Start one; `stateless` serves raw posts without `initialize`, `pages` splits
    /// `tools/list` into two pages (`nextCursor: "page-2"`).
    pub fn start(mode: McpMode, stateless: bool, pages: bool) -> McpServer {
        Self::start_with(mode, stateless, pages, &[])
    }

    /// Like [`McpServer::start`] serving HTTPS with the PEM `cert` chain and `key`.
    pub fn start_tls(mode: McpMode, cert: &std::path::Path, key: &std::path::Path) -> McpServer {
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        Self::start_with(mode, false, false, &["--tls-cert", cert, "--tls-key", key])
    }

    fn start_with(mode: McpMode, stateless: bool, pages: bool, extra: &[&str]) -> McpServer {
        let port = crate::jwt_support::free_port().to_string();
        let mut args = vec!["--port", port.as_str()];
        args.extend_from_slice(extra);
        if mode == McpMode::Json {
            args.push("--json");
        }
        if stateless {
            args.push("--stateless");
        }
        if pages {
            args.push("--pages");
        }
        let proc = PyChild::spawn("mcp_server.py", &args, &[]);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let t0 = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the FastMCP server did not listen on {addr} within 60s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        McpServer {
            _proc: proc,
            addr,
            mode,
        }
    }
}

/// PEM files (`leaf.crt`, `leaf.key`) in `dir` for a leaf of `ca` naming `names`.
pub fn write_leaf_pem(
    ca: &super::TestCa,
    names: &[&str],
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let pem = |label: &str, der: &[u8]| {
        let b64 = super::base64(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    let (chain, key) = ca.issue(names);
    let cert_path = dir.join("leaf.crt");
    let key_path = dir.join("leaf.key");
    std::fs::write(&cert_path, pem("CERTIFICATE", chain[0].as_ref())).unwrap();
    std::fs::write(&key_path, pem("PRIVATE KEY", key.secret_der())).unwrap();
    (cert_path, key_path)
}

/// Headers of an MCP POST as the SDK sends them.
pub const MCP_POST_HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

/// POST a raw JSON-RPC body to the gateway `path` with the MCP headers plus `extra`.
pub async fn mcp_gateway_post(
    proxy: SocketAddr,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let mut headers: Vec<(&str, &str)> = MCP_POST_HEADERS.to_vec();
    headers.extend_from_slice(extra);
    gateway_request(
        proxy,
        "POST",
        path,
        &headers,
        super::body::full(body.to_string()),
    )
    .await
}

/// POST a raw JSON-RPC body through the forward proxy to the absolute `url`.
pub async fn mcp_proxy_post(
    proxy: SocketAddr,
    url: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let mut headers: Vec<(&str, &str)> = MCP_POST_HEADERS.to_vec();
    headers.extend_from_slice(extra);
    proxy_request(
        proxy,
        "POST",
        url,
        &headers,
        super::body::full(body.to_string()),
    )
    .await
}

/// The JSON-RPC messages of an answer: the JSON body, or the data of every SSE event.
pub fn jsonrpc_messages(resp: &Resp) -> Vec<serde_json::Value> {
    let sse = resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if !sse {
        return match resp.json() {
            serde_json::Value::Array(items) => items,
            v => vec![v],
        };
    }
    let text = resp.text().replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .filter_map(|d| serde_json::from_str(&d).ok())
        .collect()
}

/// The names in a `tools/list` answer's `result.tools`.
pub fn tool_names(answer: &serde_json::Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no result.tools in {answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect()
}
