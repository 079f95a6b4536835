//! Protocols as dialects: each wire protocol in its own folder (`openai/`, `anthropic/`,
//! `gemini/`, `rest/`) owns how its requests read, its refusal answers, its error body and its usage
//! blocks, behind one trait ([`Dialect`]) and one dispatch point ([`Protocol::dialect`]).
//!
//! The files beside the folders are the leaves the dialects share, and import no dialect:
//! the LLM call types (`request.rs`), body and model reading (`parse.rs`), identifier checks
//! (`identifier.rs`), the token estimate (`estimate.rs`), server-sent events (`sse.rs`),
//! request body decoding (`encoding.rs`), refusal text and headers (`refusal.rs`), the upstream answer headers never passed on
//! (`answer_headers.rs`), response bodies (`response.rs`), interpretation
//! errors (`errors.rs`), usage figures (`usage.rs`) and the response scanner (`scanner.rs`).

mod answer_headers;
mod anthropic;
pub mod body;
pub mod config;
mod dialect;
pub(crate) mod encoding;
mod errors;
pub(crate) mod estimate;
mod gemini;
mod identifier;
pub mod mcp;
pub(crate) mod openai;
mod parse;
pub mod proposed;
mod refusal;
mod request;
mod response;
pub mod rest;
mod scanner;
mod sse;
pub mod strict_json;
mod usage;

use std::fmt;

use serde::Deserialize;

pub use answer_headers::strip_upstreams;
pub use dialect::{Dialect, Inbound, Interpreted, Shape};
pub use errors::ProtocolError;
pub use identifier::{
    IdentifierProblem, LOOKALIKE_FINDING, MAX_IDENTIFIER_BYTES, check as check_identifier,
    unreadable as unreadable_identifier,
};
pub use refusal::{
    DECISION_HEADER, DECISION_ID_HEADER, NamedApproval, RECEIPT_HEADER, REQUEST_ID_HEADER, Refusal,
    RefusalFinish, strip_wardens_own,
};
pub use request::{Endpoint, LlmRequest};
pub use response::{ERROR_HEADER, event_stream_headers, json as json_response};
pub use scanner::{MAX_BUFFERED_BODY, UsageScanner};
pub use sse::{SseDecoder, SseSink};
pub use usage::Usage;

/// A wire protocol a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OpenAI, and OpenAI-compatible upstreams (Ollama `/v1`, vLLM, ...).
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini (Generative Language API).
    Gemini,
    /// MCP (Streamable HTTP, or the legacy HTTP+SSE transport): the endpoints of
    /// `mcp.endpoints` (no connector file names it).
    #[serde(skip_deserializing)]
    Mcp,
    /// A REST API described by a connector's operations.
    Rest,
}

impl Protocol {
    /// The dialect this protocol speaks: the one place that matches on the protocol.
    pub fn dialect(self) -> &'static dyn Dialect {
        match self {
            Protocol::Openai => &openai::OpenAi,
            Protocol::Anthropic => &anthropic::Anthropic,
            Protocol::Gemini => &gemini::Gemini,
            Protocol::Mcp => &mcp::Mcp,
            Protocol::Rest => &rest::Rest,
        }
    }

    /// The protocol's name in configuration.
    pub fn as_str(self) -> &'static str {
        self.dialect().name()
    }

    /// The protocol a built-in connector speaks (`ollama` and `openai-compatible` speak OpenAI).
    pub fn for_connector(connector: &str) -> Option<Protocol> {
        match connector {
            "openai" | "ollama" | "openai-compatible" | "vllm" => Some(Protocol::Openai),
            "anthropic" => Some(Protocol::Anthropic),
            "gemini" => Some(Protocol::Gemini),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectors_map_to_protocols() {
        assert_eq!(Protocol::for_connector("ollama"), Some(Protocol::Openai));
        assert_eq!(
            Protocol::for_connector("openai-compatible"),
            Some(Protocol::Openai)
        );
        assert_eq!(
            Protocol::for_connector("anthropic"),
            Some(Protocol::Anthropic)
        );
        assert_eq!(Protocol::for_connector("gemini"), Some(Protocol::Gemini));
        assert_eq!(Protocol::for_connector("github"), None);
    }

    #[test]
    fn each_protocol_names_its_dialect_as_configuration_does() {
        for (protocol, name) in [
            (Protocol::Openai, "openai"),
            (Protocol::Anthropic, "anthropic"),
            (Protocol::Gemini, "gemini"),
            (Protocol::Rest, "rest"),
        ] {
            assert_eq!(protocol.dialect().name(), name);
            let parsed: Protocol = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(parsed, protocol);
        }
    }
}
