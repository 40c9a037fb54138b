//! Path normalisation and route matching on arbitrary hosts, paths and methods.
//!
//! Always checked (the product's own claims):
//! * `normalize` never panics; its output starts with `/` (or is `*`), has no empty,
//!   `.` or `..` segment, and is a fixed point (`normalize(normalize(p)) == normalize(p)`);
//! * `match_form`, `RouteTable::first_match`, `gateway_match` and `connect_plan` never panic;
//!   a gateway remainder always starts with `/`.
//!
//! With `SIDEKEY_FUZZ_STRICT=1` also: a request that a typical origin server would
//! route to `/admin...` (decode once, `\` as `/`, `;params` dropped, dot segments
//! resolved) is either refused by `normalize` or decided by the `no-admin` deny route.
//! Known violations are listed in docs/hardening.md; the strict mode is for finding
//! new classes, so it is off by default. `SIDEKEY_FUZZ_STRICT_SKIP="; %2f"` skips paths
//! holding any of those substrings, to look past a class already known.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sidekey::policy::{MatchInput, RouteTable, match_form, normalize};

const YAML: &str = r#"
version: 1
agent: fuzz
default: deny
credentials:
  c:
    source: env
    env: FUZZ_TOKEN
routes:
  - name: no-admin
    match: {host: api.test, path: "/admin*"}
    auth: deny
  - name: chat
    match: {host: api.test, path: "/api/chat.*", methods: [POST]}
    auth: claw
    credential: c
  - name: items
    match: {host: "*.wild.test", path: "/v1/*/items"}
    auth: claw
    credential: c
  - name: ip
    match: {host: 127.0.0.1, path: "/allowed/*"}
    auth: passthrough
  - name: api
    match: {host: api.test}
    auth: claw
    credential: c
  - name: public
    match: {path: "/public/*"}
    auth: passthrough
  - name: gw
    gateway: {prefix: /slack, upstream: "https://slack.com/api"}
    auth: claw
    credential: c
"#;

struct Fixture {
    table: RouteTable,
    default: sidekey::config::DefaultAction,
    strict: bool,
    /// `SIDEKEY_FUZZ_STRICT_SKIP`: space-separated substrings (case-insensitive); paths
    /// holding one are not checked in strict mode, to look past a known bypass class.
    skip: Vec<String>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let cfg = sidekey::config::from_str(YAML, Path::new("f.yaml"), Path::new("/tmp"))
            .unwrap_or_else(|e| panic!("fixture config invalid: {e:?}"));
        Fixture {
            table: RouteTable::new(&cfg.routes),
            default: cfg.default_action,
            strict: std::env::var("SIDEKEY_FUZZ_STRICT").is_ok_and(|v| v == "1"),
            skip: std::env::var("SIDEKEY_FUZZ_STRICT_SKIP")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_ascii_lowercase)
                .collect(),
        }
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    host_pick: u8,
    host: String,
    method_pick: u8,
    path: String,
}

const HOSTS: [&str; 5] = [
    "api.test",
    "a.wild.test",
    "127.0.0.1",
    "other.test",
    "wild.test",
];
const METHODS: [http::Method; 5] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::OPTIONS,
];

/// How a typical origin server reads a path: decoded once, `\` as `/`, `;params`
/// dropped per segment, dot segments resolved.
fn origin_view(path: &str) -> String {
    let bytes = percent_encoding::percent_decode_str(path).collect::<Vec<u8>>();
    let decoded = String::from_utf8_lossy(&bytes).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let host = if input.host_pick < 200 {
        HOSTS[input.host_pick as usize % HOSTS.len()].to_string()
    } else {
        input.host.to_ascii_lowercase()
    };
    let method = &METHODS[input.method_pick as usize % METHODS.len()];
    let path = input.path.as_str();

    let _ = f.table.connect_plan(&host, f.default);

    let Ok(n) = normalize(path) else {
        return;
    };
    if n != "*" {
        assert!(
            n.starts_with('/'),
            "{path:?} -> {n:?} does not start with /"
        );
        for seg in n[1..].split('/').rev().skip(1) {
            // every segment but a trailing empty one (a trailing slash is kept)
            assert!(
                !matches!(seg, "" | "." | ".."),
                "{path:?} -> {n:?} has an empty or dot segment"
            );
        }
        let last = n.rsplit('/').next().unwrap_or("");
        assert!(
            !matches!(last, "." | ".."),
            "{path:?} -> {n:?} ends in a dot segment"
        );
        assert!(!n.contains("/../"), "{path:?} -> {n:?}");
        assert_eq!(
            normalize(&n).as_deref(),
            Ok(n.as_str()),
            "normalize is not idempotent on {path:?}"
        );
    }
    let m = match_form(&n);
    let decided = f.table.first_match(&MatchInput {
        host: &host,
        path: m.as_ref(),
        method,
    });
    if let Some((_, rest)) = f.table.gateway_match(&n, method) {
        assert!(rest.starts_with('/'), "gateway rest {rest:?} for {path:?}");
    }

    let lower = path.to_ascii_lowercase();
    if f.strict && host == "api.test" && !f.skip.iter().any(|s| lower.contains(s.as_str())) {
        let view = origin_view(path);
        if view == "/admin" || view.starts_with("/admin") {
            let name = decided.map(|r| r.name.to_string());
            assert_eq!(
                name.as_deref(),
                Some("no-admin"),
                "{path:?} reaches an origin as {view:?} but sidekey matched it as {m:?}"
            );
        }
    }
});
