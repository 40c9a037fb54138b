//! What `sidekey explain` found: the routes tried with their reasons, and the
//! outcome (decision, route, credential, identity verdict, error). Printed by
//! `render.rs`.

use std::sync::Arc;

use http::Method;

use crate::config::Enforce;

/// One route tried, with why it did or did not match.
pub struct RouteReason {
    pub index: usize,
    pub route: Arc<str>,
    pub matched: bool,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// What the identity meant for the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityVerdict {
    /// The route needs no identity (and none or one was given).
    NotRequired,
    /// The route needs one and none was given.
    Missing,
    /// The route's `allow:` admits it (or an assistant route has it).
    Accepted,
    /// Outside the route's `allow:`.
    NotAllowed,
}

impl IdentityVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityVerdict::NotRequired => "not_required",
            IdentityVerdict::Missing => "missing",
            IdentityVerdict::Accepted => "accepted",
            IdentityVerdict::NotAllowed => "not_allowed",
        }
    }
}

pub struct IdentityOutcome {
    pub user: Option<String>,
    pub groups: Option<Vec<String>>,
    pub verdict: IdentityVerdict,
}

impl IdentityOutcome {
    pub(super) fn describe(&self) -> String {
        let who = match (&self.user, &self.groups) {
            (Some(u), Some(g)) => format!("{u} (groups {})", g.join(",")),
            (Some(u), None) => u.clone(),
            (None, _) => "none".into(),
        };
        format!("{who}: {}", self.verdict.as_str().replace('_', " "))
    }
}

pub struct Outcome {
    pub decision: Verdict,
    /// Report mode forwards this call uncredentialed; `error` is what enforcement says.
    pub report: bool,
    pub error: Option<&'static str>,
    pub status: Option<u16>,
    pub route: Option<Arc<str>>,
    pub auth_context: &'static str,
    pub credential: Option<Arc<str>>,
    pub source: Option<&'static str>,
    pub inject: Option<String>,
    pub enforce: Enforce,
    pub identity: IdentityOutcome,
    pub tool: Option<String>,
    pub note: String,
}

impl Outcome {
    pub(super) fn decision_label(&self) -> &'static str {
        if self.report {
            "report (allowed, uncredentialed)"
        } else {
            self.decision.as_str()
        }
    }
}

pub struct Explanation {
    pub method: Method,
    pub url: String,
    pub tried: Vec<RouteReason>,
    pub outcome: Outcome,
}

impl Explanation {
    /// The command's exit code: 0 the call would go out, 1 it would be refused.
    pub fn exit_code(&self) -> u8 {
        match self.outcome.decision {
            Verdict::Allow => 0,
            Verdict::Deny => 1,
        }
    }
}
