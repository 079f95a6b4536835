//! The Anthropic Messages dialect: how its requests read (`interpret.rs`), its refusal
//! answers (`refusal.rs`), its error body (`error.rs`) and where its responses report usage
//! (`usage.rs`).

mod error;
mod interpret;
mod proposals;
mod refusal;
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

/// The Anthropic dialect.
pub struct Anthropic;

impl Dialect for Anthropic {
    fn name(&self) -> &'static str {
        interpret::NAME
    }

    fn interpret(&self, request: &Inbound<'_>) -> Result<Interpreted, ProtocolError> {
        let llm = interpret::interpret(request.method, request.path, request.body)?;
        Ok(Interpreted::llm(llm, request.upstream))
    }

    /// Messages refusals are answers whose text explains the refusal; token counts and model
    /// requests have no text to carry and get a 403.
    fn refusal(&self, shape: &Shape, refusal: &Refusal<'_>) -> Option<Response<Full<Bytes>>> {
        let Shape::Llm(llm) = shape else {
            return None;
        };
        let text = RefusalText::new(refusal);
        let answer = match llm.endpoint {
            Endpoint::Messages => refusal::messages(llm, &text),
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

    /// Anthropic streams an error as an `error` event (`{"type":"error","error":{...}}`).
    fn stream_error(&self, error: &serde_json::Value) -> Bytes {
        let mut sse = crate::protocol::sse::SseWriter::default();
        sse.event("error", error);
        Bytes::from(sse.finish())
    }

    fn usage_event_wanted(&self, event: &[u8]) -> bool {
        usage::event_wanted(event)
    }

    /// Events are read by their `type` field, so streams without `event:` lines read too.
    fn usage_from_event(&self, _event: &[u8], data: &[u8]) -> Usage {
        usage::from_json(data)
    }

    fn usage_from_body(&self, body: &[u8]) -> Usage {
        usage::from_json(body)
    }

    /// Messages responses' `tool_use` blocks.
    fn proposals(&self, shape: &Shape) -> Option<Box<dyn ProposalRewriter>> {
        match shape {
            Shape::Llm(llm) if llm.endpoint == Endpoint::Messages => {
                Some(proposals::rewriter(llm.streams_events()))
            }
            _ => None,
        }
    }
}
