//! Path normalisation: the one form both policy and the upstream see.
//!
//! Policy must match what the upstream will act on, so a request path is normalised
//! once: percent-escapes of unreserved characters are decoded (so `%2e%2e` is `..`),
//! other escapes are upper-cased and kept (`%2F` stays an escape inside one segment),
//! empty segments collapse, and dot segments are resolved (RFC 3986 5.2.4) without ever
//! climbing above the root. Matching additionally ignores `;params` in segments, so
//! `/admin;x/` cannot dodge a rule for `/admin/`.

/// The normalised path, or `Err` for paths that must never be forwarded (NUL, no root).
pub fn normalize(raw: &str) -> Result<String, &'static str> {
    if raw == "*" {
        return Ok("*".into());
    }
    if !raw.starts_with('/') {
        return Err("path must start with /");
    }
    if is_plain(raw) {
        return Ok(raw.to_string());
    }
    let decoded = decode_unreserved(raw)?;
    let out = resolve_dots(&decoded);
    // An escaped slash keeps a segment whole (`group%2Fproject` is one segment), but a
    // segment that a common server would still read as a dot segment is refused: once
    // it decodes the escape (`..%2F`), or drops a `;param` as servlet containers do
    // (`..;x`, `.;`). Such a segment is only ever sent to climb out of a base path.
    for seg in &out {
        for piece in seg.split("%2F").flat_map(|s| s.split("%5C")) {
            let (name, params) = match piece.split_once(';') {
                Some((name, _)) => (name, true),
                None => (piece, false),
            };
            if name == "." || name == ".." {
                return Err(if params {
                    "dot segment with a `;` parameter in path"
                } else {
                    "encoded dot segment in path"
                });
            }
        }
    }
    let path = join(&out, &decoded);
    Ok(path)
}

/// Whether `raw` (starting with `/`) is already normal: no escapes, no NUL, and no
/// empty, `.` or `..` segment (a trailing slash aside). Most real paths are, and
/// [`normalize`] returns them as they are without the general decode-and-resolve pass.
fn is_plain(raw: &str) -> bool {
    if raw.bytes().any(|b| b == b'%' || b == 0) {
        return false;
    }
    let mut segs = raw[1..].split('/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        match seg {
            "." | ".." => return false,
            "" if !last => return false,
            // `..;x` and `.;x`: dot segments to a servlet container.
            s if s.starts_with(".;") || s.starts_with("..;") => return false,
            _ => {}
        }
    }
    true
}

/// The form route globs are matched against: the normalised path read the way the
/// most lenient origin server would read it. `;params` are dropped, escaped slashes
/// and backslashes (`%2F`, `%5C`) count as separators, and the empty and dot segments
/// that leaves are resolved again, so `/x/..;/admin`, `/;/admin` and `/%2Fadmin` all
/// match as `/admin`.
pub fn match_form(normalized: &str) -> std::borrow::Cow<'_, str> {
    if !normalized.contains([';', '%']) {
        return normalized.into();
    }
    let mut lenient = String::with_capacity(normalized.len());
    for (i, seg) in normalized.split('/').enumerate() {
        if i > 0 {
            lenient.push('/');
        }
        lenient.push_str(seg.split(';').next().unwrap_or(""));
    }
    let lenient = lenient.replace("%2F", "/").replace("%5C", "/");
    join(&resolve_dots(&lenient), &lenient).into()
}

/// The segments of `path` with empty and `.` segments dropped and `..` resolved
/// (RFC 3986 5.2.4), never climbing above the root.
fn resolve_dots(path: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out
}

/// Join resolved segments from the root, keeping a trailing slash when `source` had
/// one (a final `.` or `..` also leaves one).
fn join(segs: &[&str], source: &str) -> String {
    let mut path = String::with_capacity(source.len());
    for s in segs {
        path.push('/');
        path.push_str(s);
    }
    let trailing = source.ends_with('/') || source.ends_with("/.") || source.ends_with("/..");
    if trailing || path.is_empty() {
        path.push('/');
    }
    path
}

fn decode_unreserved(raw: &str) -> Result<String, &'static str> {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == 0 {
            return Err("NUL in path");
        }
        if c == b'%' {
            let hex = |x: u8| (x as char).to_digit(16);
            let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|x| hex(*x)),
                b.get(i + 2).and_then(|x| hex(*x)),
            ) else {
                return Err("bad percent-escape in path");
            };
            let v = (h * 16 + l) as u8;
            if v == 0 {
                return Err("NUL in path");
            }
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(v as char);
            } else {
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
            i += 3;
            continue;
        }
        // Bytes of a valid &str are pushed through as they are (multi-byte included).
        let ch_len = utf8_len(c);
        out.push_str(&raw[i..i + ch_len]);
        i += ch_len;
    }
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`normalize`] without its fast path.
    fn normalize_general(raw: &str) -> Result<String, &'static str> {
        let decoded = decode_unreserved(raw)?;
        let out = resolve_dots(&decoded);
        Ok(join(&out, &decoded))
    }

    #[test]
    fn fast_path_agrees_with_the_general_pass() {
        // Every path of up to 5 characters over an alphabet of the interesting bytes.
        let alphabet = ['/', '.', 'a', ';', '%', '2', 'F'];
        let mut paths = vec![String::from("/")];
        for _ in 0..5 {
            let next: Vec<String> = paths
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(next);
        }
        let mut plain = 0;
        for p in &paths {
            if is_plain(p) {
                plain += 1;
                assert_eq!(
                    normalize(p).as_deref(),
                    normalize_general(p).as_deref(),
                    "{p}"
                );
            }
        }
        assert!(
            plain > 100,
            "the fast path was exercised only {plain} times"
        );
        for p in ["/", "/a", "/a/", "/a/b.c/d;e", "/.well-known/x"] {
            assert!(is_plain(p), "{p}");
        }
        for p in ["//", "/a//b", "/.", "/a/..", "/a/./b", "/%2e", "/a/../"] {
            assert!(!is_plain(p), "{p}");
        }
    }

    #[test]
    fn resolves_tricks() {
        assert_eq!(normalize("/a/../b").unwrap(), "/b");
        assert_eq!(normalize("/a/%2e%2e/b").unwrap(), "/b");
        assert_eq!(normalize("/a/%2E%2E/%2e/b").unwrap(), "/b");
        assert_eq!(normalize("/../../etc").unwrap(), "/etc");
        assert_eq!(normalize("//a///b/").unwrap(), "/a/b/");
        assert_eq!(normalize("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(normalize("/%7euser").unwrap(), "/~user");
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/a/..").unwrap(), "/");
        assert!(normalize("/a%00").is_err());
        assert!(normalize("/a%zz").is_err());
        assert!(normalize("a").is_err());
        assert_eq!(match_form("/admin;x=1/users"), "/admin/users");
        for dodge in ["/;/admin", "/%2Fadmin", "/%2F/admin", "/%5Cadmin"] {
            let n = normalize(dodge).unwrap();
            assert_eq!(match_form(&n), "/admin", "{dodge}");
        }
        assert!(normalize("/a/..%2f..%2fetc").is_err());
        assert!(normalize("/a/%2e%2e%2Fetc").is_err());
        assert!(normalize("/a/..%5Cetc").is_err());
        // Dot segments to servlet containers (Tomcat, Jetty, Spring), which drop
        // `;params` before resolving: refused, plain or encoded.
        for escape in [
            "/x/..;/admin",
            "/.;/admin",
            "/a/..;x/b",
            "/a/%2e%2e;/b",
            "/a/%2E;x/b",
            "/a/b%2F..;/c",
        ] {
            assert!(normalize(escape).is_err(), "{escape}");
        }
        assert_eq!(normalize("/a/b;v=1/c").unwrap(), "/a/b;v=1/c");
        assert_eq!(normalize("/a/...;x").unwrap(), "/a/...;x");
        assert_eq!(
            normalize("/projects/group%2fproject").unwrap(),
            "/projects/group%2Fproject"
        );
    }
}
