//! Validation of a route's `mcp:` block: tool name and argument globs, JSON pointers,
//! allow lists, the default, the pin mode (a pin file must be readable and
//! well-formed) and `max_body_bytes`, each problem with its YAML path.

use std::path::Path;
use std::sync::Arc;

use super::Allow;
use super::raw::{RawGlobs, RawMcp, RawPin, RawToolRule};
use super::validate::{Problems, resolve_path};
use crate::mcp::config::{
    ArgRule, DEFAULT_MAX_BODY_BYTES, McpConfig, PinMode, PinWord, ToolAction, ToolDefault,
    ToolRule, ToolRules, parse_size,
};
use crate::mcp::glob::Glob;
use crate::mcp::pin::parse_pin_file;

/// Validate `routes[i].mcp` (`at` is `routes[i].mcp`).
pub(super) fn mcp(p: &mut Problems, at: &str, raw: RawMcp, base: &Path) -> Option<Arc<McpConfig>> {
    let before = p.0.len();
    let rules = raw
        .tools
        .iter()
        .enumerate()
        .filter_map(|(i, r)| rule(p, &format!("{at}.tools[{i}]"), r))
        .collect();
    let default = match raw.default.as_deref().map(str::parse::<ToolDefault>) {
        None => ToolDefault::Deny,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            p.push(format!("{at}.default"), e.to_string());
            ToolDefault::Deny
        }
    };
    let pin = match raw.pin {
        None => PinMode::Off,
        Some(RawPin::Mode(m)) => match m.parse::<PinWord>() {
            Ok(PinWord::Off) => PinMode::Off,
            Ok(PinWord::Tofu) => PinMode::Tofu,
            Err(e) => {
                p.push(format!("{at}.pin"), format!("{e}, or {{file: PATH}}"));
                PinMode::Off
            }
        },
        Some(RawPin::File(f)) => {
            let path = resolve_path(base, &f.file);
            match std::fs::read_to_string(&path) {
                Ok(text) => match parse_pin_file(&text) {
                    Ok(pins) => PinMode::File { path, pins },
                    Err(e) => {
                        p.push(format!("{at}.pin.file"), format!("{}: {e}", path.display()));
                        PinMode::Off
                    }
                },
                Err(e) => {
                    p.push(
                        format!("{at}.pin.file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    PinMode::Off
                }
            }
        }
    };
    let max_body_bytes = match raw.max_body_bytes.map(|s| parse_size(&s.text())) {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(Ok(0)) => {
            p.push(format!("{at}.max_body_bytes"), "must be at least 1 byte");
            DEFAULT_MAX_BODY_BYTES
        }
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            p.push(format!("{at}.max_body_bytes"), e);
            DEFAULT_MAX_BODY_BYTES
        }
    };
    (p.0.len() == before).then(|| {
        Arc::new(McpConfig {
            rules: ToolRules { rules, default },
            filter_list: raw.filter_list.unwrap_or(true),
            pin,
            max_body_bytes,
        })
    })
}

fn rule(p: &mut Problems, at: &str, r: &RawToolRule) -> Option<ToolRule> {
    let name = r
        .name
        .parse::<Glob>()
        .map_err(|e| p.push(format!("{at}.name"), e))
        .ok();
    let action = match r.action.as_deref().map(str::parse::<ToolAction>) {
        None => ToolAction::Allow,
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            p.push(format!("{at}.action"), e.to_string());
            ToolAction::Allow
        }
    };
    let mut args = Vec::with_capacity(r.args.len());
    for (pointer, globs) in &r.args {
        let here = format!("{at}.args.{pointer}");
        if let Err(e) = check_pointer(pointer) {
            p.push(&here, e);
            continue;
        }
        let texts: Vec<String> = match globs {
            RawGlobs::One(s) => vec![s.text()],
            RawGlobs::Many(v) => v.iter().map(|s| s.text()).collect(),
        };
        if texts.is_empty() {
            p.push(&here, "needs at least one glob");
            continue;
        }
        let parsed: Vec<Glob> = texts
            .iter()
            .enumerate()
            .filter_map(|(j, t)| {
                t.parse()
                    .map_err(|e| p.push(format!("{here}[{j}]"), e))
                    .ok()
            })
            .collect();
        args.push(ArgRule {
            pointer: pointer.clone(),
            globs: parsed,
        });
    }
    let allow = r.allow.as_ref().map(|a| Allow {
        users: a.users.clone().unwrap_or_default(),
        groups: a.groups.clone().unwrap_or_default(),
    });
    if let Some(a) = &allow {
        if action == ToolAction::Deny {
            p.push(
                format!("{at}.allow"),
                "has no effect on an `action: deny` rule",
            );
        } else if a.users.is_empty() && a.groups.is_empty() {
            p.push(
                format!("{at}.allow"),
                "needs `users` or `groups` (an empty list admits nobody)",
            );
        }
    }
    Some(ToolRule {
        name: name?,
        args,
        action,
        allow,
    })
}

/// An RFC 6901 JSON pointer into the arguments: `/a/b`, with `~0` and `~1` escapes.
fn check_pointer(ptr: &str) -> Result<(), String> {
    if !ptr.starts_with('/') {
        return Err(format!(
            "`{ptr}` is not a JSON pointer like /owner or /repo/name"
        ));
    }
    let b = ptr.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'~' && !matches!(b.get(i + 1), Some(b'0' | b'1')) {
            return Err(format!(
                "`{ptr}`: `~` must be followed by 0 or 1 (RFC 6901)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers() {
        assert!(check_pointer("/owner").is_ok());
        assert!(check_pointer("/a~1b/~0c").is_ok());
        assert!(check_pointer("owner").is_err());
        assert!(check_pointer("").is_err());
        assert!(check_pointer("/a~2").is_err());
        assert!(check_pointer("/a~").is_err());
    }
}
