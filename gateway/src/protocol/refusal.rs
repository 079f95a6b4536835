//! Refusals that clients understand: a well-formed completion (or stream) in the protocol's own
//! shape whose text explains the refusal, marked with `x-warden-decision` headers.
//!
//! Agents treat HTTP errors badly (OpenClaw disables a key for a minute on 403 and retries 429s
//! and 5xx for minutes), so a denied chat call is answered with 200 and a completion that says
//! why. Endpoints without a completion shape (embeddings, models, token counts) get a 403 in the
//! provider's error shape.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;

use super::errors::json_response;
use super::{Endpoint, LlmRequest, Protocol, anthropic, error_response, gemini, openai};

/// Why a request is refused, as told to the agent.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// The reason shown to the agent (a policy's `@reason`).
    pub reason: &'a str,
    /// The decision id, for the operator to find the audit record.
    pub decision_id: &'a str,
}

impl Refusal<'_> {
    /// The text an agent is shown: what was blocked, why, and the decision id.
    pub fn message(&self) -> String {
        format!(
            "Warden blocked this request: {} (decision {}). Ask your operator if you need this.",
            self.reason, self.decision_id
        )
    }
}

/// The pieces every refusal answer shares.
pub(super) struct RefusalText {
    /// The assistant text: what was blocked, why, and the decision id.
    pub message: String,
    /// A fresh id suffix for the answer's ids (`chatcmpl-<id>`, `msg_<id>`, ...).
    pub id: String,
    /// Unix seconds now.
    pub created: u64,
}

impl RefusalText {
    fn new(refusal: &Refusal<'_>) -> Self {
        RefusalText {
            message: refusal.message(),
            id: uuid::Uuid::now_v7().simple().to_string(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// The model to echo back.
    pub fn model<'a>(&self, interpreted: &'a LlmRequest) -> &'a str {
        interpreted.model.as_deref().unwrap_or("unknown")
    }
}

/// A refusal answer body.
pub(super) enum Answer {
    /// A JSON body (`application/json`).
    Json(Value),
    /// A complete server-sent event stream (`text/event-stream`).
    EventStream(String),
}

/// Writes server-sent events into one buffer.
#[derive(Default)]
pub(super) struct SseWriter {
    out: String,
}

impl SseWriter {
    /// An event with only a `data:` line.
    pub fn data(&mut self, data: &Value) {
        self.out.push_str("data: ");
        self.out.push_str(&data.to_string());
        self.out.push_str("\n\n");
    }

    /// An event with an `event:` line and a `data:` line.
    pub fn event(&mut self, name: &str, data: &Value) {
        self.out.push_str("event: ");
        self.out.push_str(name);
        self.out.push('\n');
        self.data(data);
    }

    /// OpenAI's end-of-stream marker.
    pub fn done(&mut self) {
        self.out.push_str("data: [DONE]\n\n");
    }

    /// The stream text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// `x-warden-decision`: `deny` on a refusal.
pub const DECISION_HEADER: HeaderName = HeaderName::from_static("x-warden-decision");
/// `x-warden-decision-id`: the decision id of every decided request.
pub const DECISION_ID_HEADER: HeaderName = HeaderName::from_static("x-warden-decision-id");
/// `x-request-id`: the request id of every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// A well-formed 200 answer in the protocol's shape (an SSE stream when the request streams)
/// whose assistant text explains the refusal and names the decision id, with headers
/// `x-warden-decision: deny` and `x-warden-decision-id`. Finish reasons: OpenAI chat and
/// completions `content_filter`; Responses `status: "incomplete"` with
/// `incomplete_details.reason: "content_filter"`; Anthropic `stop_reason: "refusal"`; Gemini
/// `finishReason: "PROHIBITED_CONTENT"`. Endpoints with no completion shape get a 403 error.
pub fn refusal_response(
    protocol: Protocol,
    interpreted: &LlmRequest,
    refusal: &Refusal<'_>,
) -> Response<Full<Bytes>> {
    let text = RefusalText::new(refusal);
    let answer = match (protocol, interpreted.endpoint) {
        (Protocol::Openai, Endpoint::ChatCompletions) => {
            Some(openai::chat_refusal(interpreted, &text))
        }
        (Protocol::Openai, Endpoint::Completions) => {
            Some(openai::completions_refusal(interpreted, &text))
        }
        (Protocol::Openai, Endpoint::Responses) => {
            Some(openai::responses_refusal(interpreted, &text))
        }
        (Protocol::Anthropic, Endpoint::Messages) => Some(anthropic::refusal(interpreted, &text)),
        (Protocol::Gemini, Endpoint::GenerateContent | Endpoint::StreamGenerateContent) => {
            Some(gemini::refusal(interpreted, &text))
        }
        _ => None,
    };
    let mut response = match answer {
        Some(Answer::Json(body)) => json_response(StatusCode::OK, body.to_string()),
        Some(Answer::EventStream(body)) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        None => error_response(
            protocol,
            StatusCode::FORBIDDEN,
            "request_denied",
            &text.message,
        ),
    };
    let headers = response.headers_mut();
    headers.insert(DECISION_HEADER, HeaderValue::from_static("deny"));
    if let Ok(id) = HeaderValue::from_str(&header_safe(refusal.decision_id)) {
        headers.insert(DECISION_ID_HEADER, id);
    }
    response
}

/// The decision id restricted to visible ASCII (at most 128 characters), safe as a header value.
fn header_safe(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// The refusal used by every protocol's tests.
    pub(crate) const REFUSAL: Refusal<'static> = Refusal {
        reason: "model gpt-5 is not allowed for fleet dev",
        decision_id: "01JDEC0000000000000000000",
    };

    /// The refusal text as the agent must see it.
    pub(crate) const EXPECTED_TEXT: &str = "Warden blocked this request: model gpt-5 is not allowed \
        for fleet dev (decision 01JDEC0000000000000000000). Ask your operator if you need this.";

    /// Status, content type, decision headers and body text of a response.
    pub(crate) async fn parts(response: Response<Full<Bytes>>) -> (StatusCode, String, String) {
        let status = response.status();
        let headers = response.headers().clone();
        assert_eq!(headers["x-warden-decision"], "deny");
        assert_eq!(headers["x-warden-decision-id"], REFUSAL.decision_id);
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// Splits an SSE body into (event name, parsed data) pairs, as an SDK's SSE reader does.
    pub(crate) fn sse_events(body: &str) -> Vec<(Option<String>, Value)> {
        assert!(body.ends_with("\n\n"), "stream must end with a blank line");
        body.split("\n\n")
            .filter(|block| !block.is_empty())
            .map(|block| {
                let mut name = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    } else {
                        panic!("unexpected SSE line {line:?}");
                    }
                }
                let value = if data == "[DONE]" {
                    Value::String(data)
                } else {
                    serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"))
                };
                (name, value)
            })
            .collect()
    }

    fn interpreted(endpoint: Endpoint, stream: bool) -> LlmRequest {
        LlmRequest {
            stream,
            event_stream: stream,
            ..LlmRequest::bare(endpoint, Some("gpt-5".into()))
        }
    }

    #[tokio::test]
    async fn endpoints_without_completion_shape_get_403_error_with_the_explanation() {
        for (protocol, endpoint) in [
            (Protocol::Openai, Endpoint::Embeddings),
            (Protocol::Openai, Endpoint::ListModels),
            (Protocol::Anthropic, Endpoint::CountTokens),
            (Protocol::Gemini, Endpoint::EmbedContent),
        ] {
            let response = refusal_response(protocol, &interpreted(endpoint, false), &REFUSAL);
            let (status, content_type, body) = parts(response).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(content_type, "application/json");
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            assert_eq!(
                body["error"]["message"], EXPECTED_TEXT,
                "{protocol} {endpoint}"
            );
        }
    }

    #[test]
    fn decision_ids_are_made_header_safe() {
        assert_eq!(header_safe("abc\r\nx-evil: 1"), "abcx-evil:1");
        assert_eq!(header_safe(&"a".repeat(500)).len(), 128);
    }
}
