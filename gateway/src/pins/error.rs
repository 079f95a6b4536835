//! Why a tool definition could not be judged. Every variant hides and refuses the tool.

use crate::state::error::StateError;

/// A tool definition that cannot be pinned, or a pin store that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The server sent something other than a JSON object as a tool.
    #[error("a tool definition from MCP server {server} is not a JSON object; it is hidden")]
    NotAnObject { server: String },
    /// The definition has no `name` string.
    #[error("a tool definition from MCP server {server} has no name; it is hidden")]
    NoName { server: String },
    /// The name is longer than Warden keeps.
    #[error(
        "tool {tool} of MCP server {server}: its name is longer than {max} bytes; it is hidden"
    )]
    NameTooLong {
        server: String,
        tool: String,
        max: usize,
    },
    /// The definition is larger than Warden pins.
    #[error(
        "tool {tool} of MCP server {server}: its definition is {size} bytes, more than the \
         {max} Warden pins; it is hidden"
    )]
    TooLarge {
        server: String,
        tool: String,
        size: usize,
        max: usize,
    },
    /// The definition could not be written in canonical form.
    #[error("tool {tool} of MCP server {server}: cannot canonicalise its definition: {reason}")]
    Canonical {
        server: String,
        tool: String,
        reason: String,
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
    /// The state store failed: new and changed definitions cannot be recorded.
    #[error(
        "tool definitions cannot be recorded: {0}; new and changed tools are hidden and refused \
         until the state store works again"
    )]
    Store(#[from] StateError),
}
