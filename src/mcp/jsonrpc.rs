//! The JSON-RPC 2.0 classifier of MCP POST bodies: one message or a batch, each a
//! request, a notification or a client response; `tools/call` requests carry their
//! tool name and arguments. Anything else is not JSON-RPC and is refused whole.

use serde_json::Value;

/// Methods sidekey looks into; every other method passes.
pub const TOOLS_CALL: &str = "tools/call";
pub const TOOLS_LIST: &str = "tools/list";

/// A classified POST body.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// The body was a JSON array (answers and refusals are arrays too).
    pub batch: bool,
    pub messages: Vec<Message>,
}

/// One JSON-RPC message of a body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The request id (string or number); `None` for notifications.
    pub id: Option<Value>,
    /// `None` for a client response (it has `result` or `error` instead).
    pub method: Option<String>,
    /// Set for a `tools/call` request or notification.
    pub call: Option<ToolCall>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// `params.arguments`, `Null` when absent.
    pub arguments: Value,
}

impl Message {
    /// A request expects an answer: it has a method and an id.
    pub fn is_request(&self) -> bool {
        self.method.is_some() && self.id.is_some()
    }

    pub fn is_tools_list(&self) -> bool {
        self.id.is_some() && self.method.as_deref() == Some(TOOLS_LIST)
    }
}

/// Why a body is not JSON-RPC (the message of a `bad_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotJsonRpc(pub String);

fn bad(m: impl Into<String>) -> NotJsonRpc {
    NotJsonRpc(m.into())
}

/// Classify a POST body.
pub fn classify(body: &[u8]) -> Result<Classified, NotJsonRpc> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("the body is not JSON ({})", e.classify_name())))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(bad("an empty JSON-RPC batch"));
            }
            let messages = items
                .into_iter()
                .enumerate()
                .map(|(i, v)| message(v).map_err(|e| bad(format!("batch entry {i}: {}", e.0))))
                .collect::<Result<_, _>>()?;
            Ok(Classified {
                batch: true,
                messages,
            })
        }
        v => Ok(Classified {
            batch: false,
            messages: vec![message(v)?],
        }),
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "data error",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

fn message(v: Value) -> Result<Message, NotJsonRpc> {
    let Value::Object(mut obj) = v else {
        return Err(bad("a JSON-RPC message must be an object"));
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(bad("a JSON-RPC message needs \"jsonrpc\": \"2.0\""));
    }
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id),
        Some(Value::Null) if !obj.contains_key("method") => Some(Value::Null),
        Some(_) => return Err(bad("a JSON-RPC id must be a string or a number")),
    };
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => return Err(bad("a JSON-RPC method must be a string")),
        None => {
            if id.is_none() || !(obj.contains_key("result") || obj.contains_key("error")) {
                return Err(bad(
                    "a JSON-RPC message needs a method, or an id with a result or error",
                ));
            }
            return Ok(Message {
                id,
                method: None,
                call: None,
            });
        }
    };
    let call = if method == TOOLS_CALL {
        let mut params = match obj.remove("params") {
            Some(Value::Object(p)) => p,
            _ => return Err(bad("tools/call needs params with a name")),
        };
        let Some(Value::String(name)) = params.remove("name") else {
            return Err(bad("tools/call needs a string params.name"));
        };
        Some(ToolCall {
            name,
            arguments: params.remove("arguments").unwrap_or(Value::Null),
        })
    } else {
        None
    };
    Ok(Message {
        id,
        method: Some(method),
        call,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn messages_and_batches() {
        let c = classify(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_x","arguments":{"a":1}}}"#,
        )
        .unwrap();
        assert!(!c.batch);
        let m = &c.messages[0];
        assert!(m.is_request());
        assert_eq!(m.id, Some(json!(7)));
        let call = m.call.as_ref().unwrap();
        assert_eq!(
            (call.name.as_str(), &call.arguments),
            ("get_x", &json!({"a": 1}))
        );

        let c = classify(
            br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},
                 {"jsonrpc":"2.0","id":"a","method":"tools/list"},
                 {"jsonrpc":"2.0","id":3,"result":{}}]"#,
        )
        .unwrap();
        assert!(c.batch);
        assert!(!c.messages[0].is_request() && c.messages[0].id.is_none());
        assert!(c.messages[1].is_tools_list());
        assert_eq!(c.messages[2].method, None);
    }

    #[test]
    fn not_json_rpc() {
        for body in [
            &b"hello"[..],
            b"[]",
            b"42",
            b"{}",
            br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},[]]"#,
        ] {
            assert!(classify(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
