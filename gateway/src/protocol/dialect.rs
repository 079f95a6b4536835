//! The one dispatch point between the request path and the protocols: a [`Dialect`] is one
//! wire protocol's knowledge (how its requests read, how it answers refusals and errors, where
//! its responses report usage), and [`Protocol::dialect`] names the one for a route.
//!
//! The request path only ever speaks to a `&dyn Dialect`; adding a protocol is adding a
//! dialect, not an arm in the path's stages.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;

use super::refusal::{Refusal, refusal_response};
use super::usage::Usage;
use super::{LlmRequest, Protocol, ProtocolError, error_response, interpret_llm};
use crate::action::{Facts, Findings, LlmFacts, Resource, Verb};

/// One request as a dialect reads it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request path with the route prefix stripped (`/v1/chat/completions`).
    pub path: &'a str,
    /// Raw query string, if any.
    pub query: Option<&'a str>,
    /// Request headers (the agent's credential already read, not yet removed).
    pub headers: &'a HeaderMap,
    /// The whole request body.
    pub body: &'a [u8],
    /// The route's upstream as Cedar names it: the provider of an LLM route (`openai`), the
    /// server of an MCP route, the API of a REST route.
    pub upstream: &'a Arc<str>,
}

/// What a request means: the parts of its Cedar action, and how to answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct Interpreted {
    /// The Cedar action.
    pub verb: Verb,
    /// What it acts on.
    pub resource: Resource,
    /// What the request says that policy may judge.
    pub facts: Facts,
    /// What interpretation noticed that policy should know (identifiers imitating others).
    pub findings: Findings,
    /// What the dialect needs to answer this request in its own shape.
    pub shape: Shape,
}

/// The dialect's own reading of a request, kept for its answers (refusals, errors, usage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// An LLM call.
    Llm(LlmRequest),
}

/// One wire protocol: OpenAI, Anthropic, Gemini (and, later, MCP JSON-RPC, REST connectors,
/// CONNECT).
pub trait Dialect: Send + Sync + 'static {
    /// The protocol's name in configuration and logs.
    fn name(&self) -> &'static str;

    /// What `request` means. Unknown endpoints and malformed bodies are errors: refused, never
    /// forwarded.
    fn interpret(&self, request: &Inbound<'_>) -> Result<Interpreted, ProtocolError>;

    /// A policy refusal in this protocol's shape, for a request this dialect read as `shape`: a
    /// well-formed answer whose text explains the refusal, or `None` where the request has no
    /// such shape (an HTTP error is sent instead).
    fn refusal(&self, shape: &Shape, refusal: &Refusal<'_>) -> Option<Response<Full<Bytes>>>;

    /// An HTTP error in this protocol's error shape; `code` is Warden's stable error code.
    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>>;

    /// Whether a response's server-sent event named `event` can carry usage (others are not
    /// buffered).
    fn usage_event_wanted(&self, event: &[u8]) -> bool;

    /// The usage one server-sent event reports (figures it does not report stay `None`).
    fn usage_from_event(&self, event: &[u8], data: &[u8]) -> Usage;

    /// The usage a complete (non-streamed, or JSON-array streamed) body reports.
    fn usage_from_body(&self, body: &[u8]) -> Usage;
}

impl Protocol {
    /// The dialect this protocol speaks.
    pub fn dialect(self) -> &'static dyn Dialect {
        match self {
            Protocol::Openai => &LlmDialect(Protocol::Openai),
            Protocol::Anthropic => &LlmDialect(Protocol::Anthropic),
            Protocol::Gemini => &LlmDialect(Protocol::Gemini),
        }
    }
}

/// The three LLM protocols behind one dialect type while their modules are split.
struct LlmDialect(Protocol);

impl Dialect for LlmDialect {
    fn name(&self) -> &'static str {
        self.0.as_str()
    }

    fn interpret(&self, request: &Inbound<'_>) -> Result<Interpreted, ProtocolError> {
        let llm = interpret_llm(
            self.0,
            request.method,
            request.path,
            request.query,
            request.body,
        )?;
        let resource = match &llm.model {
            Some(model) => Resource::Model {
                provider: Arc::clone(request.upstream),
                name: model.clone(),
            },
            None => Resource::Provider {
                name: Arc::clone(request.upstream),
            },
        };
        Ok(Interpreted {
            verb: llm.verb.clone(),
            resource,
            facts: Facts::Llm(LlmFacts {
                stream: llm.stream,
                max_tokens: llm.max_tokens,
                tools: llm.tools.clone(),
                input_tokens: llm.input_tokens,
            }),
            findings: Findings::none(),
            shape: Shape::Llm(llm),
        })
    }

    fn refusal(&self, shape: &Shape, refusal: &Refusal<'_>) -> Option<Response<Full<Bytes>>> {
        let Shape::Llm(llm) = shape;
        llm.endpoint
            .has_completion_shape()
            .then(|| refusal_response(self.0, llm, refusal))
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
        error_response(self.0, status, code, message)
    }

    fn usage_event_wanted(&self, event: &[u8]) -> bool {
        super::usage::wanted(self.0, event)
    }

    fn usage_from_event(&self, event: &[u8], data: &[u8]) -> Usage {
        super::usage::from_event(self.0, event, data)
    }

    fn usage_from_body(&self, body: &[u8]) -> Usage {
        super::usage::from_body(self.0, body)
    }
}
