//! Anthropic Messages: requests and refusal answers.

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::estimate::{TextChars, ToolDef, tokens_from_chars};
use super::refusal::{Answer, RefusalText, SseWriter};
use super::{
    Endpoint, LlmRequest, Protocol, ProtocolError, model_from_path, parse_body, require_method,
    require_model, unsupported,
};

/// Reads an Anthropic request (`/v1/messages`, `/v1/messages/count_tokens`, `/v1/models`).
pub(super) fn interpret(
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<LlmRequest, ProtocolError> {
    let endpoint = match path {
        "/v1/messages" => Endpoint::Messages,
        "/v1/messages/count_tokens" => Endpoint::CountTokens,
        "/v1/models" => {
            require_method(method, Method::GET, path)?;
            return Ok(LlmRequest::bare(Endpoint::ListModels, None));
        }
        _ => match path.strip_prefix("/v1/models/") {
            Some(id) => {
                require_method(method, Method::GET, path)?;
                let model = model_from_path(id, path, false)?;
                return Ok(LlmRequest::bare(Endpoint::GetModel, Some(model)));
            }
            None => return Err(unsupported(Protocol::Anthropic, method, path)),
        },
    };
    require_method(method, Method::POST, path)?;
    let req: MessagesRequest<'_> = parse_body(endpoint, body)?;
    let mut chars = req.system.0 + req.messages.0;
    let mut tools = Vec::new();
    for tool in req.tools.into_iter().flatten() {
        chars += tool.chars();
        // Client tools and server tools (web_search, bash, ...) all carry a name.
        tools.extend(tool.name.or(tool.kind));
    }
    let stream = endpoint == Endpoint::Messages && req.stream.unwrap_or(false);
    Ok(LlmRequest {
        verb: endpoint.verb(),
        model: Some(require_model(endpoint, req.model)?),
        stream,
        max_tokens: req.max_tokens,
        tools,
        input_tokens: tokens_from_chars(chars),
        endpoint,
        include_usage: false,
        event_stream: stream,
    })
}

/// The fields of a Messages (or count_tokens) request Warden reads.
#[derive(Deserialize)]
struct MessagesRequest<'a> {
    model: Option<String>,
    stream: Option<bool>,
    max_tokens: Option<u64>,
    #[serde(default)]
    system: TextChars,
    #[serde(default)]
    messages: TextChars,
    #[serde(borrow)]
    tools: Option<Vec<ToolDef<'a>>>,
}

/// A refusal as a Messages answer (`stop_reason: "refusal"`), streamed as the Messages event
/// sequence when the request streams.
pub(super) fn refusal(interpreted: &LlmRequest, text: &RefusalText) -> Answer {
    let id = format!("msg_{}", text.id);
    let model = text.model(interpreted);
    if !interpreted.stream {
        return Answer::Json(json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{ "type": "text", "text": text.message }],
            "stop_reason": "refusal",
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
            "delta": { "stop_reason": "refusal", "stop_sequence": null },
            "usage": { "output_tokens": 0 },
        }),
    );
    sse.event("message_stop", &json!({ "type": "message_stop" }));
    Answer::EventStream(sse.finish())
}

#[cfg(test)]
mod tests {
    use super::super::interpret_llm as interpret_any;
    use super::super::refusal::refusal_response;
    use super::super::refusal::tests::{EXPECTED_TEXT, REFUSAL, parts, sse_events};
    use super::*;
    use http::StatusCode;
    use serde_json::Value;

    fn interpret(method: Method, path: &str, body: &str) -> Result<LlmRequest, ProtocolError> {
        interpret_any(Protocol::Anthropic, &method, path, None, body.as_bytes())
    }

    /// A Messages body shaped like OpenClaw's: system as two blocks (first cache-marked),
    /// tool_use / tool_result history, client and server tools.
    fn openclaw_messages_body() -> String {
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 8192,
            "stream": true,
            "system": [
                { "type": "text", "text": "x".repeat(26_000), "cache_control": { "type": "ephemeral" } },
                { "type": "text", "text": "Current time: 2026-11-02T10:00:00Z" }
            ],
            "messages": [
                { "role": "user", "content": "What is in README.md?" },
                { "role": "assistant", "content": [
                    { "type": "thinking", "thinking": "Need to read it.", "signature": "EqQBCkYIBRgCKkA".repeat(100) },
                    { "type": "tool_use", "id": "toolu_01", "name": "read", "input": { "path": "README.md" } }
                ]},
                { "role": "user", "content": [
                    { "type": "tool_result", "tool_use_id": "toolu_01", "content": "# Warden" },
                    { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo".repeat(1000) } }
                ]}
            ],
            "tools": [
                { "name": "read", "description": "Read a file", "input_schema": { "type": "object", "properties": { "path": { "type": "string" } } } },
                { "name": "exec", "description": "Run a command", "input_schema": { "type": "object" }, "cache_control": { "type": "ephemeral" } },
                { "type": "web_search_20250305", "name": "web_search", "max_uses": 5 }
            ]
        })
        .to_string()
    }

    #[test]
    fn reads_openclaw_messages_request() {
        let got = interpret(Method::POST, "/v1/messages", &openclaw_messages_body())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.endpoint, Endpoint::Messages);
        assert_eq!(got.model.as_deref(), Some("claude-sonnet-4-5"));
        assert!(got.stream && got.event_stream);
        assert_eq!(got.max_tokens, Some(8192));
        assert_eq!(got.tools, vec!["read", "exec", "web_search"]);
        // 26k chars of system prompt dominate; the image and the signature are not counted.
        assert!(
            (6_500..6_700).contains(&got.input_tokens),
            "{}",
            got.input_tokens
        );
    }

    #[test]
    fn count_tokens_never_streams_and_models_are_listed() {
        let body = r#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let got = interpret(Method::POST, "/v1/messages/count_tokens", body)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got.endpoint, got.stream), (Endpoint::CountTokens, false));
        let list = interpret(Method::GET, "/v1/models", "").map(|i| i.endpoint);
        assert_eq!(list, Ok(Endpoint::ListModels));
        let one = interpret(Method::GET, "/v1/models/claude-opus-4-1", "").map(|i| i.model);
        assert_eq!(one, Ok(Some("claude-opus-4-1".to_owned())));
    }

    #[test]
    fn refuses_paths_outside_the_messages_api() {
        for path in [
            "/messages",
            "/v1/complete",
            "/v1/messages/batches",
            "/v1/messages/",
        ] {
            let got = interpret(Method::POST, path, "{}");
            assert!(
                matches!(got, Err(ProtocolError::UnsupportedEndpoint { .. })),
                "{path}"
            );
        }
        let get = interpret(Method::GET, "/v1/messages", "");
        assert!(matches!(get, Err(ProtocolError::WrongMethod { .. })));
    }

    #[test]
    fn missing_model_is_refused() {
        let got = interpret(
            Method::POST,
            "/v1/messages",
            r#"{"max_tokens":5,"messages":[]}"#,
        );
        assert_eq!(
            got,
            Err(ProtocolError::MissingModel {
                endpoint: Endpoint::Messages
            })
        );
    }

    fn messages(stream: bool) -> LlmRequest {
        let body = json!({ "model": "claude-sonnet-4-5", "max_tokens": 10, "stream": stream, "messages": [] });
        interpret(Method::POST, "/v1/messages", &body.to_string()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn non_streaming_refusal_is_a_complete_message_with_stop_reason_refusal() {
        let response = refusal_response(Protocol::Anthropic, &messages(false), &REFUSAL);
        let (status, content_type, body) = parts(response).await;
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
        assert_eq!(msg["stop_reason"], "refusal");
        assert_eq!(msg["usage"]["input_tokens"], 0);
        assert_eq!(msg["usage"]["output_tokens"], 0);
    }

    #[tokio::test]
    async fn streaming_refusal_follows_the_messages_event_sequence() {
        let response = refusal_response(Protocol::Anthropic, &messages(true), &REFUSAL);
        let (status, content_type, body) = parts(response).await;
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
        assert_eq!(events[4].1["delta"]["stop_reason"], "refusal");
    }
}
