//! The validated `mcp:` block of a route: tool rules, list filtering, pinning and the
//! body limit. Built (and checked, with YAML paths) by `config::validate_mcp`; nothing
//! here re-checks it.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use super::glob::Glob;
use crate::config::Allow;
pub use crate::config::{PinWord, ToolAction, ToolDefault};

/// Default `max_body_bytes`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct McpConfig {
    pub rules: ToolRules,
    /// `tools/list` answers list only the tools this caller may call.
    pub filter_list: bool,
    pub pin: PinMode,
    pub max_body_bytes: usize,
}

impl McpConfig {
    /// Whether `tools/list` answers must be read at all (to filter or to pin).
    pub fn inspects_lists(&self) -> bool {
        self.filter_list || !matches!(self.pin, PinMode::Off)
    }
}

/// The ordered tool rules and the default for a call no rule applies to.
#[derive(Debug, Clone, Default)]
pub struct ToolRules {
    pub rules: Vec<ToolRule>,
    pub default: ToolDefault,
}

#[derive(Debug, Clone)]
pub struct ToolRule {
    /// Glob over `params.name`; its text is the rule's metric label.
    pub name: Glob,
    /// Every entry must match for the rule to apply.
    pub args: Vec<ArgRule>,
    pub action: ToolAction,
    /// Who an `allow` rule lets through; `None`: anyone, with or without identity.
    pub allow: Option<Allow>,
}

/// A JSON pointer into `params.arguments` and the globs its value must match.
#[derive(Debug, Clone)]
pub struct ArgRule {
    pub pointer: String,
    pub globs: Vec<Glob>,
}

/// `mcp.pin:` — how tool definitions are pinned.
#[derive(Debug, Clone, Default)]
pub enum PinMode {
    #[default]
    Off,
    /// The first definition this process sees for a tool name on this route.
    Tofu,
    /// Pins read from a file: `{"tools": {"NAME": "sha256:..."}}`.
    File {
        path: PathBuf,
        pins: HashMap<String, String>,
    },
}

impl fmt::Display for PinMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinMode::Off => f.write_str("off"),
            PinMode::Tofu => f.write_str("tofu"),
            PinMode::File { path, .. } => write!(f, "file {}", path.display()),
        }
    }
}

/// A byte size as the config writes it: `1048576`, `64KiB`, `1MiB`, `2MB`, `512B`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{text}` is not a size like 65536, 64KiB or 1MiB");
    let n: usize = num.parse().map_err(|_| bad())?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_keywords() {
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1 parsec").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert_eq!("deny".parse::<ToolAction>(), Ok(ToolAction::Deny));
        let e = "block".parse::<ToolAction>().unwrap_err().to_string();
        assert_eq!(e, "unknown action `block` (expected allow or deny)");
        assert_eq!(ToolDefault::Allow.to_string(), "allow");
        assert_eq!(ToolDefault::default(), ToolDefault::Deny);
        assert_eq!(ToolAction::default(), ToolAction::Allow);
    }
}
