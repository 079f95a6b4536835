//! Why a tool definition could not be judged. Every variant hides and refuses the tool.

use crate::state::error::StateError;

/// A tool definition that cannot be pinned, or a pin store that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The server sent something other than a JSON object as a tool.
    #[error("a {kind} definition from MCP server {server} is not a JSON object; it is hidden")]
    NotAnObject { kind: &'static str, server: String },
    /// The definition has no `name` (a resource: `uri`; a template: `uriTemplate`) string.
    #[error("a {kind} definition from MCP server {server} has no {field} string; it is hidden")]
    NoName {
        kind: &'static str,
        field: &'static str,
        server: String,
    },
    /// The name (or URI) is longer than Warden keeps; `tool` names the kind and the item.
    #[error("{tool} of MCP server {server}: its name is longer than {max} bytes; it is hidden")]
    NameTooLong {
        server: String,
        tool: String,
        max: usize,
    },
    /// The definition is larger than Warden pins; `tool` names the kind and the item.
    #[error(
        "{tool} of MCP server {server}: its definition is {size} bytes, more than the \
         {max} Warden pins; it is hidden"
    )]
    TooLarge {
        server: String,
        tool: String,
        size: usize,
        max: usize,
    },
    /// The definition could not be written in canonical form; `tool` names the kind and the
    /// item.
    #[error("{tool} of MCP server {server}: cannot canonicalise its definition: {reason}")]
    Canonical {
        server: String,
        tool: String,
        reason: String,
    },
    /// A tool's name starts with `(` (as `(instructions)`) or like the pinned name of a
    /// prompt, resource or resource template: pinned, it would stand for one of them.
    #[error(
        "tool {tool} of MCP server {server}: its name starts with `(`, `prompt:`, `resource:` \
         or `resource-template:`, which Warden keeps for the server's instructions, prompts, \
         resources and resource templates in its pins; it is hidden (MCP tool names are \
         letters, digits, `_`, `-` and `.`)"
    )]
    ReservedName { server: String, tool: String },
    /// The server has as many items of this kind pinned as Warden keeps: a new one is not
    /// pinned, so it is hidden.
    #[error(
        "MCP server {server} has {max} {kind} definitions pinned, the most Warden keeps of one \
         kind per server; new ones are hidden and refused (the server's operator should offer \
         fewer, stable items)"
    )]
    TooMany {
        server: String,
        kind: &'static str,
        max: usize,
    },
    /// `warden tools …` named a server the store has no pins for.
    #[error("no tool of MCP server {server} has been seen yet; servers with pins: {known}")]
    UnknownServer { server: String, known: String },
    /// `warden tools …` named a tool the store has no pin for.
    #[error("MCP server {server} has no tool {tool} pinned; its tools: {known}")]
    UnknownTool {
        server: String,
        tool: String,
        known: String,
    },
    /// `warden tools forget --key-id` named the key this Warden keys masked URIs with.
    #[error(
        "{key_id} is the factor key id this Warden keys masked resource URIs with: its pins are \
         in use; name the pins to forget instead (`warden tools list --server SERVER` shows them)"
    )]
    CurrentKeyId { key_id: String },
    /// The state store failed: new and changed definitions cannot be recorded.
    #[error(
        "tool definitions cannot be recorded: {0}; new and changed tools are hidden and refused \
         until the state store works again"
    )]
    Store(#[from] StateError),
}
