//! Refusals that clients understand: a well-formed answer in the protocol's own shape whose
//! text explains the refusal, marked with `x-warden-decision` headers. Each dialect writes its
//! answers; this file holds what they share.
//!
//! Agents treat HTTP errors badly (OpenClaw disables a key for a minute on 403 and retries 429s
//! and 5xx for minutes), so a denied chat call is answered with 200 and a completion that says
//! why, and by default it ends the turn normally ([`RefusalFinish::Stop`]): agents and the SDKs'
//! helpers then show the text to the person behind the agent. Endpoints without a text to carry
//! (embeddings, models, token counts) get a 403 in the provider's error shape.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::Value;

use super::request::LlmRequest;
use super::response;

/// How a refusal answer ends its turn (route key `refusal_finish`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalFinish {
    /// The turn ends normally (`stop`, `end_turn`, `completed`, `STOP`): agents show the text.
    #[default]
    Stop,
    /// The provider's content-filter marking (`content_filter`, `refusal`, an incomplete
    /// response, `PROHIBITED_CONTENT`); some agents and SDK helpers then drop the text or raise.
    ContentFilter,
}

/// Why a request is refused, as told to the agent.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// The reason shown to the agent (a policy's `@reason`).
    pub reason: &'a str,
    /// The decision id, for the operator to find the audit record.
    pub decision_id: &'a str,
    /// How the answer ends its turn.
    pub finish: RefusalFinish,
    /// The approval the request was held on: pending (the reason says which and how to
    /// retry), or denied, expired, used or withdrawn (the reason says which was spent).
    pub approval: Option<NamedApproval<'a>>,
}

/// The approval a held request names, as told to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedApproval<'a> {
    /// The approval's id (`apr_…`).
    pub id: &'a str,
    /// Where it stands: `pending`, `denied`, `expired`, `consumed`, `withdrawn`.
    pub status: &'a str,
    /// Where an approver decides (the console's page for it), when a console URL is set and
    /// it is pending.
    pub link: Option<&'a str>,
}

impl NamedApproval<'_> {
    /// Whether the request waits for it (rather than being refused for good).
    pub fn is_pending(&self) -> bool {
        self.status == "pending"
    }
}

impl Refusal<'_> {
    /// Whether the request waits for an approval (rather than being refused for good).
    pub fn is_pending(&self) -> bool {
        self.approval.is_some_and(|a| a.is_pending())
    }

    /// The text an agent is shown: what was blocked, why, and the decision id.
    pub fn message(&self) -> String {
        if self.is_pending() {
            return format!(
                "Warden is holding this request for a human's approval: {} (decision {}).",
                self.reason, self.decision_id
            );
        }
        format!(
            "Warden blocked this request: {} (decision {}). Ask your operator if you need this.",
            self.reason, self.decision_id
        )
    }
}

/// The pieces every refusal answer shares.
pub struct RefusalText {
    /// The assistant text: what was blocked, why, and the decision id.
    pub message: String,
    /// A fresh id suffix for the answer's ids (`chatcmpl-<id>`, `msg_<id>`, ...).
    pub id: String,
    /// Unix seconds now.
    pub created: u64,
    /// How the answer ends its turn.
    pub finish: RefusalFinish,
}

impl RefusalText {
    /// The text of `refusal`, with a fresh id.
    pub fn new(refusal: &Refusal<'_>) -> Self {
        RefusalText {
            message: refusal.message(),
            id: uuid::Uuid::now_v7().simple().to_string(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            finish: refusal.finish,
        }
    }

    /// The model to echo back.
    pub fn model<'a>(&self, interpreted: &'a LlmRequest) -> &'a str {
        interpreted.model.as_deref().unwrap_or("unknown")
    }

    /// `stop` when the turn ends normally, `marked` under [`RefusalFinish::ContentFilter`].
    pub fn finish_or<'a>(&self, stop: &'a str, marked: &'a str) -> &'a str {
        match self.finish {
            RefusalFinish::Stop => stop,
            RefusalFinish::ContentFilter => marked,
        }
    }
}

/// A refusal answer body.
pub enum Answer {
    /// A JSON body (`application/json`).
    Json(Value),
    /// A complete server-sent event stream (`text/event-stream`).
    EventStream(String),
}

/// `x-warden-decision`: `deny` on a refusal.
pub const DECISION_HEADER: HeaderName = HeaderName::from_static("x-warden-decision");
/// `x-warden-decision-id`: the decision id of every decided request.
pub const DECISION_ID_HEADER: HeaderName = HeaderName::from_static("x-warden-decision-id");
/// `x-warden-receipt`: the signed receipt of every decided request (`audit/receipt.rs`).
pub const RECEIPT_HEADER: HeaderName = HeaderName::from_static("x-warden-receipt");
/// `x-request-id`: the request id of every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Removes from an upstream's answer every header in Warden's own namespace (`x-warden-…`):
/// only Warden says what it decided (`x-warden-decision`, `x-warden-decision-id`,
/// `x-warden-receipt`, `x-warden-error`, `x-warden-approval-id`), and an upstream's
/// `x-warden-decision-id` would otherwise stand in for the real one.
pub fn strip_wardens_own(headers: &mut http::HeaderMap) {
    let own: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-warden-"))
        .cloned()
        .collect();
    for name in own {
        headers.remove(name);
    }
}

/// `answer` as a 200 response marked as a refusal.
pub fn respond(answer: Answer, refusal: &Refusal<'_>) -> Response<Full<Bytes>> {
    let response = match answer {
        Answer::Json(body) => response::json(http::StatusCode::OK, body.to_string()),
        Answer::EventStream(body) => response::event_stream(body),
    };
    mark(response, refusal)
}

/// Marks `response` as the refusal it is: `x-warden-decision: deny` and the decision id.
pub fn mark(mut response: Response<Full<Bytes>>, refusal: &Refusal<'_>) -> Response<Full<Bytes>> {
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
    use http::{StatusCode, header};
    use http_body_util::BodyExt;

    /// An upstream's headers in Warden's namespace go; the others stay.
    #[test]
    fn an_upstreams_headers_in_wardens_name_are_removed_and_the_others_kept() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("x-warden-decision", "deny"),
            ("x-warden-decision-id", "forged"),
            ("x-warden-error", "policy_denied"),
            ("x-warden-approval-id", "forged"),
            ("x-warden-receipt", "forged"),
            ("x-request-id", "upstream-request"),
            ("openai-processing-ms", "12"),
        ] {
            headers.append(
                http::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_wardens_own(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["openai-processing-ms", "x-request-id"]);
    }

    /// The refusal used by every protocol's tests.
    pub(crate) const REFUSAL: Refusal<'static> = Refusal {
        reason: "model gpt-5 is not allowed for fleet dev",
        decision_id: "01JDEC0000000000000000000",
        finish: RefusalFinish::Stop,
        approval: None,
    };

    /// The same refusal on a route that keeps the content-filter marking.
    pub(crate) const MARKED: Refusal<'static> = Refusal {
        finish: RefusalFinish::ContentFilter,
        ..REFUSAL
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

    #[test]
    fn decision_ids_are_made_header_safe() {
        assert_eq!(header_safe("abc\r\nx-evil: 1"), "abcx-evil:1");
        assert_eq!(header_safe(&"a".repeat(500)).len(), 128);
    }
}
