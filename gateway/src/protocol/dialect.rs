//! The seam between the request path and the protocols: a [`Dialect`] is one wire protocol's
//! knowledge (how its requests read, how it answers refusals and errors, where its responses
//! report usage). `Protocol::dialect` names the one for a route.
//!
//! The request path only ever speaks to a `&dyn Dialect`; adding a protocol is adding a
//! dialect (a folder beside `openai/`), not an arm in the path's stages.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;

use super::errors::ProtocolError;
use super::identifier::LOOKALIKE_FINDING;
use super::proposed::ProposalRewriter;
use super::refusal::Refusal;
use super::request::LlmRequest;
use super::rest::operations::Operations;
use super::usage::Usage;
use crate::action::{Facts, Finding, Findings, LlmFacts, Resource, Verb};

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
    /// A REST route's operations (its connector's), `None` on other routes.
    pub operations: Option<&'a Operations>,
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
    /// What interpretation itself found (`lookalike_identifier` at `model`), for the context.
    pub findings: Findings,
    /// What the dialect needs to answer this request in its own shape.
    pub shape: Shape,
}

/// The dialect's own reading of a request, kept for its answers (refusals, errors, usage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// An LLM call. Its `tools` were moved into the facts.
    Llm(LlmRequest),
    /// An MCP message.
    Mcp(super::mcp::shape::McpShape),
    /// A REST call, to go upstream to `path` (below the base URL), the path as judged.
    Rest { path: String },
}

impl Shape {
    /// The path (below the upstream's base URL) the request must go to when the dialect read
    /// it into a canonical form; `None` to send it as received.
    pub fn upstream_path(&self) -> Option<&str> {
        match self {
            Shape::Rest { path } => Some(path),
            Shape::Llm(_) | Shape::Mcp(_) => None,
        }
    }
}

impl Interpreted {
    /// The meaning of an LLM call to `upstream` (the route's provider): a `Model` resource
    /// named by the folded model name when there is one, else the provider.
    pub fn llm(mut request: LlmRequest, upstream: &Arc<str>) -> Interpreted {
        let resource = match request.folded_model.as_ref().or(request.model.as_ref()) {
            Some(name) => Resource::Model {
                provider: Arc::clone(upstream),
                name: name.clone(),
            },
            None => Resource::Provider {
                name: Arc::clone(upstream),
            },
        };
        let mut findings = Findings::none();
        if request.folded_model.is_some() {
            findings.0.push(Finding {
                detector: Arc::from(LOOKALIKE_FINDING),
                location: "model".to_owned(),
            });
        }
        Interpreted {
            verb: request.verb.clone(),
            resource,
            facts: Facts::Llm(LlmFacts {
                stream: request.stream,
                max_tokens: request.max_tokens,
                tools: std::mem::take(&mut request.tools),
                input_tokens: request.input_tokens,
            }),
            findings,
            shape: Shape::Llm(request),
        }
    }
}

/// One wire protocol: OpenAI, Anthropic, Gemini, REST connectors (and, later, MCP JSON-RPC,
/// CONNECT).
pub trait Dialect: Send + Sync + 'static {
    /// The protocol's name in configuration and logs.
    fn name(&self) -> &'static str;

    /// What `request` means. Unknown endpoints and malformed bodies are errors: refused, never
    /// forwarded.
    fn interpret(&self, request: &Inbound<'_>) -> Result<Interpreted, ProtocolError>;

    /// A policy refusal in this protocol's shape, for a request this dialect read as `shape`,
    /// marked `x-warden-decision: deny`: a
    /// well-formed answer whose text explains the refusal, or a 403 in the protocol's error
    /// shape where the request has no text to carry; `None` when the dialect has no answer of
    /// its own (the caller sends a 403 error).
    fn refusal(&self, shape: &Shape, refusal: &Refusal<'_>) -> Option<Response<Full<Bytes>>>;

    /// An HTTP error in this protocol's error shape; `code` is Warden's stable error code.
    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>>;

    /// An error that ends an event stream already answered `200`, as the provider streams one:
    /// `error` (a body in this protocol's error shape) as one `data:` event.
    fn stream_error(&self, error: &serde_json::Value) -> Bytes {
        let mut sse = super::sse::SseWriter::default();
        sse.data(error);
        Bytes::from(sse.finish())
    }

    /// Whether a response's server-sent event named `event` can carry usage (others are not
    /// buffered).
    fn usage_event_wanted(&self, event: &[u8]) -> bool;

    /// The usage one server-sent event reports (figures it does not report stay `None`).
    fn usage_from_event(&self, event: &[u8], data: &[u8]) -> Usage;

    /// The usage a complete (non-streamed, or JSON-array streamed) body reports.
    fn usage_from_body(&self, body: &[u8]) -> Usage;

    /// A rewriter that has the tool calls a model proposes in the response to a request read
    /// as `shape` judged before the agent gets them (`event_stream`: the response streams);
    /// `None` when this dialect's response to it carries no tool calls Warden reads.
    fn proposals(&self, _shape: &Shape, _event_stream: bool) -> Option<Box<dyn ProposalRewriter>> {
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What `dialect` makes of a request to `path` with `body` (route upstream `test`).
    pub(crate) fn read(
        dialect: &dyn Dialect,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: &str,
    ) -> Result<Interpreted, ProtocolError> {
        let headers = HeaderMap::new();
        let upstream: Arc<str> = Arc::from("test");
        dialect.interpret(&Inbound {
            method: &method,
            path,
            query,
            headers: &headers,
            body: body.as_bytes(),
            upstream: &upstream,
            operations: None,
        })
    }

    fn request(model: Option<&str>, folded: Option<&str>) -> LlmRequest {
        LlmRequest {
            model: model.map(str::to_owned),
            folded_model: folded.map(str::to_owned),
            tools: vec!["exec".to_owned()],
            max_tokens: Some(10),
            ..LlmRequest::bare(crate::protocol::request::Endpoint::ChatCompletions)
        }
    }

    #[test]
    fn an_llm_call_acts_on_its_model_and_moves_its_tools_into_the_facts() {
        let upstream: Arc<str> = Arc::from("openai");
        let meaning = Interpreted::llm(request(Some("gpt-4o"), None), &upstream);
        assert_eq!(meaning.resource.cedar_ref(), r#"Model::"openai/gpt-4o""#);
        assert_eq!(meaning.verb, Verb::LlmChat);
        let facts = meaning.facts.llm().cloned().unwrap_or_default();
        assert_eq!(
            (facts.tools, facts.max_tokens),
            (vec!["exec".into()], Some(10))
        );
        assert!(meaning.findings.is_empty());
        let Shape::Llm(shape) = &meaning.shape else {
            panic!("an LLM call has an LLM shape: {:?}", meaning.shape)
        };
        assert!(shape.tools.is_empty());
        let listing = Interpreted::llm(request(None, None), &upstream);
        assert_eq!(listing.resource.cedar_ref(), r#"Provider::"openai""#);
    }

    #[test]
    fn a_folded_model_is_judged_and_reported_as_a_lookalike() {
        let upstream: Arc<str> = Arc::from("openai");
        let meaning = Interpreted::llm(
            request(Some("d\u{0435}nied-model"), Some("denied-model")),
            &upstream,
        );
        assert_eq!(
            meaning.resource.cedar_ref(),
            r#"Model::"openai/denied-model""#
        );
        assert_eq!(
            meaning.findings.0,
            vec![Finding {
                detector: Arc::from("lookalike_identifier"),
                location: "model".into(),
            }]
        );
    }
}
