//! How Warden answers one agent message, kept from interpretation for the refusal answer.

use serde_json::Value;

/// How Warden answers one agent message: its id, and how a denial of it is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpShape {
    /// The request id (JSON), for the answer.
    pub id: Value,
    /// A tool call whose denial is a tool result with `isError: true` (the model reads it);
    /// `false`: a JSON-RPC error.
    pub deny_as_tool_result: bool,
}
