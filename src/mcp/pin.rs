//! Tool definition pinning: the contract's definition hash (`sha256:` + hex SHA-256 of
//! the canonical JSON of `{name, description, inputSchema}`), the per-process pin
//! state of `tofu` and `{file}` routes, and the pin file `sidekey mcp hash` prints.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::config::PinMode;

/// The members of a tool definition that its hash covers.
const HASHED: [&str; 3] = ["name", "description", "inputSchema"];
/// Tools remembered per route; past this a `tofu` route pins nothing new (and drops
/// the tool), so a hostile server cannot grow memory without bound.
const MAX_TOOLS_PER_ROUTE: usize = 10_000;
/// Longest tool name pinned; longer names are never pinned (dropped under pinning).
const MAX_NAME: usize = 1024;

/// Canonical JSON: object keys sorted (by code point), no whitespace, UTF-8 as is.
pub fn canonical_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                scalar(&Value::String(k.clone()), out);
                out.push(b':');
                canonical_json(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        other => scalar(other, out),
    }
}

fn scalar(v: &Value, out: &mut Vec<u8>) {
    // Writing a scalar Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// `sha256:<hex>` of a tool definition (members other than the hashed ones ignored,
/// absent members left out).
pub fn tool_hash(tool: &Value) -> String {
    let mut picked = serde_json::Map::new();
    for k in HASHED {
        if let Some(v) = tool.get(k) {
            picked.insert(k.to_string(), v.clone());
        }
    }
    let mut bytes = Vec::with_capacity(256);
    canonical_json(&Value::Object(picked), &mut bytes);
    let digest = Sha256::digest(&bytes);
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256:");
    for b in digest {
        hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
    }
    hex
}

/// Whether `s` has the shape of a pin: `sha256:` and 64 lower-case hex digits.
pub fn is_pin(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Parse a pin file's text: `{"tools": {"NAME": "sha256:..."}}`.
pub fn parse_pin_file(text: &str) -> Result<HashMap<String, String>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(tools) = v.get("tools").and_then(Value::as_object) else {
        return Err("expected {\"tools\": {\"NAME\": \"sha256:...\"}}".into());
    };
    let mut pins = HashMap::with_capacity(tools.len());
    for (name, pin) in tools {
        match pin.as_str() {
            Some(p) if is_pin(p) => {
                pins.insert(name.clone(), p.to_string());
            }
            _ => {
                return Err(format!(
                    "tools.{name}: expected \"sha256:\" and 64 hex digits"
                ));
            }
        }
    }
    Ok(pins)
}

/// The pin file for the tools of a `tools/list` result, a JSON-RPC response carrying
/// one, or a batch of responses.
pub fn pin_file(answer: &Value) -> Result<Value, String> {
    let mut pins = BTreeMap::new();
    let mut found = false;
    let mut add = |result: &Value| {
        if let Some(tools) = result.get("tools").and_then(Value::as_array) {
            found = true;
            for t in tools {
                if let Some(name) = t.get("name").and_then(Value::as_str) {
                    pins.insert(name.to_string(), Value::String(tool_hash(t)));
                }
            }
        }
    };
    match answer {
        Value::Array(items) => items
            .iter()
            .filter_map(|r| r.get("result"))
            .for_each(&mut add),
        v if v.get("result").is_some() => add(&v["result"]),
        v => add(v),
    }
    if !found {
        return Err("no tools/list result (an object with a \"tools\" array) in the input".into());
    }
    Ok(serde_json::json!({ "tools": pins }))
}

/// What pinning says about one listed tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The tool may be listed (and called).
    pub keep: bool,
    /// The tool has just become changed or unpinned: warn and count once.
    pub newly_changed: bool,
}

#[derive(Debug, Default)]
struct ToolState {
    /// The `tofu` pin: the first hash seen.
    first: Option<String>,
    /// The last listed definition did not match its pin.
    changed: bool,
}

/// Pin state of every route, for the life of the process (it survives reloads; a
/// route is known by its name).
#[derive(Debug, Default)]
pub struct PinStore {
    routes: Mutex<HashMap<Arc<str>, HashMap<String, ToolState>>>,
}

impl PinStore {
    /// Check the listed tools `(name, hash)` of one answer against their pins.
    pub fn observe(
        &self,
        route: &Arc<str>,
        mode: &PinMode,
        tools: &[(&str, String)],
    ) -> Vec<Verdict> {
        if matches!(mode, PinMode::Off) {
            return vec![
                Verdict {
                    keep: true,
                    newly_changed: false
                };
                tools.len()
            ];
        }
        let mut all = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = all.entry(route.clone()).or_default();
        tools
            .iter()
            .map(|(name, hash)| {
                let room = state.len() < MAX_TOOLS_PER_ROUTE || state.contains_key(*name);
                if name.len() > MAX_NAME || !room {
                    return Verdict {
                        keep: false,
                        newly_changed: false,
                    };
                }
                let entry = state.entry((*name).to_string()).or_default();
                let matches = match mode {
                    PinMode::Off => true,
                    PinMode::Tofu => entry.first.get_or_insert_with(|| hash.clone()) == hash,
                    PinMode::File { pins, .. } => pins.get(*name) == Some(hash),
                };
                let newly_changed = !matches && !entry.changed;
                entry.changed = !matches;
                Verdict {
                    keep: matches,
                    newly_changed,
                }
            })
            .collect()
    }

    /// Whether a call to `name` must be refused with `tool_changed`: its last listed
    /// definition differed from its pin, or (pin file) it has no pin at all.
    pub fn call_refused(&self, route: &str, mode: &PinMode, name: &str) -> bool {
        let changed = || {
            let all = self
                .routes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            all.get(route)
                .and_then(|s| s.get(name))
                .is_some_and(|t| t.changed)
        };
        match mode {
            PinMode::Off => false,
            PinMode::Tofu => changed(),
            PinMode::File { pins, .. } => !pins.contains_key(name) || changed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Found by the `mcp` fuzz target: without serde_json's exact float parsing a
    /// canonical form read back was another number, so a pin could name a value the
    /// server never sent.
    #[test]
    fn canonical_json_reads_back_as_the_same_value() {
        for text in [
            "6e63",
            "7.0000000000000015e62",
            "[0.1, -2.5e-308, 1e308]",
            "{\"b\": 1, \"a\": 2}",
        ] {
            let v: Value = serde_json::from_str(text).expect("json");
            let mut out = Vec::new();
            canonical_json(&v, &mut out);
            let back: Value = serde_json::from_slice(&out).expect("canonical JSON is JSON");
            assert_eq!(back, v, "{text}");
        }
    }

    #[test]
    fn hash_is_of_sorted_compact_json_of_three_members() {
        let t = json!({"name": "get_x", "inputSchema": {"type": "object", "b": 1, "a": "é"},
                       "description": "Get x", "annotations": {"ignored": true}});
        let mut out = Vec::new();
        canonical_json(
            &json!({"name": "get_x", "description": "Get x",
                               "inputSchema": {"type": "object", "b": 1, "a": "é"}}),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            r#"{"description":"Get x","inputSchema":{"a":"é","b":1,"type":"object"},"name":"get_x"}"#
        );
        let expected = format!("sha256:{:x}", Sha256::digest(&out));
        assert_eq!(tool_hash(&t), expected);
        assert!(is_pin(&expected));
        // An absent description is left out, not hashed as null.
        assert_ne!(
            tool_hash(&json!({"name": "a"})),
            tool_hash(&json!({"name": "a", "description": null}))
        );
    }

    #[test]
    fn pin_files_round_trip() {
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "a"}, {"name": "b", "description": "B"}]}});
        let file = pin_file(&answer).unwrap();
        let pins = parse_pin_file(&file.to_string()).unwrap();
        assert_eq!(pins["a"], tool_hash(&json!({"name": "a"})));
        assert_eq!(pin_file(&answer["result"]).unwrap(), file);
        assert!(pin_file(&json!({"x": 1})).is_err());
        assert!(parse_pin_file(r#"{"tools": {"a": "md5:1"}}"#).is_err());
        assert!(parse_pin_file("[]").is_err());
    }

    #[test]
    fn tofu_pins_first_definition_and_recovers() {
        let store = PinStore::default();
        let route: Arc<str> = Arc::from("r");
        let v1 = ("t", "sha256:1".to_string());
        let v2 = ("t", "sha256:2".to_string());
        let keep = |v: &[Verdict]| v[0];
        assert_eq!(
            keep(&store.observe(&route, &PinMode::Tofu, std::slice::from_ref(&v1))),
            Verdict {
                keep: true,
                newly_changed: false
            }
        );
        assert!(!store.call_refused("r", &PinMode::Tofu, "t"));
        assert_eq!(
            keep(&store.observe(&route, &PinMode::Tofu, std::slice::from_ref(&v2))),
            Verdict {
                keep: false,
                newly_changed: true
            }
        );
        assert_eq!(
            keep(&store.observe(&route, &PinMode::Tofu, &[v2])),
            Verdict {
                keep: false,
                newly_changed: false
            }
        );
        assert!(store.call_refused("r", &PinMode::Tofu, "t"));
        assert!(keep(&store.observe(&route, &PinMode::Tofu, &[v1])).keep);
        assert!(!store.call_refused("r", &PinMode::Tofu, "t"));
        let file = PinMode::File {
            path: "p".into(),
            pins: HashMap::from([("t".to_string(), "sha256:1".to_string())]),
        };
        assert!(store.call_refused("r", &file, "unpinned"));
        assert!(!store.call_refused("r", &file, "t"));
        assert!(!store.observe(&route, &file, &[("u", "sha256:1".into())])[0].keep);
    }
}
