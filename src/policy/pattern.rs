//! The two matchers a route is made of: host patterns and anchored path globs.

/// The one spelling of a request host that policy and egress see: lower case, no
/// brackets, no trailing dot, and every numeric IPv4 notation a resolver would accept
/// (`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`) or IPv4-mapped IPv6 written as
/// the dotted quad, so a rule for `127.0.0.1` covers them all.
pub fn canonical_host(host: &str) -> String {
    // Fast path: a lower-case DNS name that cannot be read as a number (a letter past
    // `f`, other than the `x` of `0x`) is already canonical.
    let b = host.as_bytes();
    if b.iter().any(|c| matches!(c, b'g'..=b'w' | b'y' | b'z'))
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_'))
        && !host.ends_with('.')
    {
        return host.to_string();
    }
    let h = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if let Ok(ip) = h.parse::<std::net::IpAddr>() {
        return ip.to_canonical().to_string();
    }
    inet_aton(&h).map(|v4| v4.to_string()).unwrap_or(h)
}

/// The classic `inet_aton` forms: 1 to 4 parts, each decimal, `0x` hex or `0` octal.
fn inet_aton(h: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<&str> = h.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let n = if let Some(x) = p.strip_prefix("0x") {
            u32::from_str_radix(x, 16).ok()?
        } else if p.len() > 1 && p.starts_with('0') {
            u32::from_str_radix(&p[1..], 8).ok()?
        } else if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse().ok()?
        } else {
            return None;
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    let last_bits = 8 * (4 - head.len() as u32);
    if head.iter().any(|n| *n > 255) || (last_bits < 32 && u64::from(*last) >= 1u64 << last_bits) {
        return None;
    }
    let mut v: u32 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    Some(std::net::Ipv4Addr::from(v | last))
}

/// `api.notion.com` (exact) or `*.example.com` (any subdomain, never the apex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// The suffix after `*.`, e.g. `example.com`.
    Wildcard(String),
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let bad = || format!("`{text}` is not a host name like api.example.com or *.example.com");
        if t.is_empty() || t.contains(['/', ' ', '@', '?', '#']) {
            return Err(bad());
        }
        let bare = t.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_ok() {
            return Ok(HostPattern::Exact(bare.to_string()));
        }
        if t.contains(':') {
            return Err(format!("`{text}`: match hosts without a port"));
        }
        match t.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() && !rest.contains('*') => {
                Ok(HostPattern::Wildcard(rest.to_string()))
            }
            Some(_) => Err(bad()),
            None if t.contains('*') => Err(format!(
                "`{text}`: `*` may only start a host, as in *.example.com"
            )),
            None => Ok(HostPattern::Exact(t)),
        }
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

/// An anchored path glob: `*` matches any run of characters (including `/`),
/// everything else is literal. `/api/chat.*` matches `/api/chat.postMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob {
    source: String,
    /// The literal pieces between `*`s; `parts.len() == stars + 1`.
    parts: Vec<String>,
}

impl PathGlob {
    pub fn parse(text: &str) -> Result<Self, String> {
        if !(text.starts_with('/') || text.starts_with('*')) {
            return Err(format!(
                "`{text}` must start with `/` (paths are matched from the root)"
            ));
        }
        if text.contains(['?', '#']) {
            return Err(format!(
                "`{text}`: paths never see the query string; remove `?`/`#`"
            ));
        }
        Ok(PathGlob {
            source: text.to_string(),
            parts: text.split('*').map(str::to_string).collect(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn matches(&self, path: &str) -> bool {
        star_match(&self.parts, path)
    }

    /// The glob's first path segment when it is literal (`v1` of `/v1/*` or `/v1`):
    /// every path it matches then has that first segment. `None` when the segment
    /// holds a `*` (`/v*`, `*`).
    pub(crate) fn first_segment(&self) -> Option<&str> {
        let rest = self.source.strip_prefix('/')?;
        let seg = rest.split('/').next().unwrap_or(rest);
        (!seg.contains('*')).then_some(seg)
    }
}

/// Anchored `*` matching: `parts` are the literal pieces between the stars (`a*b` is
/// `["a", "b"]`); the first must start `text`, the last end it, the others appear in
/// order between. Shared by path globs and the MCP tool globs.
pub(crate) fn star_match(parts: &[String], text: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return text.is_empty();
    };
    let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part.as_str()) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let w = HostPattern::parse("*.Example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("badexample.com"));
        assert!(HostPattern::parse("api.x.com:443").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
        assert_eq!(
            HostPattern::parse("[::1]").unwrap(),
            HostPattern::Exact("::1".into())
        );
        assert!(
            HostPattern::parse("slack.com.")
                .unwrap()
                .matches("slack.com")
        );
    }

    #[test]
    fn numeric_hosts_have_one_spelling() {
        for h in [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "0x7f.0.0.1",
            "[::ffff:127.0.0.1]",
            "127.0.0.1.",
        ] {
            assert_eq!(canonical_host(h), "127.0.0.1", "{h}");
        }
        assert_eq!(canonical_host("Api.Test."), "api.test");
        assert_eq!(canonical_host("[::1]"), "::1");
        assert_eq!(canonical_host("1.2.3"), "1.2.0.3");
        assert_eq!(canonical_host("256.1.1.1"), "256.1.1.1");
        assert_eq!(canonical_host("08.1.1.1"), "08.1.1.1");
    }

    #[test]
    fn path_globs_are_anchored() {
        let g = PathGlob::parse("/api/chat.*").unwrap();
        assert!(g.matches("/api/chat.postMessage"));
        assert!(!g.matches("/x/api/chat.postMessage"));
        assert!(!g.matches("/api/users.list"));
        let g = PathGlob::parse("/v1/*/items").unwrap();
        assert!(g.matches("/v1/a/items"));
        assert!(!g.matches("/v1/a/items/2"));
        let exact = PathGlob::parse("/health").unwrap();
        assert!(exact.matches("/health"));
        assert!(!exact.matches("/healthz"));
        let g = PathGlob::parse("/a*a").unwrap();
        assert!(!g.matches("/a"));
        assert!(g.matches("/aa"));
        assert!(PathGlob::parse("api").is_err());
        assert!(PathGlob::parse("/a?b=1").is_err());
    }
}
