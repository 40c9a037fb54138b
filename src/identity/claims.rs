//! Reading the user and groups out of verified JWT claims.
//!
//! Claim names are looked up literally first (`https://example.com/groups` is one
//! Auth0-style claim), then as a dotted path into nested objects (Keycloak's
//! `realm_access.roles`). The user must be a non-empty string (or number) that passes
//! the same checks as a trusted-mode user id; groups may be one string or a list.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::MAX_USER_LEN;
use super::jwt::Reject;

/// Most groups taken from one token (Azure AD itself switches to "overage" at 200).
pub const MAX_GROUPS: usize = 1000;

/// A claim by literal name, else by dotted path.
pub fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let first = claims.get(parts.next()?)?;
    parts.try_fold(first, |v, p| v.get(p))
}

fn clean(s: &str) -> Option<Arc<str>> {
    let ok = !s.is_empty() && s.len() <= MAX_USER_LEN && !s.chars().any(char::is_control);
    ok.then(|| Arc::from(s))
}

/// The end user named by `claim`.
pub fn user(claims: &Map<String, Value>, claim: &str) -> Result<Arc<str>, Reject> {
    match lookup(claims, claim) {
        None | Some(Value::Null) => Err(Reject::MissingUser),
        Some(Value::String(s)) => clean(s).ok_or(Reject::BadUser),
        Some(Value::Number(n)) => clean(&n.to_string()).ok_or(Reject::BadUser),
        Some(_) => Err(Reject::BadUser),
    }
}

/// The user's groups from `claim`; none when the claim is absent or not configured.
pub fn groups(claims: &Map<String, Value>, claim: Option<&str>) -> Result<Vec<Arc<str>>, Reject> {
    let Some(value) = claim.and_then(|c| lookup(claims, c)) else {
        return Ok(Vec::new());
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![clean(s).ok_or(Reject::BadGroups)?]),
        Value::Array(items) if items.len() <= MAX_GROUPS => items
            .iter()
            .map(|v| v.as_str().and_then(clean).ok_or(Reject::BadGroups))
            .collect(),
        _ => Err(Reject::BadGroups),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn literal_names_win_over_dotted_paths() {
        let c = map(json!({
            "https://example.com/groups": ["a"],
            "realm_access": {"roles": ["r1", "r2"]},
            "email": "alice@example.com",
            "oid": 42,
        }));
        assert_eq!(
            groups(&c, Some("https://example.com/groups")).unwrap(),
            vec![Arc::from("a")]
        );
        assert_eq!(groups(&c, Some("realm_access.roles")).unwrap().len(), 2);
        assert_eq!(&*user(&c, "email").unwrap(), "alice@example.com");
        assert_eq!(&*user(&c, "oid").unwrap(), "42");
    }

    #[test]
    fn bad_or_missing_claims_are_refused() {
        let c = map(json!({"sub": "", "g": [1], "s": "solo", "ctl": "a\nb", "obj": {}}));
        assert_eq!(user(&c, "nope"), Err(Reject::MissingUser));
        assert_eq!(user(&c, "sub"), Err(Reject::BadUser));
        assert_eq!(user(&c, "ctl"), Err(Reject::BadUser));
        assert_eq!(user(&c, "obj"), Err(Reject::BadUser));
        assert_eq!(groups(&c, Some("g")), Err(Reject::BadGroups));
        assert_eq!(groups(&c, Some("s")).unwrap(), vec![Arc::from("solo")]);
        assert_eq!(groups(&c, Some("absent")).unwrap(), Vec::<Arc<str>>::new());
        assert_eq!(groups(&c, None).unwrap(), Vec::<Arc<str>>::new());
    }
}
