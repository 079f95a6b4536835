//! The Gemini dialect (Generative Language API): how its requests read (`interpret.rs`), its
//! refusal answers (`refusal.rs`), its error body (`error.rs`) and where its responses report
//! usage (`usage.rs`).

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

/// The Gemini dialect.
pub struct Gemini;

impl Dialect for Gemini {
    fn name(&self) -> &'static str {
        interpret::NAME
    }

    fn interpret(&self, request: &Inbound<'_>) -> Result<Interpreted, ProtocolError> {
        let llm = interpret::interpret(
            request.method,
            request.path,
            request.query,
            request.body,
            request.allow_cached_content,
        )?;
        Ok(Interpreted::llm(llm, request.upstream))
    }

    /// generateContent refusals are answers whose text explains the refusal; embeddings,
    /// token counts and model requests have no text to carry and get a 403.
    fn refusal(&self, shape: &Shape, refusal: &Refusal<'_>) -> Option<Response<Full<Bytes>>> {
        let Shape::Llm(llm) = shape else {
            return None;
        };
        let text = RefusalText::new(refusal);
        let answer = match llm.endpoint {
            Endpoint::GenerateContent | Endpoint::StreamGenerateContent => {
                refusal::generate(llm, &text)
            }
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

    /// Every event of a Gemini stream can carry `usageMetadata`.
    fn usage_event_wanted(&self, _event: &[u8]) -> bool {
        true
    }

    fn usage_from_event(&self, _event: &[u8], data: &[u8]) -> Usage {
        usage::from_event(data)
    }

    fn usage_from_body(&self, body: &[u8]) -> Usage {
        usage::from_body(body)
    }

    /// `generateContent` and `streamGenerateContent` responses' `functionCall` parts.
    fn proposals(&self, shape: &Shape) -> Option<Box<dyn ProposalRewriter>> {
        match shape {
            Shape::Llm(llm)
                if matches!(
                    llm.endpoint,
                    Endpoint::GenerateContent | Endpoint::StreamGenerateContent
                ) =>
            {
                Some(proposals::rewriter(llm.streams_events()))
            }
            _ => None,
        }
    }
}
