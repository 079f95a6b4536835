//! Anthropic shapes: messages (whole and the full SSE event sequence), models.

use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{
    COMPLETION_TOKENS, Exchange, FakeBody, PROMPT_TOKENS, TEXT_CHUNKS, TOOL_ARGUMENTS, fragments,
    full_text, json_response, named_event, sse_response,
};

const MESSAGE_ID: &str = "msg_01FakeW4RD3N";
const TOOL_USE_ID: &str = "toolu_01FakeW4RD3N";
/// Text before a tool call, as Claude models usually write one.
const TOOL_PREAMBLE: &str = "Let me check that.";

pub(super) fn respond(ex: Exchange) -> Option<Response<FakeBody>> {
    let path = ex.request.path.split('?').next().unwrap_or("").to_owned();
    match (&ex.request.method, path.as_str()) {
        (&Method::POST, "/v1/messages") => Some(messages(ex)),
        (&Method::POST, "/v1/messages/count_tokens") => {
            Some(json_response(&json!({"input_tokens": PROMPT_TOKENS})))
        }
        (&Method::GET, "/v1/models") => Some(json_response(&json!({
            "data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
                      "created_at": "2025-09-29T00:00:00Z"}],
            "has_more": false, "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"
        }))),
        _ => None,
    }
}

/// The provider's error body for `status`.
pub(super) fn error_body(status: StatusCode) -> Value {
    let (kind, message) = match status.as_u16() {
        400 => (
            "invalid_request_error",
            "anthropic-version: header is required",
        ),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => ("not_found_error", "Not found"),
        413 => (
            "request_too_large",
            "Request exceeds the maximum allowed number of bytes.",
        ),
        429 => (
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    };
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_01FakeW4RD3N"})
}

fn tool_to_call(json: &Value) -> Option<String> {
    if json.pointer("/tool_choice/type").and_then(Value::as_str) == Some("none") {
        return None;
    }
    // Any `tool_result` block counts, not only one in the last message: agents may add
    // messages after the results, and proposing the tool again would loop them.
    let answered = json
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(|messages| {
            messages
                .iter()
                .filter_map(|m| m.get("content").and_then(Value::as_array))
                .flatten()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        });
    if answered {
        return None;
    }
    json.get("tools")?
        .as_array()?
        .first()?
        .get("name")?
        .as_str()
        .map(str::to_owned)
}

/// The calls the model proposes: one per declared tool whose description is
/// `propose:<input JSON>`, else the first declared tool with the usual input, unless the
/// conversation is past it.
fn calls_to_propose(json: &Value) -> Vec<(String, Value)> {
    let Some(first) = tool_to_call(json) else {
        return Vec::new();
    };
    let tools = json.get("tools").and_then(Value::as_array);
    let proposed: Vec<(String, Value)> = super::proposed_calls(tools.into_iter().flatten(), "")
        .into_iter()
        .filter_map(|(name, input)| Some((name, serde_json::from_str(&input).ok()?)))
        .collect();
    if proposed.is_empty() {
        vec![(first, tool_input())]
    } else {
        proposed
    }
}

/// The id of the `n`th `tool_use` block.
fn tool_use_id(n: usize) -> String {
    super::nth_id(TOOL_USE_ID, n)
}

fn usage(output_tokens: u64) -> Value {
    json!({
        "input_tokens": PROMPT_TOKENS, "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
        "service_tier": "standard"
    })
}

fn tool_input() -> Value {
    serde_json::from_str(TOOL_ARGUMENTS).unwrap_or(Value::Null)
}

fn messages(ex: Exchange) -> Response<FakeBody> {
    let model = ex
        .json
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-sonnet-4-5")
        .to_owned();
    let calls = calls_to_propose(&ex.json);
    let tool = calls.first().map(|(name, _)| name.clone());
    let stop_reason = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    if ex.json.get("stream").and_then(Value::as_bool) != Some(true) {
        let content = match &tool {
            Some(_) => {
                let mut blocks = vec![json!({"type": "text", "text": TOOL_PREAMBLE})];
                blocks.extend(calls.iter().enumerate().map(|(n, (name, input))| {
                    json!({"type": "tool_use", "id": tool_use_id(n), "name": name, "input": input})
                }));
                Value::from(blocks)
            }
            None => json!([{"type": "text", "text": full_text()}]),
        };
        return json_response(&json!({
            "id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": usage(COMPLETION_TOKENS)
        }));
    }

    let mut events = vec![
        named_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": MESSAGE_ID, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(1)
            }}),
        ),
        named_event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        named_event("ping", &json!({"type": "ping"})),
    ];
    let text_delta = |text: &str| {
        named_event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        )
    };
    match &tool {
        Some(_) => {
            events.push(text_delta(TOOL_PREAMBLE));
            events.push(named_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            for (n, (name, input)) in calls.iter().enumerate() {
                let index = n + 1;
                events.push(named_event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index,
                            "content_block": {"type": "tool_use", "id": tool_use_id(n), "name": name, "input": {}}}),
                ));
                events.push(named_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": ""}}),
                ));
                let text = input.to_string();
                for piece in fragments(&text, 4.max(text.len() / 4)) {
                    events.push(named_event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    ));
                }
                events.push(named_event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": index}),
                ));
            }
        }
        None => {
            for piece in TEXT_CHUNKS {
                events.push(text_delta(piece));
            }
            events.push(named_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
        }
    }
    events.push(named_event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": COMPLETION_TOKENS}}),
    ));
    events.push(named_event(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    sse_response(ex.stream.spawn(events, 4))
}
