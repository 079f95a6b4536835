//! Interpret and observe: what an LLM request means, and what its response reports.
//!
//! [`interpret`] reads a request (path, method, body) in the provider's protocol and says what it
//! asks for: the verb, model, streaming, token limits, declared tools and an input-token
//! estimate. [`refusal_response`] and [`error_response`] answer in the provider's own shape, so
//! stock SDKs and agents understand a refusal. [`UsageScanner`] watches a response stream by
//! and reports the token usage the provider states.

mod anthropic;
pub mod body;
pub mod config;
mod dialect;
mod errors;
mod estimate;
mod gemini;
mod openai;
mod refusal;
mod sse;
mod usage;

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

use crate::action::Verb;

pub use dialect::{Dialect, Inbound, Interpreted, Shape};
pub use errors::{ProtocolError, error_response};
pub use estimate::tokens_from_chars;
pub use refusal::{DECISION_HEADER, DECISION_ID_HEADER, REQUEST_ID_HEADER, Refusal};
pub use sse::{SseDecoder, SseSink};
pub use usage::{MAX_BUFFERED_BODY, Usage, UsageScanner};

/// An LLM wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OpenAI, and OpenAI-compatible upstreams (Ollama `/v1`, vLLM, ...).
    Openai,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini (Generative Language API).
    Gemini,
}

impl Protocol {
    /// The protocol's name in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Openai => "openai",
            Protocol::Anthropic => "anthropic",
            Protocol::Gemini => "gemini",
        }
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

/// Which endpoint of a protocol a request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// OpenAI `POST /chat/completions`.
    ChatCompletions,
    /// OpenAI legacy `POST /completions`.
    Completions,
    /// OpenAI `POST /responses`.
    Responses,
    /// OpenAI `POST /embeddings`.
    Embeddings,
    /// `GET /models` (every protocol).
    ListModels,
    /// `GET /models/{id}` (every protocol).
    GetModel,
    /// Anthropic `POST /v1/messages`.
    Messages,
    /// Anthropic `POST /v1/messages/count_tokens`, Gemini `:countTokens`.
    CountTokens,
    /// Gemini `:generateContent`.
    GenerateContent,
    /// Gemini `:streamGenerateContent`.
    StreamGenerateContent,
    /// Gemini `:embedContent`.
    EmbedContent,
    /// Gemini `:batchEmbedContents`.
    BatchEmbedContents,
}

impl Endpoint {
    /// The verb policies judge for this endpoint.
    pub fn verb(self) -> Verb {
        match self {
            Endpoint::ChatCompletions
            | Endpoint::Completions
            | Endpoint::Responses
            | Endpoint::Messages
            | Endpoint::CountTokens
            | Endpoint::GenerateContent
            | Endpoint::StreamGenerateContent => Verb::LlmChat,
            Endpoint::Embeddings | Endpoint::EmbedContent | Endpoint::BatchEmbedContents => {
                Verb::LlmEmbed
            }
            Endpoint::ListModels | Endpoint::GetModel => Verb::LlmModels,
        }
    }

    /// A stable name for logs and audit (`chat_completions`, `generate_content`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::ListModels => "list_models",
            Endpoint::GetModel => "get_model",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
            Endpoint::GenerateContent => "generate_content",
            Endpoint::StreamGenerateContent => "stream_generate_content",
            Endpoint::EmbedContent => "embed_content",
            Endpoint::BatchEmbedContents => "batch_embed_contents",
        }
    }

    /// Whether a refusal can be answered as a completion (otherwise it is a 403 error).
    pub fn has_completion_shape(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions
                | Endpoint::Completions
                | Endpoint::Responses
                | Endpoint::Messages
                | Endpoint::GenerateContent
                | Endpoint::StreamGenerateContent
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an LLM request asks for, as its dialect reads it: the facts policy and audit need, and
/// what the dialect needs to answer it in its own shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmRequest {
    /// `LlmChat`, `LlmEmbed` or `LlmModels`.
    pub verb: Verb,
    /// The model: from the body, the Gemini path `models/{model}:...`, or `GET /models/{id}`.
    pub model: Option<String>,
    /// The response is requested as a stream.
    pub stream: bool,
    /// Output token limit the request sets, if any.
    pub max_tokens: Option<u64>,
    /// Names of the tools the request declares (function names; built-in tool types).
    pub tools: Vec<String>,
    /// Estimated input tokens of prompt, system and tool definitions (see `estimate`).
    pub input_tokens: u64,
    /// Which endpoint is called.
    pub endpoint: Endpoint,
    /// OpenAI `stream_options.include_usage`: a streamed answer ends with a usage chunk.
    pub include_usage: bool,
    /// The streamed answer is `text/event-stream` (Gemini streams only with `alt=sse`;
    /// without it they are one JSON array).
    pub event_stream: bool,
}

impl LlmRequest {
    /// An interpretation with no body facts (model listing and retrieval).
    fn bare(endpoint: Endpoint, model: Option<String>) -> Self {
        LlmRequest {
            verb: endpoint.verb(),
            model,
            stream: false,
            max_tokens: None,
            tools: Vec::new(),
            input_tokens: 0,
            endpoint,
            include_usage: false,
            event_stream: false,
        }
    }
}

/// Reads an LLM request in `protocol`: which endpoint, model, streaming, limits, tools and an
/// input-token estimate. `path` has the route prefix stripped (`/v1/chat/completions`,
/// `/v1beta/models/gemini-2.0-flash:streamGenerateContent`); `query` is the raw query string.
/// Unknown endpoints are an error: they are refused, not forwarded.
fn interpret_llm(
    protocol: Protocol,
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<LlmRequest, ProtocolError> {
    match protocol {
        Protocol::Openai => openai::interpret(method, path, body),
        Protocol::Anthropic => anthropic::interpret(method, path, body),
        Protocol::Gemini => gemini::interpret(method, path, query, body),
    }
}

/// Fails unless `method` is the one the endpoint accepts.
fn require_method(
    method: &http::Method,
    allowed: http::Method,
    path: &str,
) -> Result<(), ProtocolError> {
    if *method == allowed {
        Ok(())
    } else {
        Err(ProtocolError::WrongMethod {
            method: method.clone(),
            path: path.to_owned(),
            allowed,
        })
    }
}

/// The error for a path the protocol does not have.
fn unsupported(protocol: Protocol, method: &http::Method, path: &str) -> ProtocolError {
    ProtocolError::UnsupportedEndpoint {
        protocol,
        method: method.clone(),
        path: path.to_owned(),
    }
}

/// Parses a request body that must be a JSON object into `T` (borrowing from `body`).
fn parse_body<'a, T: Deserialize<'a>>(
    endpoint: Endpoint,
    body: &'a [u8],
) -> Result<T, ProtocolError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let found = match first {
        None => Some("an empty body"),
        Some(b'[') => Some("an array"),
        Some(b'"') => Some("a string"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'n') => Some("null"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        _ => None,
    };
    if let Some(found) = found {
        // Only call it "not an object" when it is valid JSON; otherwise report the syntax error.
        return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => Err(ProtocolError::NotAnObject { found }),
            Err(e) if found == "an empty body" => Err(ProtocolError::MalformedBody {
                detail: format!("the body is empty ({e})"),
            }),
            Err(e) => Err(ProtocolError::from_json(endpoint, &e)),
        };
    }
    serde_json::from_slice(body).map_err(|e| ProtocolError::from_json(endpoint, &e))
}

/// The model a body names, required: an absent or empty model is an error.
fn require_model(endpoint: Endpoint, model: Option<String>) -> Result<String, ProtocolError> {
    match model {
        Some(m) if !m.is_empty() => Ok(m),
        _ => Err(ProtocolError::MissingModel { endpoint }),
    }
}

/// A model id taken from a path segment: percent-decoded (so that policy sees the name the
/// upstream will see) and checked to be a plain name.
fn model_from_path(raw: &str, path: &str, allow_slash: bool) -> Result<String, ProtocolError> {
    let decoded = percent_decode(raw).ok_or_else(|| ProtocolError::InvalidModelInPath {
        path: path.to_owned(),
        detail: "it has a bad percent-escape",
    })?;
    check_model_name(&decoded, path, allow_slash)?;
    Ok(decoded.into_owned())
}

/// Checks that an already-decoded model name from a path is a plain name.
fn check_model_name(decoded: &str, path: &str, allow_slash: bool) -> Result<(), ProtocolError> {
    let invalid = |detail| ProtocolError::InvalidModelInPath {
        path: path.to_owned(),
        detail,
    };
    if decoded.is_empty() {
        return Err(invalid("it is empty"));
    }
    if decoded
        .chars()
        .any(|c| c.is_control() || c == '?' || c == '#' || c == '\\')
    {
        return Err(invalid("it contains control or reserved characters"));
    }
    if decoded.contains('/') {
        if !allow_slash {
            return Err(invalid("it contains '/'"));
        }
        if decoded
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(invalid("it has an empty, '.' or '..' segment"));
        }
    } else if decoded == "." || decoded == ".." {
        return Err(invalid("it is a '.' or '..' segment"));
    }
    Ok(())
}

/// Decodes `%XX` escapes; `None` on a malformed escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_yields_the_name_the_upstream_sees() {
        assert_eq!(
            percent_decode("gemini%2D2.0").as_deref(),
            Some("gemini-2.0")
        );
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn path_models_reject_traversal_and_reserved_characters() {
        assert!(model_from_path("..", "/p", true).is_err());
        assert!(model_from_path("a/../b", "/p", true).is_err());
        assert!(model_from_path("a%2F..%2Fb", "/p", true).is_err());
        assert!(model_from_path("a%2Fb", "/p", false).is_err());
        assert!(model_from_path("a%3Fb", "/p", true).is_err());
        assert!(model_from_path("", "/p", true).is_err());
        assert_eq!(
            model_from_path("meta-llama%2FLlama-3-8B", "/p", true)
                .ok()
                .as_deref(),
            Some("meta-llama/Llama-3-8B")
        );
    }

    #[test]
    fn non_object_bodies_are_named() {
        let cases: [(&[u8], &str); 5] = [
            (b"[1]", "an array"),
            (b"\"x\"", "a string"),
            (b"true", "a boolean"),
            (b" null", "null"),
            (b"12", "a number"),
        ];
        for (body, found) in cases {
            let err = parse_body::<serde::de::IgnoredAny>(Endpoint::Messages, body).err();
            assert_eq!(err, Some(ProtocolError::NotAnObject { found }));
        }
    }

    #[test]
    fn empty_and_broken_bodies_are_malformed_with_position() {
        let empty = parse_body::<serde::de::IgnoredAny>(Endpoint::Messages, b"  ").err();
        assert!(
            matches!(empty, Some(ProtocolError::MalformedBody { .. })),
            "{empty:?}"
        );
        let broken =
            parse_body::<serde::de::IgnoredAny>(Endpoint::Messages, b"{\"model\": }").err();
        let text = broken.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            text,
            "request body is not valid JSON: expected value at line 1 column 11; send a JSON object"
        );
        let trailing = parse_body::<serde::de::IgnoredAny>(Endpoint::Messages, b"{} {}").err();
        assert!(matches!(
            trailing,
            Some(ProtocolError::MalformedBody { .. })
        ));
    }

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
}
