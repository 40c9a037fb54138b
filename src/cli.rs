//! The command line: `run` (and `run -- CMD`), `check`, `explain`, `env`, `connect`,
//! `ca init`, `ca env`, `mcp hash`, `--version`.
//!
//! Exit codes: 0 ok, 2 invalid config or usage, 1 any other start-up failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};

#[derive(Parser)]
#[command(
    name = "sidekey",
    version,
    about = "Credential-injecting sidecar proxy for AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConfigArg {
    /// Config file.
    #[arg(long, short, env = "SIDEKEY_CONFIG", default_value = "sidekey.yaml")]
    config: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// With CMD: the end user CMD acts for, passed to it as SIDEKEY_USER.
    #[arg(long, requires = "command")]
    user: Option<String>,
    /// Development: run CMD through sidekey, then stop and exit with its status.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<std::ffi::OsString>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve; with `-- CMD ARGS`, serve only while CMD runs (see docs/devloop.md).
    Run(RunArgs),
    /// Print the proxy and trust variables for a shell: eval "$(sidekey env)".
    Env(ConfigArg),
    /// Validate the config and print the routes table.
    Check(ConfigArg),
    /// Serve only the connect pages (users connecting their accounts), on `connect.listen`.
    Connect(ConfigArg),
    /// Manage the local CA used for HTTPS interception.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Explain which route, credential and decision one request would get (sends nothing).
    Explain(crate::explain::command::ExplainArgs),
    /// Tools for MCP routes.
    #[command(subcommand)]
    Mcp(McpCommand),
}

#[derive(Subcommand)]
enum McpCommand {
    /// Print a pin file for the tools of a tools/list result or response (JSON, or
    /// the SSE stream carrying it), read from FILE or stdin.
    Hash {
        /// Input file (stdin when absent).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Write ca.crt and ca.key into DIR.
    Init {
        #[arg(long)]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the environment that makes common runtimes trust the CA.
    Env {
        #[arg(long)]
        ca: PathBuf,
        /// Where to write the bundle of system roots plus the CA (default: next to the CA).
        #[arg(long)]
        bundle_out: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(a) => check(&a.config),
        Command::Run(a) if a.command.is_empty() => run(&a.config.config, false),
        Command::Run(a) => match load_or_report(&a.config.config)
            .and_then(|cfg| generate_ca(&cfg, &a.config.config).map(|()| cfg))
        {
            Ok(cfg) => {
                crate::logging::init();
                crate::devloop::run_command(cfg, a.user, a.command)
            }
            Err(code) => code,
        },
        Command::Connect(a) => run(&a.config, true),
        Command::Explain(a) => crate::explain::command::run(a),
        Command::Env(a) => crate::devloop::print_env(&a.config),
        Command::Ca(CaCommand::Init { out, force }) => {
            match crate::tls::CertificateAuthority::init_dir(&out, force) {
                Ok((cert, key)) => {
                    println!("wrote {} and {}", cert.display(), key.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sidekey: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Ca(CaCommand::Env { ca, bundle_out }) => ca_env(&ca, bundle_out),
        Command::Mcp(McpCommand::Hash { file }) => mcp_hash(file.as_deref()),
    }
}

fn load_or_report(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(2)
    })
}

/// `tls.generate: true`: create the development CA before anything loads it (the
/// serving commands and `env`; never `check`).
pub(crate) fn generate_ca(cfg: &Config, path: &Path) -> Result<(), ExitCode> {
    let Some(tls) = cfg.tls.as_ref().filter(|t| t.generate) else {
        return Ok(());
    };
    match crate::tls::ensure_generated(&tls.ca_cert, &tls.ca_key) {
        Ok(true) => {
            eprintln!(
                "sidekey: generated a development CA: {} (trust it: eval \"$(sidekey env --config {})\")",
                tls.ca_cert.display(),
                path.display()
            );
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => {
            eprintln!("{}: {}: {e}", path.display(), e.field());
            Err(ExitCode::from(2))
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let cfg = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if matches!(cfg.identity.mode, config::IdentityMode::Trusted) {
        for (i, r) in cfg.routes.iter().enumerate() {
            if r.allow.as_ref().is_some_and(|a| !a.groups.is_empty()) {
                eprintln!(
                    "{}: warning: routes[{i}].allow.groups: trusted identities carry no groups, so only `allow.users` can match (use identity.mode: jwt)",
                    path.display()
                );
            }
            let rules = r.mcp.iter().flat_map(|m| m.rules.rules.iter()).enumerate();
            for (j, rule) in rules {
                if rule.allow.as_ref().is_some_and(|a| !a.groups.is_empty()) {
                    eprintln!(
                        "{}: warning: routes[{i}].mcp.tools[{j}].allow.groups: trusted identities carry no groups, so only `allow.users` can match (use identity.mode: jwt)",
                        path.display()
                    );
                }
            }
        }
    }
    for e in cfg.runtime_problems() {
        eprintln!(
            "{}: warning: {e} in this environment (`sidekey run` needs it)",
            path.display()
        );
    }
    for (name, c) in &cfg.credentials {
        match &c.source {
            config::SourceSpec::Env { var } if std::env::var_os(var).is_none() => eprintln!(
                "{}: warning: credentials.{name}.env: {var} is not set in this environment",
                path.display()
            ),
            // A per-user file appears when the user connects; a fixed one must be there.
            config::SourceSpec::File { template } if !c.per_user() && !template.is_file() => {
                eprintln!(
                    "{}: warning: credentials.{name}.file: {} does not exist or is not a file",
                    path.display(),
                    template.display()
                )
            }
            _ => {}
        }
    }
    println!(
        "{}: ok ({} routes, default {})",
        path.display(),
        cfg.routes.len(),
        cfg.default_action
    );
    if let Some(c) = &cfg.connect {
        let names: Vec<&str> = c.credentials.keys().map(String::as_str).collect();
        println!(
            "connect: links to {} ({}), pages {}; connectable: {}",
            c.public_url,
            if c.verify_user.is_some() {
                "verify_user"
            } else {
                "no verify_user"
            },
            c.listen
                .map_or("served elsewhere".into(), |l| format!("on {l}")),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
    }
    println!(
        "{:<4} {:<24} {:<44} {:<11} {:<20} INJECT",
        "#", "ROUTE", "MATCH", "AUTH", "CREDENTIAL"
    );
    for (i, r) in cfg.routes.iter().enumerate() {
        let matcher = match &r.gateway {
            Some(g) => format!(
                "gateway {} -> {}://{}{}",
                g.prefix, g.scheme, g.authority, g.base_path
            ),
            None => r.matcher.to_string(),
        };
        let auth = r.action.as_str();
        let cred = r
            .credential
            .as_ref()
            .map(|c| format!("{} ({})", c.name, c.source_name()))
            .unwrap_or_else(|| "-".into());
        let inject = if r.credential.is_some() {
            r.effective_inject().to_string()
        } else {
            "-".into()
        };
        println!(
            "{:<4} {:<24} {:<44} {:<11} {:<20} {}",
            i, r.name, matcher, auth, cred, inject
        );
    }
    ExitCode::SUCCESS
}

/// `sidekey run`, or with `connect_only` `sidekey connect`.
fn run(path: &Path, connect_only: bool) -> ExitCode {
    crate::logging::init();
    let cfg = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = generate_ca(&cfg, path) {
        return code;
    }
    let problems = cfg.runtime_problems();
    if !problems.is_empty() {
        for e in &problems {
            eprintln!("{}: {e}", path.display());
        }
        return ExitCode::from(2);
    }
    if connect_only && cfg.connect.as_ref().and_then(|c| c.listen).is_none() {
        eprintln!(
            "{}: connect.listen: missing: `sidekey connect` serves the connect pages there",
            path.display()
        );
        return ExitCode::from(2);
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let listeners = if connect_only {
            crate::server::Listeners::bind_connect(&cfg).await?
        } else {
            crate::server::Listeners::bind(&cfg).await?
        };
        crate::server::run(cfg, listeners, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "sidekey stopped");
            eprintln!("sidekey: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The serving runtime (`SIDEKEY_WORKERS` threads), or exit 1 saying why not.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    runtime_builder(worker_threads())
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("sidekey: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

/// One worker: a current-thread runtime, which does the same work as a one-worker
/// multi-thread runtime without the work-stealing machinery (atomics, a second
/// thread for `block_on`, cross-thread wake-ups). More: a multi-thread runtime.
fn runtime_builder(workers: usize) -> tokio::runtime::Builder {
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    }
}

/// `SIDEKEY_WORKERS` if set, else one per core.
fn worker_threads() -> usize {
    std::env::var("SIDEKEY_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn ca_env(ca: &Path, bundle_out: Option<PathBuf>) -> ExitCode {
    let pem = match std::fs::read_to_string(ca) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sidekey: cannot read {}: {e}", ca.display());
            return ExitCode::from(1);
        }
    };
    let out = bundle_out.unwrap_or_else(|| ca.with_file_name("trust-bundle.pem"));
    if let Err(e) = crate::tls::write_trust_bundle(&pem, &out) {
        eprintln!("sidekey: {e}");
        return ExitCode::from(1);
    }
    for line in crate::tls::ca_env_lines(&out) {
        println!("{line}");
    }
    ExitCode::SUCCESS
}

/// `sidekey mcp hash [FILE]`: exit 0 with the pin file on stdout, 2 on bad input.
fn mcp_hash(file: Option<&Path>) -> ExitCode {
    use std::io::Read;
    let mut text = String::new();
    let read = match file {
        Some(f) => std::fs::read_to_string(f).map(|t| text = t),
        None => std::io::stdin().read_to_string(&mut text).map(drop),
    };
    if let Err(e) = read {
        let what = file.map_or("stdin".into(), |f| f.display().to_string());
        eprintln!("sidekey: cannot read {what}: {e}");
        return ExitCode::from(2);
    }
    let answer = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .or_else(|| sse_answers(&text));
    let Some(answer) = answer else {
        eprintln!("sidekey: the input is neither JSON nor an SSE stream of JSON-RPC messages");
        return ExitCode::from(2);
    };
    match crate::mcp::pin::pin_file(&answer) {
        Ok(pins) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&pins).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sidekey: {e}");
            ExitCode::from(2)
        }
    }
}

/// The JSON messages of an SSE stream's events, as one batch.
fn sse_answers(text: &str) -> Option<serde_json::Value> {
    let mut out = Vec::new();
    for event in text.replace("\r\n", "\n").split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if let Ok(v) = serde_json::from_str(&data.join("\n")) {
            out.push(v);
        }
    }
    (!out.is_empty()).then_some(serde_json::Value::Array(out))
}
