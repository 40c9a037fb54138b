//! The command line: `run` (and `run -- CMD`), `check`, `env`, `ca init`, `ca env`,
//! `--version`.
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
    /// Manage the local CA used for HTTPS interception.
    #[command(subcommand)]
    Ca(CaCommand),
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
        Command::Run(a) if a.command.is_empty() => run(&a.config.config),
        Command::Run(a) => match load_or_report(&a.config.config) {
            Ok(cfg) => {
                crate::logging::init();
                crate::devloop::run_command(cfg, a.user, a.command)
            }
            Err(code) => code,
        },
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
    }
}

fn load_or_report(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(2)
    })
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
        }
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

fn run(path: &Path) -> ExitCode {
    crate::logging::init();
    let cfg = match load_or_report(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let listeners = crate::server::Listeners::bind(&cfg).await?;
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
