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
    /// A `tools/call`: while it waits for an approval, it is answered with a tool result
    /// whatever `deny_as_tool_result` says (it is not refused; the model reads when to call
    /// again).
    pub tool_call: bool,
}
