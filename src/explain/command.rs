//! `sidekey explain`'s arguments and its run: parse, load the config as `check`
//! does, explain, print (text or `--json`), exit 0 (allowed) / 1 (refused) / 2
//! (invalid config or arguments).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use http::Method;

use super::{Query, explain, json, text};

#[derive(Args)]
pub struct ExplainArgs {
    /// Config file.
    #[arg(long, short, env = "SIDEKEY_CONFIG", default_value = "sidekey.yaml")]
    config: PathBuf,
    /// The verified end user the request is for (whatever `identity.mode` is).
    #[arg(long)]
    user: Option<String>,
    /// The user's groups, comma-separated (as a verified JWT would carry them).
    #[arg(long, value_delimiter = ',', requires = "user")]
    groups: Option<Vec<String>>,
    /// An MCP `tools/call` tool name (routes with an `mcp:` block).
    #[arg(long)]
    tool: Option<String>,
    /// The tool call's arguments, a JSON object.
    #[arg(long, requires = "tool")]
    args: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The request method (GET, POST, ...).
    method: String,
    /// The URL the agent calls: `https://api.example.com/x`, or a gateway URL on the
    /// proxy listener (`http://127.0.0.1:15080/slack/...`, or just `/slack/...`).
    url: String,
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("sidekey explain: {msg}");
    ExitCode::from(2)
}

pub fn run(a: ExplainArgs) -> ExitCode {
    let Ok(method) = Method::from_bytes(a.method.to_ascii_uppercase().as_bytes()) else {
        return usage(format!("`{}` is not an HTTP method", a.method));
    };
    let tool = match (a.tool, a.args.as_deref()) {
        (None, _) => None,
        (Some(name), None) => Some((name, serde_json::Value::Object(Default::default()))),
        (Some(name), Some(text)) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v @ serde_json::Value::Object(_)) => Some((name, v)),
            Ok(_) => return usage("--args must be a JSON object"),
            Err(e) => return usage(format!("--args is not JSON: {e}")),
        },
    };
    if tool.as_ref().is_some_and(|(n, _)| n.is_empty()) {
        return usage("--tool needs a name");
    }
    let cfg = match crate::config::load(&a.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let q = Query {
        method,
        url: a.url,
        user: a.user,
        groups: a.groups,
        tool,
    };
    match explain(&cfg, &q) {
        Ok(e) => {
            if a.json {
                println!("{}", json(&e));
            } else {
                print!("{}", text(&e));
            }
            ExitCode::from(e.exit_code())
        }
        Err(e) => usage(e),
    }
}
