//! `{user}` in path templates: one escaped path segment, whatever the user id is.
//!
//! A user id is percent-encoded so that it is always exactly one segment: `/`, `\`,
//! `%`, NUL and everything outside `[A-Za-z0-9._@+-]` is escaped, and the ids that
//! would be a dot segment (`.`, `..`) or nothing at all are refused. `../x`, `a/b` and
//! `%2e%2e` therefore name files or Vault keys *inside* the template's folder.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::identity::MAX_USER_LEN;

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'_')
    .remove(b'-')
    .remove(b'@')
    .remove(b'+');

/// The user id as one safe path segment, or `None` if it cannot be one.
pub fn escape_user(user: &str) -> Option<String> {
    if user.is_empty() || user == "." || user == ".." || user.len() > MAX_USER_LEN {
        return None;
    }
    Some(utf8_percent_encode(user, SEGMENT).to_string())
}

/// Fill `{user}` in `template`; `None` when the template needs a user and the id is unusable.
pub fn fill(template: &str, user: Option<&str>) -> Option<String> {
    if !template.contains("{user}") {
        return Some(template.to_string());
    }
    let seg = escape_user(user?)?;
    Some(template.replace("{user}", &seg))
}

/// Fill `{user}` in a URL (connect_url): query-component encoding.
pub fn fill_url(template: &str, user: Option<&str>) -> String {
    let enc = user
        .map(|u| utf8_percent_encode(u, NON_ALPHANUMERIC).to_string())
        .unwrap_or_default();
    template.replace("{user}", &enc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_stay_one_segment() {
        assert_eq!(
            fill("users/{user}/notion", Some("alice")).unwrap(),
            "users/alice/notion"
        );
        assert_eq!(fill("u/{user}", Some("../x")).unwrap(), "u/..%2Fx");
        assert_eq!(fill("u/{user}", Some("a/b")).unwrap(), "u/a%2Fb");
        assert_eq!(fill("u/{user}", Some("%2e%2e")).unwrap(), "u/%252e%252e");
        assert_eq!(fill("u/{user}", Some("a\\b")).unwrap(), "u/a%5Cb");
        assert_eq!(
            fill("u/{user}", Some("alice@example.com")).unwrap(),
            "u/alice@example.com"
        );
        assert_eq!(fill("u/{user}", Some("..")), None);
        assert_eq!(fill("u/{user}", Some("")), None);
        assert_eq!(fill("u/{user}", None), None);
        assert_eq!(fill("u/{user}", Some(&"a".repeat(300))), None);
        assert_eq!(fill("fixed", None).unwrap(), "fixed");
    }

    #[test]
    fn connect_url_is_query_encoded() {
        assert_eq!(
            fill_url("https://x/connect?user={user}", Some("a b&c")),
            "https://x/connect?user=a%20b%26c"
        );
    }
}
