//! OpenAI refusal answers: a Chat Completion, a legacy Completion or a Response whose text
//! explains the refusal, streamed as the API streams when the request streams.

use serde_json::{Value, json};

use crate::protocol::refusal::{Answer, RefusalText};
use crate::protocol::request::LlmRequest;
use crate::protocol::sse::SseWriter;

/// Zero usage in Chat Completions / Completions shape.
fn chat_usage() -> Value {
    json!({ "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0 })
}

/// A refusal as a Chat Completions answer (`finish_reason: "stop"`, or `"content_filter"`).
pub fn chat(interpreted: &LlmRequest, text: &RefusalText) -> Answer {
    let id = format!("chatcmpl-{}", text.id);
    let finish = text.finish_or("stop", "content_filter");
    let (created, model) = (text.created, text.model(interpreted));
    if !interpreted.stream {
        return Answer::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": text.message, "refusal": null },
                "logprobs": null,
                "finish_reason": finish,
            }],
            "usage": chat_usage(),
            "system_fingerprint": null,
        }));
    }
    let include_usage = interpreted.include_usage;
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": null,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut sse = SseWriter::default();
    sse.data(&chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    ));
    sse.data(&chunk(json!({ "content": text.message }), Value::Null));
    sse.data(&chunk(json!({}), json!(finish)));
    if include_usage {
        sse.data(&json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": null,
            "choices": [],
            "usage": chat_usage(),
        }));
    }
    sse.done();
    Answer::EventStream(sse.finish())
}

/// A refusal as a legacy Completions answer (`finish_reason: "stop"`, or `"content_filter"`).
pub fn completions(interpreted: &LlmRequest, text: &RefusalText) -> Answer {
    let id = format!("cmpl-{}", text.id);
    let finish = json!(text.finish_or("stop", "content_filter"));
    let (created, model) = (text.created, text.model(interpreted));
    let completion = |t: &str, finish: Value| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{ "text": t, "index": 0, "logprobs": null, "finish_reason": finish }],
        })
    };
    if !interpreted.stream {
        let mut body = completion(&text.message, finish);
        body["usage"] = chat_usage();
        return Answer::Json(body);
    }
    let mut sse = SseWriter::default();
    sse.data(&completion(&text.message, Value::Null));
    sse.data(&completion("", finish));
    if interpreted.include_usage {
        sse.data(&json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [],
            "usage": chat_usage(),
        }));
    }
    sse.done();
    Answer::EventStream(sse.finish())
}

/// A refusal as a Responses answer: `status: "completed"`; or, marked, `status: "incomplete"`
/// with `incomplete_details.reason: "content_filter"`.
///
/// A stream ends with a `response.completed` event carrying the final response either way:
/// every client (including the SDKs' `responses.stream()` helpers, which require
/// `response.completed`) finalises on it, and the status tells the truth.
pub fn responses(interpreted: &LlmRequest, text: &RefusalText) -> Answer {
    let resp_id = format!("resp_{}", text.id);
    let done = text.finish_or("completed", "incomplete");
    let msg_id = format!("msg_{}", text.id);
    let model = text.model(interpreted);
    let part =
        json!({ "type": "output_text", "text": text.message, "annotations": [], "logprobs": [] });
    let item = |status: &str, content: Value| {
        json!({
            "type": "message",
            "id": msg_id,
            "status": status,
            "role": "assistant",
            "content": content,
        })
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": resp_id,
            "object": "response",
            "created_at": text.created,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": if status == "incomplete" {
                json!({ "reason": "content_filter" })
            } else {
                Value::Null
            },
            "instructions": null,
            "max_output_tokens": interpreted.max_tokens,
            "model": model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "reasoning": { "effort": null, "summary": null },
            "store": false,
            "temperature": 1.0,
            "text": { "format": { "type": "text" } },
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        })
    };
    let usage = json!({
        "input_tokens": 0,
        "input_tokens_details": { "cached_tokens": 0 },
        "output_tokens": 0,
        "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": 0,
    });
    let final_item = item(done, json!([part]));
    if !interpreted.stream {
        return Answer::Json(response(done, json!([final_item]), usage));
    }
    let mut sse = SseWriter::default();
    let mut seq = 0u64;
    let mut event = |sse: &mut SseWriter, name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        sse.event(name, &data);
    };
    let in_progress = response("in_progress", json!([]), Value::Null);
    event(
        &mut sse,
        "response.created",
        json!({ "response": in_progress }),
    );
    event(
        &mut sse,
        "response.in_progress",
        json!({ "response": in_progress }),
    );
    event(
        &mut sse,
        "response.output_item.added",
        json!({ "output_index": 0, "item": item("in_progress", json!([])) }),
    );
    let position = json!({ "item_id": msg_id, "output_index": 0, "content_index": 0 });
    let with = |extra: Value| {
        let mut v = position.clone();
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    };
    event(
        &mut sse,
        "response.content_part.added",
        with(
            json!({ "part": { "type": "output_text", "text": "", "annotations": [], "logprobs": [] } }),
        ),
    );
    event(
        &mut sse,
        "response.output_text.delta",
        with(json!({ "delta": text.message, "logprobs": [] })),
    );
    event(
        &mut sse,
        "response.output_text.done",
        with(json!({ "text": text.message, "logprobs": [] })),
    );
    event(
        &mut sse,
        "response.content_part.done",
        with(json!({ "part": part })),
    );
    event(
        &mut sse,
        "response.output_item.done",
        json!({ "output_index": 0, "item": final_item }),
    );
    event(
        &mut sse,
        "response.completed",
        json!({ "response": response(done, json!([final_item]), usage) }),
    );
    Answer::EventStream(sse.finish())
}

#[cfg(test)]
mod tests {
    use super::super::OpenAi;
    use crate::protocol::dialect::Dialect;
    use crate::protocol::dialect::tests::read;
    use crate::protocol::refusal::Refusal;
    use crate::protocol::refusal::tests::{EXPECTED_TEXT, MARKED, REFUSAL, parts, sse_events};
    use http::{Method, StatusCode};
    use serde_json::{Value, json};

    /// The refusal of a POST to `path` with `body`: status, content type, body.
    async fn refuse(
        path: &str,
        body: &Value,
        refusal: &Refusal<'_>,
    ) -> (StatusCode, String, String) {
        let meaning = read(&OpenAi, Method::POST, path, None, &body.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let response = OpenAi.refusal(&meaning.shape, refusal);
        parts(response.unwrap_or_else(|| panic!("no refusal for {path}"))).await
    }

    fn chat(stream: bool, include_usage: bool) -> Value {
        json!({
            "model": "gpt-4.1",
            "messages": [{ "role": "user", "content": "hi" }],
            "stream": stream,
            "stream_options": if stream { json!({ "include_usage": include_usage }) } else { Value::Null },
        })
    }

    #[tokio::test]
    async fn non_streaming_chat_refusal_is_a_complete_chat_completion_that_stops() {
        let (status, content_type, body) =
            refuse("/v1/chat/completions", &chat(false, false), &REFUSAL).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::OK, "application/json")
        );
        let completion: Value = serde_json::from_str(&body).unwrap_or_default();
        assert!(
            completion["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("chatcmpl-"))
        );
        assert_eq!(completion["object"], "chat.completion");
        assert!(
            completion["created"]
                .as_u64()
                .is_some_and(|t| t > 1_700_000_000)
        );
        assert_eq!(completion["model"], "gpt-4.1");
        let choice = &completion["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["message"]["content"], EXPECTED_TEXT);
        assert!(choice["message"]["refusal"].is_null());
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(completion["usage"]["total_tokens"], 0);
    }

    #[tokio::test]
    async fn a_marked_chat_refusal_finishes_with_content_filter() {
        let (_, _, body) = refuse("/v1/chat/completions", &chat(false, false), &MARKED).await;
        let completion: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(completion["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(
            completion["choices"][0]["message"]["content"],
            EXPECTED_TEXT
        );
        let (_, _, body) = refuse("/v1/chat/completions", &chat(true, true), &MARKED).await;
        let events = sse_events(&body);
        assert_eq!(events[2].1["choices"][0]["finish_reason"], "content_filter");
    }

    #[tokio::test]
    async fn streaming_chat_refusal_is_role_content_stop_usage_then_done() {
        let (status, content_type, body) =
            refuse("/v1/chat/completions", &chat(true, true), &REFUSAL).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::OK, "text/event-stream")
        );
        let events = sse_events(&body);
        assert_eq!(events.len(), 5);
        assert!(
            events.iter().all(|(name, _)| name.is_none()),
            "chat chunks are unnamed"
        );
        let chunks: Vec<&Value> = events[..4].iter().map(|(_, d)| d).collect();
        let id = chunks[0]["id"].clone();
        for chunk in &chunks {
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["id"], id, "one id for the whole stream");
            assert_eq!(chunk["model"], "gpt-4.1");
        }
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(chunks[0]["usage"].is_null());
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, EXPECTED_TEXT);
        assert!(
            chunks[..2]
                .iter()
                .all(|c| c["choices"][0]["finish_reason"].is_null())
        );
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["choices"], json!([]));
        assert_eq!(chunks[3]["usage"]["completion_tokens"], 0);
        assert_eq!(events[4].1, "[DONE]");
    }

    #[tokio::test]
    async fn streaming_chat_refusal_without_include_usage_has_no_usage_chunk() {
        let (_, _, body) = refuse("/v1/chat/completions", &chat(true, false), &REFUSAL).await;
        let events = sse_events(&body);
        assert_eq!(events.len(), 4);
        assert!(events[..3].iter().all(|(_, d)| d.get("usage").is_none()));
        assert_eq!(events[3].1, "[DONE]");
    }

    #[tokio::test]
    async fn completions_refusal_streams_text_completion_chunks() {
        let streamed = json!({"model":"gpt-3.5-turbo-instruct","prompt":"x","stream":true});
        let (_, content_type, body) = refuse("/v1/completions", &streamed, &REFUSAL).await;
        assert_eq!(content_type, "text/event-stream");
        let events = sse_events(&body);
        assert_eq!(events[0].1["object"], "text_completion");
        assert_eq!(events[0].1["choices"][0]["text"], EXPECTED_TEXT);
        assert_eq!(events[1].1["choices"][0]["finish_reason"], "stop");
        assert_eq!(events.last().map(|(_, d)| d.clone()), Some(json!("[DONE]")));
        let plain = json!({"model":"gpt-3.5-turbo-instruct","prompt":"x"});
        let (_, _, body) = refuse("/v1/completions", &plain, &REFUSAL).await;
        let body: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(body["usage"]["prompt_tokens"], 0);
        let (_, _, body) = refuse("/v1/completions", &plain, &MARKED).await;
        let body: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    }

    fn responses_request(stream: bool) -> Value {
        json!({ "model": "gpt-5", "input": "hi", "stream": stream, "store": false, "max_output_tokens": 300 })
    }

    /// A final Response carrying the refusal, with `status`.
    fn assert_final_response(response: &Value, status: &str) {
        assert!(
            response["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("resp_"))
        );
        assert_eq!(response["object"], "response");
        assert_eq!(response["status"], status);
        assert_eq!(response["model"], "gpt-5");
        assert_eq!(response["max_output_tokens"], 300);
        assert_eq!(response["output"][0]["type"], "message");
        assert_eq!(response["output"][0]["status"], status);
        assert_eq!(response["output"][0]["role"], "assistant");
        assert_eq!(response["output"][0]["content"][0]["type"], "output_text");
        assert_eq!(response["output"][0]["content"][0]["text"], EXPECTED_TEXT);
        assert_eq!(response["usage"]["output_tokens"], 0);
        assert!(response["tools"].is_array() && response["parallel_tool_calls"].is_boolean());
    }

    #[tokio::test]
    async fn non_streaming_responses_refusal_is_completed_or_marked_incomplete() {
        let (status, _, body) = refuse("/responses", &responses_request(false), &REFUSAL).await;
        assert_eq!(status, StatusCode::OK);
        let response: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_final_response(&response, "completed");
        assert!(response["incomplete_details"].is_null());
        let (_, _, body) = refuse("/responses", &responses_request(false), &MARKED).await;
        let response: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_final_response(&response, "incomplete");
        assert_eq!(response["incomplete_details"]["reason"], "content_filter");
    }

    #[tokio::test]
    async fn streaming_responses_refusal_is_the_full_event_sequence() {
        let (_, content_type, body) =
            refuse("/responses", &responses_request(true), &REFUSAL).await;
        assert_eq!(content_type, "text/event-stream");
        let events = sse_events(&body);
        let names: Vec<String> = events
            .iter()
            .map(|(n, _)| n.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"].as_str(), name.as_deref());
            assert_eq!(data["sequence_number"], i);
        }
        assert_eq!(events[0].1["response"]["status"], "in_progress");
        let msg_id = &events[2].1["item"]["id"];
        assert_eq!(&events[4].1["item_id"], msg_id);
        assert_eq!(events[4].1["delta"], EXPECTED_TEXT);
        assert_eq!(events[5].1["text"], EXPECTED_TEXT);
        assert_eq!(events[7].1["item"]["status"], "completed");
        assert_final_response(&events[8].1["response"], "completed");
        assert_eq!(events[8].1["response"]["id"], events[0].1["response"]["id"]);

        let (_, _, body) = refuse("/responses", &responses_request(true), &MARKED).await;
        let events = sse_events(&body);
        assert_eq!(events[8].0.as_deref(), Some("response.completed"));
        assert_final_response(&events[8].1["response"], "incomplete");
    }

    #[tokio::test]
    async fn embeddings_and_models_refusals_are_403_errors_with_the_explanation() {
        for (method, path, body) in [
            (
                Method::POST,
                "/v1/embeddings",
                r#"{"model":"text-embedding-3-small","input":"x"}"#,
            ),
            (Method::GET, "/v1/models", ""),
            (Method::GET, "/v1/models/gpt-4o", ""),
        ] {
            let meaning = read(&OpenAi, method, path, None, body).unwrap_or_else(|e| panic!("{e}"));
            let response = OpenAi.refusal(&meaning.shape, &REFUSAL);
            let (status, content_type, body) =
                parts(response.unwrap_or_else(|| panic!("{path}"))).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
            assert_eq!(content_type, "application/json");
            let body: Value = serde_json::from_str(&body).unwrap_or_default();
            assert_eq!(body["error"]["message"], EXPECTED_TEXT, "{path}");
            assert_eq!(body["error"]["type"], "permission_error");
            assert_eq!(body["error"]["code"], "request_denied");
        }
    }
}
