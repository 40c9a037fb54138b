//! Arbitrary bytes as an MCP POST body and as an SSE event: the JSON-RPC classifier,
//! the tool decision, the `tools/list` filter and the definition hash must answer
//! without panicking, and canonical JSON must read back as the value it came from.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sidekey::mcp::config::{ArgRule, McpConfig, PinMode, ToolAction, ToolDefault, ToolRule, ToolRules};
use sidekey::mcp::filter::ListFilter;
use sidekey::mcp::sse::filter_event;
use sidekey::mcp::{jsonrpc, pin, rules};

static FILTER: LazyLock<ListFilter> = LazyLock::new(|| {
    let rule = |name: &str, args: Vec<ArgRule>, action| ToolRule {
        name: name.parse().expect("glob"),
        args,
        action,
        allow: None,
    };
    let owner = ArgRule {
        pointer: "/owner".into(),
        globs: vec!["acme*".parse().expect("glob")],
    };
    let rules = ToolRules {
        rules: vec![
            rule("get_*", vec![], ToolAction::Allow),
            rule("create_*", vec![owner], ToolAction::Allow),
            rule("*delete*", vec![], ToolAction::Deny),
        ],
        default: ToolDefault::Deny,
    };
    ListFilter {
        config: Arc::new(McpConfig {
            rules,
            filter_list: true,
            pin: PinMode::Tofu,
            max_body_bytes: 1 << 20,
        }),
        identity: None,
        route: Arc::from("fuzz"),
        pins: Arc::default(),
        metrics: Arc::new(sidekey::metrics::Metrics::new().expect("metrics")),
        ids: vec![Value::from(1), Value::from("1")],
    }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FILTER;
    match jsonrpc::classify(data) {
        Ok(c) => {
            assert!(!c.messages.is_empty(), "a classified body has messages");
            for m in &c.messages {
                if let Some(call) = &m.call {
                    let d = rules::decide_tool(&f.config.rules, None, &call.name, &call.arguments);
                    // The label is a configured pattern or `default`, never the name.
                    assert!(d.rule == "default" || f.config.rules.rules.iter().any(|r| r.name.as_str() == d.rule));
                    let _ = rules::tool_visible(&f.config.rules, None, &call.name);
                }
            }
        }
        Err(e) => assert!(!e.0.is_empty()),
    }
    let _ = filter_event(data, f);
    if let Ok(mut v) = serde_json::from_slice::<Value>(data) {
        let mut out = Vec::new();
        pin::canonical_json(&v, &mut out);
        let back: Value = serde_json::from_slice(&out).expect("canonical JSON is JSON");
        assert_eq!(back, v, "canonical JSON changed the value");
        let _ = pin::tool_hash(&v);
        let _ = pin::pin_file(&v);
        let _ = f.answer(&mut v);
    }
});
