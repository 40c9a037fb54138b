//! MCP inspection cost: classifying and deciding a typical 1 KiB `tools/call` body,
//! and filtering a 100-tool `tools/list` answer for one caller (JSON and one SSE event).
//!
//!     cargo bench --bench mcp

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use sidekey::mcp::config::{
    ArgRule, McpConfig, PinMode, ToolAction, ToolDefault, ToolRule, ToolRules,
};
use sidekey::mcp::filter::ListFilter;
use sidekey::mcp::sse::filter_event;
use sidekey::mcp::{decide_tool, jsonrpc};

fn rules() -> ToolRules {
    let rule = |name: &str, args: Vec<ArgRule>, action| ToolRule {
        name: name.parse().expect("glob"),
        args,
        action,
        allow: None,
    };
    let owner = || ArgRule {
        pointer: "/owner".into(),
        globs: vec![
            "acme".parse().expect("glob"),
            "acme-*".parse().expect("glob"),
        ],
    };
    ToolRules {
        rules: vec![
            rule("delete_*", vec![], ToolAction::Deny),
            rule("create_*", vec![owner()], ToolAction::Allow),
            rule("get_*", vec![owner()], ToolAction::Allow),
            rule("list_*", vec![], ToolAction::Allow),
        ],
        default: ToolDefault::Deny,
    }
}

fn call_body() -> Vec<u8> {
    let body = json!({"jsonrpc": "2.0", "id": 17, "method": "tools/call", "params": {
        "name": "get_issue",
        "arguments": {"owner": "acme", "repo": "infra", "number": 42, "body": "x".repeat(880)}}});
    let bytes = serde_json::to_vec(&body).expect("json");
    assert!((1000..1100).contains(&bytes.len()), "{}", bytes.len());
    bytes
}

fn tool_list(n: usize) -> Value {
    let verbs = ["get", "list", "create", "delete", "update"];
    let tools: Vec<Value> = (0..n)
        .map(|i| json!({
            "name": format!("{}_thing_{i}", verbs[i % verbs.len()]),
            "description": "Does one thing to one thing, with a description of typical length.",
            "inputSchema": {"type": "object", "properties": {"owner": {"type": "string"}, "id": {"type": "integer"}},
                            "required": ["owner"]}
        }))
        .collect();
    json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": tools, "nextCursor": "c2"}})
}

fn filter(pin: PinMode) -> ListFilter {
    ListFilter {
        config: Arc::new(McpConfig {
            rules: rules(),
            filter_list: true,
            pin,
            max_body_bytes: 1 << 20,
        }),
        identity: None,
        route: Arc::from("bench"),
        pins: Arc::default(),
        metrics: Arc::new(sidekey::metrics::Metrics::new().expect("metrics")),
        ids: vec![json!(3)],
    }
}

fn bench(c: &mut Criterion) {
    let body = call_body();
    let r = rules();
    c.bench_function("mcp classify+decide 1KiB tools/call", |b| {
        b.iter(|| {
            let classified = jsonrpc::classify(black_box(&body)).expect("json-rpc");
            let call = classified.messages[0].call.as_ref().expect("call");
            black_box(decide_tool(&r, None, &call.name, &call.arguments))
        })
    });
    let list = serde_json::to_vec(&tool_list(100)).expect("json");
    for (label, pin) in [("off", PinMode::Off), ("tofu", PinMode::Tofu)] {
        let f = filter(pin);
        c.bench_function(
            &format!("mcp filter 100-tool list JSON (pin {label})"),
            |b| {
                b.iter(|| {
                    let mut v: Value = serde_json::from_slice(black_box(&list)).expect("json");
                    assert!(f.answer(&mut v));
                    black_box(serde_json::to_vec(&v).expect("json"))
                })
            },
        );
    }
    let event = [b"event: message\ndata: ".as_slice(), &list, b"\n\n"].concat();
    let f = filter(PinMode::Off);
    c.bench_function("mcp filter 100-tool list SSE event", |b| {
        b.iter(|| black_box(filter_event(black_box(&event), &f).expect("rewritten")))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
