//! Anthropic refusal answers: a Message whose text explains the refusal, streamed as the
//! Messages event sequence when the request streams.

use serde_json::json;

use crate::protocol::refusal::{Answer, RefusalText};
use crate::protocol::request::LlmRequest;
use crate::protocol::sse::SseWriter;

/// A refusal as a Messages answer (`stop_reason: "end_turn"`, or `"refusal"`), streamed as the
/// Messages event sequence when the request streams.
pub fn messages(interpreted: &LlmRequest, text: &RefusalText) -> Answer {
    let id = format!("msg_{}", text.id);
    let stop_reason = text.finish_or("end_turn", "refusal");
    let model = text.model(interpreted);
    if !interpreted.stream {
        return Answer::Json(json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{ "type": "text", "text": text.message }],
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": { "input_tokens": 0, "output_tokens": 0 },
        }));
    }
    let mut sse = SseWriter::default();
    sse.event(
        "message_start",
        &json!({
            "type": "message_start",
            "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": { "input_tokens": 0, "output_tokens": 0 },
            },
        }),
    );
    sse.event(
        "content_block_start",
        &json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
    );
    sse.event(
        "content_block_delta",
        &json!({
            "type": "content_block_delta",
            "index": 0,
            "delta": { "type": "text_delta", "text": text.message },
        }),
    );
    sse.event(
        "content_block_stop",
        &json!({ "type": "content_block_stop", "index": 0 }),
    );
    sse.event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason, "stop_sequence": null },
            "usage": { "output_tokens": 0 },
        }),
    );
    sse.event("message_stop", &json!({ "type": "message_stop" }));
    Answer::EventStream(sse.finish())
}

#[cfg(test)]
mod tests {
    use super::super::Anthropic;
    use crate::protocol::dialect::Dialect;
    use crate::protocol::dialect::tests::read;
    use crate::protocol::refusal::Refusal;
    use crate::protocol::refusal::tests::{EXPECTED_TEXT, MARKED, REFUSAL, parts, sse_events};
    use http::{Method, StatusCode};
    use serde_json::{Value, json};

    async fn refuse(
        method: Method,
        path: &str,
        body: &str,
        refusal: &Refusal<'_>,
    ) -> (StatusCode, String, String) {
        let meaning = read(&Anthropic, method, path, None, body).unwrap_or_else(|e| panic!("{e}"));
        let response = Anthropic.refusal(&meaning.shape, refusal);
        parts(response.unwrap_or_else(|| panic!("no refusal for {path}"))).await
    }

    fn messages(stream: bool) -> String {
        json!({ "model": "claude-sonnet-4-5", "max_tokens": 10, "stream": stream, "messages": [] })
            .to_string()
    }

    #[tokio::test]
    async fn non_streaming_refusal_is_a_complete_message_that_ends_the_turn() {
        let (status, content_type, body) =
            refuse(Method::POST, "/v1/messages", &messages(false), &REFUSAL).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::OK, "application/json")
        );
        let msg: Value = serde_json::from_str(&body).unwrap_or_default();
        assert!(msg["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
        assert_eq!(msg["type"], "message");
        assert_eq!(msg["role"], "assistant");
        assert_eq!(msg["model"], "claude-sonnet-4-5");
        assert_eq!(msg["content"][0]["type"], "text");
        assert_eq!(msg["content"][0]["text"], EXPECTED_TEXT);
        assert_eq!(msg["stop_reason"], "end_turn");
        assert_eq!(msg["usage"]["input_tokens"], 0);
        assert_eq!(msg["usage"]["output_tokens"], 0);

        let (_, _, body) = refuse(Method::POST, "/v1/messages", &messages(false), &MARKED).await;
        let msg: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(msg["stop_reason"], "refusal");
    }

    #[tokio::test]
    async fn streaming_refusal_follows_the_messages_event_sequence() {
        let (status, content_type, body) =
            refuse(Method::POST, "/v1/messages", &messages(true), &REFUSAL).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::OK, "text/event-stream")
        );
        let events = sse_events(&body);
        let names: Vec<_> = events
            .iter()
            .map(|(n, _)| n.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for (name, data) in &events {
            assert_eq!(
                data["type"].as_str(),
                name.as_deref(),
                "event line matches type"
            );
        }
        assert_eq!(events[0].1["message"]["model"], "claude-sonnet-4-5");
        assert_eq!(events[2].1["delta"]["type"], "text_delta");
        assert_eq!(events[2].1["delta"]["text"], EXPECTED_TEXT);
        assert_eq!(events[4].1["delta"]["stop_reason"], "end_turn");

        let (_, _, body) = refuse(Method::POST, "/v1/messages", &messages(true), &MARKED).await;
        assert_eq!(sse_events(&body)[4].1["delta"]["stop_reason"], "refusal");
    }

    #[tokio::test]
    async fn count_tokens_and_models_refusals_are_403_errors_with_the_explanation() {
        let count = json!({ "model": "claude-haiku-4-5", "messages": [] }).to_string();
        for (method, path, body) in [
            (Method::POST, "/v1/messages/count_tokens", count.as_str()),
            (Method::GET, "/v1/models", ""),
        ] {
            let (status, _, body) = refuse(method, path, body, &REFUSAL).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], "permission_error");
            assert_eq!(body["error"]["message"], EXPECTED_TEXT);
        }
    }
}
