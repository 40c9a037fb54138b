//! Name globs of MCP tool rules: `*` matches any run of characters, everything else
//! is literal, and a glob is anchored at both ends (`get_*` matches `get_issue`, not
//! `xget_issue`). Used for tool names and for argument values.

use std::fmt;
use std::str::FromStr;

/// One anchored glob, parsed once from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    /// The literal pieces between `*`s; `parts.len() == stars + 1`.
    parts: Vec<String>,
}

impl Glob {
    /// The glob as written in the config.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, text: &str) -> bool {
        crate::policy::star_match(&self.parts, text)
    }
}

impl FromStr for Glob {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("a glob must not be empty (use `*` for any value)".into());
        }
        Ok(Glob {
            source: s.to_string(),
            parts: s.split('*').map(str::to_string).collect(),
        })
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_anchored() {
        let g: Glob = "get_*".parse().unwrap();
        assert!(g.matches("get_issue"));
        assert!(g.matches("get_"));
        assert!(!g.matches("xget_issue"));
        assert!(!g.matches("get"));
        let exact: Glob = "create_issue".parse().unwrap();
        assert!(exact.matches("create_issue"));
        assert!(!exact.matches("create_issues"));
        let mid: Glob = "a*b*c".parse().unwrap();
        assert!(mid.matches("abc") && mid.matches("axxbyyc"));
        assert!(!mid.matches("acb"));
        assert!("*".parse::<Glob>().unwrap().matches("anything"));
        assert!("".parse::<Glob>().is_err());
        assert_eq!("x*".parse::<Glob>().unwrap().to_string(), "x*");
    }
}
