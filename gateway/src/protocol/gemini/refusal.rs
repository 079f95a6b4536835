//! Gemini refusal answers: a generateContent response whose candidate's text explains the
//! refusal, in each of Gemini's response modes.

use serde_json::{Value, json};

use crate::protocol::refusal::{Answer, RefusalText};
use crate::protocol::request::LlmRequest;
use crate::protocol::sse::SseWriter;

/// A refusal as a generateContent answer (`finishReason: "STOP"`, or `"PROHIBITED_CONTENT"`);
/// a stream is one SSE event with `alt=sse`, otherwise a one-element JSON array, as Gemini
/// streams.
pub fn generate(interpreted: &LlmRequest, text: &RefusalText) -> Answer {
    let body = json!({
        "candidates": [{
            "content": { "parts": [{ "text": text.message }], "role": "model" },
            "finishReason": text.finish_or("STOP", "PROHIBITED_CONTENT"),
            "index": 0,
        }],
        "usageMetadata": { "promptTokenCount": 0, "candidatesTokenCount": 0, "totalTokenCount": 0 },
        "modelVersion": text.model(interpreted),
        "responseId": text.id,
    });
    if !interpreted.stream {
        return Answer::Json(body);
    }
    if !interpreted.event_stream {
        return Answer::Json(Value::Array(vec![body]));
    }
    let mut sse = SseWriter::default();
    sse.data(&body);
    Answer::EventStream(sse.finish())
}

#[cfg(test)]
mod tests {
    use super::super::Gemini;
    use crate::protocol::dialect::Dialect;
    use crate::protocol::dialect::tests::read;
    use crate::protocol::refusal::Refusal;
    use crate::protocol::refusal::tests::{EXPECTED_TEXT, MARKED, REFUSAL, parts, sse_events};
    use http::{Method, StatusCode};
    use serde_json::Value;

    const BASE: &str = "/v1beta/models/gemini-2.5-flash";

    async fn refuse(
        method: Method,
        path: &str,
        query: Option<&str>,
        refusal: &Refusal<'_>,
    ) -> (StatusCode, String, String) {
        let meaning = read(&Gemini, method, path, query, "{}").unwrap_or_else(|e| panic!("{e}"));
        let response = Gemini.refusal(&meaning.shape, refusal);
        parts(response.unwrap_or_else(|| panic!("no refusal for {path}"))).await
    }

    fn candidate_checks(body: &Value, finish: &str) {
        assert_eq!(body["candidates"][0]["content"]["role"], "model");
        assert_eq!(
            body["candidates"][0]["content"]["parts"][0]["text"],
            EXPECTED_TEXT
        );
        assert_eq!(body["candidates"][0]["finishReason"], finish);
        assert_eq!(body["modelVersion"], "gemini-2.5-flash");
        assert_eq!(body["usageMetadata"]["totalTokenCount"], 0);
    }

    #[tokio::test]
    async fn refusals_match_each_gemini_response_mode() {
        let plain = format!("{BASE}:generateContent");
        let (status, content_type, body) = refuse(Method::POST, &plain, None, &REFUSAL).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::OK, "application/json")
        );
        candidate_checks(&serde_json::from_str(&body).unwrap_or_default(), "STOP");

        let stream = format!("{BASE}:streamGenerateContent");
        let (_, content_type, body) =
            refuse(Method::POST, &stream, Some("alt=sse"), &REFUSAL).await;
        assert_eq!(content_type, "text/event-stream");
        let events = sse_events(&body);
        assert_eq!(events.len(), 1);
        candidate_checks(&events[0].1, "STOP");

        let (_, content_type, body) = refuse(Method::POST, &stream, None, &REFUSAL).await;
        assert_eq!(content_type, "application/json");
        let items: Value = serde_json::from_str(&body).unwrap_or_default();
        candidate_checks(&items[0], "STOP");
    }

    #[tokio::test]
    async fn a_marked_refusal_finishes_with_prohibited_content() {
        let plain = format!("{BASE}:generateContent");
        let (_, _, body) = refuse(Method::POST, &plain, None, &MARKED).await;
        candidate_checks(
            &serde_json::from_str(&body).unwrap_or_default(),
            "PROHIBITED_CONTENT",
        );
    }

    #[tokio::test]
    async fn embeddings_token_counts_and_models_refusals_are_403_errors() {
        for (method, path) in [
            (
                Method::POST,
                "/v1beta/models/gemini-embedding-001:embedContent",
            ),
            (
                Method::POST,
                "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            ),
            (Method::POST, "/v1beta/models/gemini-2.5-flash:countTokens"),
            (Method::GET, "/v1beta/models"),
        ] {
            let (status, _, body) = refuse(method, path, None, &REFUSAL).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            assert_eq!(body["error"]["code"], 403);
            assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
            assert_eq!(body["error"]["message"], EXPECTED_TEXT);
            assert_eq!(body["error"]["details"][0]["reason"], "request_denied");
        }
    }
}
