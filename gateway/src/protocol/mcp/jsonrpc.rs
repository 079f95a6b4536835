//! JSON-RPC 2.0 messages as MCP sends them, read strictly: one message per body (batches are
//! refused), no duplicate keys anywhere (two readers could see two different messages), ids
//! that are strings or integers. The message itself is kept whole, as JSON, so that what
//! Warden forwards is what the agent sent (unknown fields and `_meta` included).

use std::fmt;

use serde_json::{Map, Value, json};

use crate::text::Quoted;

/// JSON-RPC's error codes, and Warden's own in the range reserved for servers.
pub mod code {
    /// The body is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid JSON-RPC message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The parameters are wrong (an unknown tool, say).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Warden failed.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Policy denied the request.
    pub const DENIED: i64 = -32001;
    /// The upstream server is unavailable or failed.
    pub const UPSTREAM: i64 = -32002;
    /// Policy wants a human's approval for a request a server sent the agent, and approvals
    /// are not enabled on this gateway: refused to the server.
    pub const NEEDS_APPROVAL: i64 = -32003;
    /// The agent cancelled the request (`notifications/cancelled`); MCP numbers no such
    /// error, this is LSP's number for it.
    pub const CANCELLED: i64 = -32800;
}

/// Why a body is not one JSON-RPC message Warden can judge. Never quotes more than a short,
/// escaped prefix of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not JSON.
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    /// JSON that readers could take differently: a key given twice in one object, or two
    /// keys that differ only by case (a case-insensitive reader takes one for the other).
    #[error("the message is ambiguous: {0}")]
    Ambiguous(String),
    /// A JSON array: a batch.
    #[error(
        "JSON-RPC batches are not accepted: send one message per request (MCP 2025-06-18 \
         removed batching)"
    )]
    Batch,
    /// Valid JSON, but not a JSON-RPC 2.0 message.
    #[error("not a JSON-RPC 2.0 message: {0}")]
    Shape(&'static str),
    /// An id that is neither a string nor an integer.
    #[error("the message id must be a string or an integer, found {0}")]
    Id(&'static str),
}

impl MessageError {
    /// The JSON-RPC error code for it.
    pub fn code(&self) -> i64 {
        match self {
            MessageError::Json(_) => code::PARSE_ERROR,
            _ => code::INVALID_REQUEST,
        }
    }
}

/// A JSON-RPC id: a string or an integer, compared as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    Str(String),
    Int(i64),
}

impl Id {
    /// The id as JSON.
    pub fn to_value(&self) -> Value {
        match self {
            Id::Str(s) => Value::String(s.clone()),
            Id::Int(n) => Value::from(*n),
        }
    }

    /// Reads an id; `Err` names what was found instead.
    pub fn from_value(v: &Value) -> Result<Id, &'static str> {
        match v {
            Value::String(s) => Ok(Id::Str(s.clone())),
            Value::Number(n) => n.as_i64().map(Id::Int).ok_or("a non-integer number"),
            Value::Null => Err("null"),
            Value::Bool(_) => Err("a boolean"),
            Value::Array(_) => Err("an array"),
            Value::Object(_) => Err("an object"),
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Str(s) => write!(f, "{}", Quoted::of(s)),
            Id::Int(n) => write!(f, "{n}"),
        }
    }
}

/// What a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A request: it expects a response with its id.
    Request { id: Id, method: String },
    /// A notification: no response.
    Notification { method: String },
    /// A response (result or error) to a request of the other side.
    Response { id: Id },
}

/// One JSON-RPC message, kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    /// The whole message as sent.
    pub body: Map<String, Value>,
}

impl Message {
    /// Reads one message from `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Message, MessageError> {
        let value = strict(bytes)?;
        Message::from_value(value)
    }

    /// Reads one message from JSON already parsed (by a trusted reader: an upstream's).
    pub fn from_value(value: Value) -> Result<Message, MessageError> {
        let body = match value {
            Value::Object(map) => map,
            Value::Array(_) => return Err(MessageError::Batch),
            _ => return Err(MessageError::Shape("the body must be a JSON object")),
        };
        if body.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(MessageError::Shape("\"jsonrpc\" must be \"2.0\""));
        }
        let id = match body.get("id") {
            None => None,
            Some(v) => Some(Id::from_value(v).map_err(MessageError::Id)?),
        };
        let kind = match (body.get("method"), id) {
            (Some(Value::String(m)), Some(id)) => Kind::Request {
                id,
                method: m.clone(),
            },
            (Some(Value::String(m)), None) => Kind::Notification { method: m.clone() },
            (Some(_), _) => return Err(MessageError::Shape("\"method\" must be a string")),
            (None, Some(id)) if body.contains_key("result") != body.contains_key("error") => {
                Kind::Response { id }
            }
            (None, _) => {
                return Err(MessageError::Shape(
                    "a message needs a \"method\", or an \"id\" and one of \"result\" and \"error\"",
                ));
            }
        };
        if let Some(params) = body.get("params")
            && !params.is_object()
        {
            return Err(MessageError::Shape("\"params\" must be an object"));
        }
        Ok(Message { kind, body })
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { method, .. } | Kind::Notification { method } => Some(method),
            Kind::Response { .. } => None,
        }
    }

    /// The `params` object (empty when absent).
    pub fn params(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        self.body
            .get("params")
            .and_then(Value::as_object)
            .unwrap_or(&EMPTY)
    }

    /// The `params` object, to change.
    pub fn params_mut(&mut self) -> &mut Map<String, Value> {
        let params = self
            .body
            .entry("params")
            .or_insert_with(|| Value::Object(Map::new()));
        if !params.is_object() {
            *params = Value::Object(Map::new());
        }
        match params {
            Value::Object(map) => map,
            _ => unreachable!("made an object above"),
        }
    }

    /// The whole message as JSON.
    pub fn into_value(self) -> Value {
        Value::Object(self.body)
    }
}

/// A response with `result` to request `id`.
pub fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response to request `id` (`null` when unknown).
pub fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The prefix of the `_meta` keys Warden writes.
pub const WARDEN_META: &str = "warden/";

/// `map` (a result, or a request's or notification's params) without the keys of its `_meta`
/// that Warden's own namespace (`warden/`) holds: only Warden may speak there.
pub fn strip_warden_meta(map: &mut Map<String, Value>) {
    if let Some(Value::Object(meta)) = map.get_mut("_meta") {
        meta.retain(|key, _| !key.starts_with(WARDEN_META));
    }
}

/// A request or notification Warden itself sends.
pub fn request(id: Option<&Value>, method: &str, params: Value) -> Value {
    let mut m = json!({"jsonrpc": "2.0", "method": method, "params": params});
    if let (Some(id), Some(map)) = (id, m.as_object_mut()) {
        map.insert("id".into(), id.clone());
    }
    m
}

/// Parses `bytes` as JSON, refusing two keys of one object that are equal or differ only by
/// case, at any depth.
pub fn strict(bytes: &[u8]) -> Result<Value, MessageError> {
    crate::protocol::strict_json::parse_unambiguous(bytes).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            MessageError::Ambiguous(describe(&e))
        } else {
            MessageError::Json(describe(&e))
        }
    })
}

/// serde's description of a JSON error with its position; it never contains request text
/// other than the duplicate key, which is quoted short and escaped.
fn describe(e: &serde_json::Error) -> String {
    crate::text::bounded(&e.to_string(), 200).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let err = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, MessageError::Ambiguous(m) if m.contains("appears twice")),
            "{err}"
        );
        assert_eq!(err.code(), code::INVALID_REQUEST);
    }

    #[test]
    fn keys_that_differ_only_by_case_are_refused_at_any_depth() {
        // A Go server reads the last `Name` as the tool's name; Warden would judge `name`.
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github_get_issue","arguments":{},"Name":"delete_repository"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github_get_issue","arguments":{"repo":"a"},"argumentſ":{"repo":"b"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"path":"/tmp","PATH":"/etc"}}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{"action":"accept","Action":"decline"}}"#,
        ] {
            let err = Message::parse(body.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, MessageError::Ambiguous(m) if m.contains("differ only by case")),
                "{body}: {err}"
            );
            assert_eq!(err.code(), code::INVALID_REQUEST);
        }
        assert_eq!(
            Message::parse(b"{").map_err(|e| e.code()),
            Err(code::PARSE_ERROR)
        );
    }

    #[test]
    fn batches_and_odd_ids_are_refused() {
        assert_eq!(
            Message::parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            Err(MessageError::Batch)
        );
        for (id, found) in [
            ("1.5", "a non-integer number"),
            ("null", "null"),
            ("true", "a boolean"),
            ("{}", "an object"),
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            assert_eq!(
                Message::parse(body.as_bytes()),
                Err(MessageError::Id(found)),
                "{id}"
            );
        }
    }

    #[test]
    fn messages_keep_every_field_as_sent() {
        let m = Message::parse(
            br#"{"jsonrpc":"2.0","id":"a1","method":"tools/call","params":{"name":"x","_meta":{"progressToken":7}},"extra":true}"#,
        )
        .expect("valid");
        assert_eq!(
            m.kind,
            Kind::Request {
                id: Id::Str("a1".into()),
                method: "tools/call".into()
            }
        );
        assert_eq!(m.body["extra"], json!(true));
        assert_eq!(m.params()["_meta"]["progressToken"], json!(7));
        let n = Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .expect("valid");
        assert!(matches!(n.kind, Kind::Notification { .. }));
        let r = Message::parse(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#).expect("valid");
        assert_eq!(r.kind, Kind::Response { id: Id::Int(3) });
    }
}
