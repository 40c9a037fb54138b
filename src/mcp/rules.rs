//! The tool decision: a pure function of (rule set, identity, tool name, arguments).
//!
//! [`decide_tool`] is what the request path applies to every `tools/call` and what
//! `sidekey explain --tool` evaluates offline; [`tool_visible`] is its list-time
//! counterpart (could some rule allow this caller to call the tool?).

use serde_json::Value;

use super::config::{ArgRule, ToolAction, ToolDefault, ToolRule, ToolRules};
use crate::config::Allow;
use crate::identity::Identity;

/// The `rule` label and audit name of a call no rule applied to.
pub const DEFAULT_RULE: &str = "default";

/// The outcome of one `tools/call` under a rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolDecision {
    /// Index of the rule that applied, `None` when the default decided.
    pub rule_index: Option<usize>,
    /// The applying rule's `name` pattern, or [`DEFAULT_RULE`]: never a raw request value.
    pub rule: String,
    /// `None`: allowed. Otherwise why not.
    pub refusal: Option<ToolRefusal>,
}

impl ToolDecision {
    #[cfg(test)]
    pub(crate) fn allowed(&self) -> bool {
        self.refusal.is_none()
    }

    /// The error code a refusal carries (`tool_denied`, `identity_required`, ...).
    pub fn error_code(&self) -> Option<&'static str> {
        self.refusal.map(ToolRefusal::code)
    }
}

/// Why a `tools/call` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolRefusal {
    /// An `action: deny` rule applied, or `default: deny` with no rule applying.
    Denied,
    /// The applying rule has an allow list and the request carries no identity.
    IdentityRequired,
    /// The identity is outside the applying rule's allow list.
    UserNotAllowed,
}

impl ToolRefusal {
    pub fn code(self) -> &'static str {
        match self {
            ToolRefusal::Denied => "tool_denied",
            ToolRefusal::IdentityRequired => "identity_required",
            ToolRefusal::UserNotAllowed => "user_not_allowed",
        }
    }
}

/// Decide one `tools/call` of `name` with `args` (`params.arguments`, `Null` if absent).
pub fn decide_tool(
    rules: &ToolRules,
    identity: Option<&Identity>,
    name: &str,
    args: &Value,
) -> ToolDecision {
    for (i, rule) in rules.rules.iter().enumerate() {
        if !rule_applies(rule, name, args) {
            continue;
        }
        let refusal = match rule.action {
            ToolAction::Deny => Some(ToolRefusal::Denied),
            ToolAction::Allow => admits(rule.allow.as_ref(), identity).err(),
        };
        return ToolDecision {
            rule_index: Some(i),
            rule: rule.name.to_string(),
            refusal,
        };
    }
    ToolDecision {
        rule_index: None,
        rule: DEFAULT_RULE.to_string(),
        refusal: match rules.default {
            ToolDefault::Allow => None,
            ToolDefault::Deny => Some(ToolRefusal::Denied),
        },
    }
}

/// Whether some rule could allow this caller to call `name` (arguments are only known
/// at call time, so a rule with `args` may or may not apply then).
pub fn tool_visible(rules: &ToolRules, identity: Option<&Identity>, name: &str) -> bool {
    for rule in &rules.rules {
        if !rule.name.matches(name) {
            continue;
        }
        let certain = rule.args.is_empty();
        let allows =
            rule.action == ToolAction::Allow && admits(rule.allow.as_ref(), identity).is_ok();
        if allows {
            return true;
        }
        if certain {
            // This rule applies to every call of the tool, and refuses it.
            return false;
        }
    }
    rules.default == ToolDefault::Allow
}

fn rule_applies(rule: &ToolRule, name: &str, args: &Value) -> bool {
    rule.name.matches(name) && rule.args.iter().all(|a| arg_matches(a, args))
}

fn arg_matches(rule: &ArgRule, args: &Value) -> bool {
    let text = match args.pointer(&rule.pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return false,
    };
    rule.globs.iter().any(|g| g.matches(&text))
}

/// An allow list admits a user named in `users` or a member of one of `groups`; no
/// list admits anyone.
fn admits(allow: Option<&Allow>, identity: Option<&Identity>) -> Result<(), ToolRefusal> {
    let Some(allow) = allow else {
        return Ok(());
    };
    let Some(id) = identity else {
        return Err(ToolRefusal::IdentityRequired);
    };
    let user_ok = allow.users.iter().any(|u| **u == *id.user);
    let group_ok = id
        .groups
        .iter()
        .flatten()
        .any(|g| allow.groups.iter().any(|a| **a == **g));
    if user_ok || group_ok {
        Ok(())
    } else {
        Err(ToolRefusal::UserNotAllowed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    fn rule(name: &str, args: &[(&str, &[&str])], action: ToolAction, groups: &[&str]) -> ToolRule {
        ToolRule {
            name: name.parse().unwrap(),
            args: args
                .iter()
                .map(|(p, gs)| ArgRule {
                    pointer: p.to_string(),
                    globs: gs.iter().map(|g| g.parse().unwrap()).collect(),
                })
                .collect(),
            action,
            allow: (!groups.is_empty()).then(|| Allow {
                users: vec![],
                groups: groups.iter().map(|g| g.to_string()).collect(),
            }),
        }
    }

    fn spec_rules() -> ToolRules {
        ToolRules {
            rules: vec![
                rule("get_*", &[], ToolAction::Allow, &[]),
                rule(
                    "create_issue",
                    &[("/owner", &["acme"])],
                    ToolAction::Allow,
                    &["eng"],
                ),
                rule("delete_*", &[], ToolAction::Deny, &[]),
            ],
            default: ToolDefault::Deny,
        }
    }

    fn who(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: Arc::from(user),
            groups: Some(groups.iter().map(|g| Arc::from(*g)).collect()),
            token: None,
        }
    }

    #[test]
    fn first_applying_rule_decides() {
        let r = spec_rules();
        let eng = who("ann", &["eng"]);
        let d = decide_tool(&r, None, "get_issue", &json!({}));
        assert!(d.allowed());
        assert_eq!((d.rule.as_str(), d.rule_index), ("get_*", Some(0)));
        let d = decide_tool(&r, Some(&eng), "create_issue", &json!({"owner": "acme"}));
        assert!(d.allowed(), "{d:?}");
        let d = decide_tool(&r, None, "create_issue", &json!({"owner": "acme"}));
        assert_eq!(d.error_code(), Some("identity_required"));
        let d = decide_tool(
            &r,
            Some(&who("bob", &["ops"])),
            "create_issue",
            &json!({"owner": "acme"}),
        );
        assert_eq!(d.error_code(), Some("user_not_allowed"));
        // The argument does not match: the rule does not apply, the default denies.
        let d = decide_tool(&r, Some(&eng), "create_issue", &json!({"owner": "evil"}));
        assert_eq!(
            (d.rule.as_str(), d.error_code()),
            ("default", Some("tool_denied"))
        );
        let d = decide_tool(&r, Some(&eng), "delete_repo", &json!(null));
        assert_eq!(
            (d.rule.as_str(), d.error_code()),
            ("delete_*", Some("tool_denied"))
        );
    }

    #[test]
    fn argument_values_are_strings_or_numbers() {
        let r = ToolRules {
            rules: vec![rule(
                "t",
                &[("/n", &["4*"]), ("/a/0", &["x"])],
                ToolAction::Allow,
                &[],
            )],
            default: ToolDefault::Deny,
        };
        assert!(decide_tool(&r, None, "t", &json!({"n": 42, "a": ["x"]})).allowed());
        assert!(decide_tool(&r, None, "t", &json!({"n": "4", "a": ["x"]})).allowed());
        assert!(!decide_tool(&r, None, "t", &json!({"n": true, "a": ["x"]})).allowed());
        assert!(!decide_tool(&r, None, "t", &json!({"n": 42})).allowed());
        assert!(!decide_tool(&r, None, "t", &json!({"n": {"x": 1}, "a": ["x"]})).allowed());
    }

    #[test]
    fn visibility_follows_what_could_be_allowed() {
        let r = spec_rules();
        assert!(tool_visible(&r, None, "get_x"));
        assert!(!tool_visible(&r, None, "create_issue"));
        assert!(tool_visible(&r, Some(&who("a", &["eng"])), "create_issue"));
        assert!(!tool_visible(&r, Some(&who("a", &["eng"])), "delete_repo"));
        assert!(!tool_visible(&r, None, "unknown"));
        let mut open = r.clone();
        open.default = ToolDefault::Allow;
        assert!(tool_visible(&open, None, "unknown"));
        assert!(!tool_visible(&open, None, "delete_repo"));
        // A deny rule with args may not apply: the tool stays visible under allow.
        open.rules
            .insert(0, rule("x", &[("/a", &["1"])], ToolAction::Deny, &[]));
        assert!(tool_visible(&open, None, "x"));
    }
}
