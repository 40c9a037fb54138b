//! Hot-path costs: route matching at 10 / 1,000 / 10,000 routes, and building an
//! injected upstream request (header hygiene + injection).
//!
//!     cargo bench --bench proxy

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use sidekey::config::{self, Inject};
use sidekey::credentials::Token;
use sidekey::policy::{MatchInput, RouteTable};
use sidekey::proxy::{headers, inject};

/// A route table from `n` claw routes, route `i` matching `condition(i)`, and `extra`
/// YAML routes after them.
fn table_of(n: usize, condition: impl Fn(usize) -> String, extra: &str) -> RouteTable {
    let mut yaml = String::from(
        "version: 1\nagent: bench\ncredentials:\n  c: {source: env, env: BENCH_TOKEN}\nroutes:\n",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{name: r{i}, match: {{{}}}, auth: claw, credential: c}}\n",
            condition(i)
        ));
    }
    yaml.push_str(extra);
    let cfg = config::from_str(&yaml, Path::new("bench.yaml"), Path::new("."))
        .unwrap_or_else(|e| panic!("bench config invalid: {e:?}"));
    RouteTable::new(&cfg.routes)
}

/// `n` routes on distinct hosts, then a wildcard host route.
fn table(n: usize) -> RouteTable {
    table_of(
        n,
        |i| format!("host: api{i}.example.com, path: \"/v1/items*\", methods: [GET, POST]"),
        "  - {name: wild, match: {host: \"*.tools.example.com\"}, auth: passthrough}\n",
    )
}

/// `n` routes on one host, each under its own first path segment, the hit last.
fn one_host_table(n: usize) -> RouteTable {
    table_of(
        n,
        |i| format!("host: api.example.com, path: \"/r{i}/*\""),
        "",
    )
}

fn matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_match");
    for n in [10usize, 1_000, 10_000] {
        let t = table(n);
        let host = format!("api{}.example.com", n / 2);
        g.bench_function(format!("{n}_routes"), |b| {
            b.iter(|| {
                let m = MatchInput {
                    host: &host,
                    path: "/v1/items/42",
                    method: &Method::POST,
                };
                black_box(t.first_match(black_box(&m)).is_some())
            })
        });
        g.bench_function(format!("{n}_routes_miss"), |b| {
            b.iter(|| {
                let m = MatchInput {
                    host: "unknown.example.org",
                    path: "/",
                    method: &Method::GET,
                };
                black_box(t.first_match(black_box(&m)).is_none())
            })
        });
    }
    for n in [10usize, 1_000, 10_000] {
        let t = one_host_table(n);
        let path = format!("/r{}/items/42", n - 1);
        g.bench_function(format!("{n}_routes_one_host"), |b| {
            b.iter(|| {
                let m = MatchInput {
                    host: "api.example.com",
                    path: &path,
                    method: &Method::GET,
                };
                black_box(t.first_match(black_box(&m)).is_some())
            })
        });
    }
    g.finish();
}

fn injected_request(c: &mut Criterion) {
    let token = Token::bare("xoxb-bench-token-0123456789".into());
    let identity = HeaderName::from_static("x-sidekey-user");
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("user-agent", "python-httpx/0.27"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("authorization", "Bearer agent-supplied"),
        ("x-sidekey-user", "alice"),
        ("connection", "keep-alive"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ] {
        base.insert(k, HeaderValue::from_static(v));
    }
    c.bench_function("build_injected_request", |b| {
        b.iter(|| {
            let mut h = base.clone();
            headers::strip_identity(&mut h, &identity);
            headers::strip_hop_by_hop(&mut h, false);
            headers::strip_client_credentials(&mut h, Some(&http::header::AUTHORIZATION), &[]);
            let trace = headers::ensure_traceparent(&mut h);
            let q = inject::apply(&Inject::bearer(), &token, &mut h, Some("a=1"));
            black_box((h, trace, q.is_ok()))
        })
    });
}

criterion_group!(benches, matching, injected_request);
criterion_main!(benches);
