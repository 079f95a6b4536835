//! The OpenAI dialect (and OpenAI-compatible upstreams: Ollama `/v1`, vLLM): how its
//! requests read (`interpret.rs`), its refusal answers (`refusal.rs`), its error body
//! (`error.rs`), where its responses report usage (`usage.rs`) and the usage Warden asks for on
//! an agent's behalf (`asked_usage.rs`).

mod asked_usage;
mod error;
mod interpret;
mod proposals;
mod refusal;
mod response_calls;
mod usage;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::protocol::dialect::{Dialect, Inbound, Interpreted, Shape};
use crate::protocol::errors::ProtocolError;
use crate::protocol::proposed::ProposalRewriter;
use crate::protocol::refusal::{self as refusals, Refusal, RefusalText};
use crate::protocol::request::Endpoint;
use crate::protocol::usage::Usage;

pub use asked_usage::UsageChunks;

/// The OpenAI dialect.
pub struct OpenAi;

impl Dialect for OpenAi {
    fn name(&self) -> &'static str {
        interpret::NAME
    }

    fn interpret(&self, request: &Inbound<'_>) -> Result<Interpreted, ProtocolError> {
        let llm = interpret::interpret(request.method, request.path, request.body)?;
        Ok(Interpreted::llm(llm, request.upstream))
    }

    /// Chat Completions, Completions and Responses refusals are answers whose text explains
    /// the refusal; embeddings and model requests have no text to carry and get a 403.
    fn refusal(&self, shape: &Shape, refusal: &Refusal<'_>) -> Option<Response<Full<Bytes>>> {
        let Shape::Llm(llm) = shape else {
            return None;
        };
        let text = RefusalText::new(refusal);
        let answer = match llm.endpoint {
            Endpoint::ChatCompletions => refusal::chat(llm, &text),
            Endpoint::Completions => refusal::completions(llm, &text),
            Endpoint::Responses => refusal::responses(llm, &text),
            _ => {
                let error = self.error(StatusCode::FORBIDDEN, "request_denied", &text.message);
                return Some(refusals::mark(error, refusal));
            }
        };
        Some(refusals::respond(answer, refusal))
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
        error::response(status, code, message)
    }

    fn usage_event_wanted(&self, event: &[u8]) -> bool {
        usage::event_wanted(event)
    }

    fn usage_from_event(&self, _event: &[u8], data: &[u8]) -> Usage {
        usage::from_json(data)
    }

    fn usage_from_body(&self, body: &[u8]) -> Usage {
        usage::from_json(body)
    }

    /// A Chat Completions or Completions stream asked without `stream_options.include_usage`.
    fn ask_usage(&self, shape: &Shape, body: &[u8]) -> Option<Bytes> {
        match shape {
            Shape::Llm(llm)
                if matches!(
                    llm.endpoint,
                    Endpoint::ChatCompletions | Endpoint::Completions
                ) && llm.stream
                    && !llm.include_usage =>
            {
                asked_usage::ask(body)
            }
            _ => None,
        }
    }

    /// Chat Completions responses' `tool_calls`, Responses answers' `function_call` items.
    fn proposals(&self, shape: &Shape) -> Option<Box<dyn ProposalRewriter>> {
        match shape {
            Shape::Llm(llm) if llm.endpoint == Endpoint::ChatCompletions => {
                Some(proposals::rewriter(llm.streams_events()))
            }
            Shape::Llm(llm) if llm.endpoint == Endpoint::Responses => {
                Some(response_calls::rewriter(llm.streams_events()))
            }
            _ => None,
        }
    }
}
