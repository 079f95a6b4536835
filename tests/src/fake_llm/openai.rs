//! OpenAI shapes: chat completions, Responses API, embeddings, models.

use base64::Engine;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{
    COMPLETION_TOKENS, Exchange, FakeBody, PROMPT_TOKENS, TEXT_CHUNKS, TOOL_ARGUMENTS, data_event,
    fragments, full_text, json_response, named_event, now, sse_response,
};

/// Models the fake lists.
pub const MODELS: [&str; 4] = ["gpt-4o-mini", "gpt-4.1", "text-embedding-3-small", "gpt-4o"];

/// Dimensions of every embedding vector.
pub const EMBEDDING_DIMENSIONS: usize = 8;

pub(super) fn respond(ex: Exchange) -> Option<Response<FakeBody>> {
    let path = ex.request.path.split('?').next().unwrap_or("").to_owned();
    let path = path.strip_prefix("/v1").unwrap_or(&path);
    match (&ex.request.method, path) {
        (&Method::POST, "/chat/completions") => Some(chat(ex)),
        (&Method::POST, "/responses") => Some(responses(ex)),
        (&Method::POST, "/embeddings") => Some(embeddings(&ex)),
        (&Method::GET, "/models") => Some(json_response(&models())),
        (&Method::GET, p) if p.starts_with("/models/") => {
            let id = &p["/models/".len()..];
            MODELS.contains(&id).then(|| json_response(&model(id)))
        }
        _ => None,
    }
}

/// The provider's error body for `status`.
pub(super) fn error_body(status: StatusCode) -> Value {
    let (message, kind, code) = match status.as_u16() {
        400 => (
            "We could not parse the JSON body of your request.",
            "invalid_request_error",
            Value::Null,
        ),
        401 => (
            "Incorrect API key provided.",
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        404 => (
            "The requested resource was not found.",
            "invalid_request_error",
            json!("unknown_url"),
        ),
        429 => (
            "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1.",
            "requests",
            json!("rate_limit_exceeded"),
        ),
        503 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            Value::Null,
        ),
        _ => (
            "The server had an error while processing your request.",
            "server_error",
            Value::Null,
        ),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_715_367_049, "owned_by": "system"})
}

fn models() -> Value {
    json!({"object": "list", "data": MODELS.iter().map(|m| model(m)).collect::<Vec<_>>()})
}

fn requested_model(json: &Value) -> String {
    json.get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-4o-mini")
        .to_owned()
}

/// The tool the model should call: the first declared tool, unless the conversation already
/// carries a tool result or `tool_choice` is `none`. Any `tool` message counts, not only a last
/// one: agents append messages after the results (OpenClaw adds a user message of internal
/// context), and a fake that proposed the tool again would loop the agent until its deadline.
fn tool_to_call(json: &Value) -> Option<String> {
    if json.get("tool_choice").and_then(Value::as_str) == Some("none") {
        return None;
    }
    let answered = json
        .get("messages")
        .and_then(Value::as_array)
        .is_some_and(|messages| {
            messages
                .iter()
                .any(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
        });
    if answered {
        return None;
    }
    let tool = json.get("tools")?.as_array()?.first()?;
    let name = tool
        .pointer("/function/name")
        .or_else(|| tool.get("name"))?;
    name.as_str().map(str::to_owned)
}

fn usage() -> Value {
    json!({
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    })
}

const CALL_ID: &str = "call_fake0TOOL1";

/// The calls the model proposes: one per declared tool whose description is
/// `propose:<arguments JSON>` (parallel calls, as a test asks for them), else the first
/// declared tool with the usual arguments, unless the conversation is past it.
fn calls_to_propose(json: &Value) -> Vec<(String, String)> {
    let answered = tool_to_call(json).is_none();
    let proposed = super::proposed_calls(tools_of(json), "/function");
    if answered {
        return Vec::new();
    }
    if !proposed.is_empty() {
        return proposed;
    }
    tool_to_call(json)
        .map(|name| vec![(name, TOOL_ARGUMENTS.to_owned())])
        .unwrap_or_default()
}

/// A tool description that makes the fake propose a call to it with the arguments that follow.
pub const PROPOSE_PREFIX: &str = "propose:";

/// The id of the fake's `n`th proposed call.
pub fn call_id(n: usize) -> String {
    super::nth_id(CALL_ID, n)
}

fn chat(ex: Exchange) -> Response<FakeBody> {
    let model = requested_model(&ex.json);
    let calls = calls_to_propose(&ex.json);
    let created = now();
    let id = "chatcmpl-fakeW4RD3N";
    if ex.json.get("stream").and_then(Value::as_bool) != Some(true) {
        let (message, finish) = if calls.is_empty() {
            (
                json!({"role": "assistant", "content": full_text(), "refusal": null, "annotations": []}),
                "stop",
            )
        } else {
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(n, (name, args))| {
                    json!({"id": call_id(n), "type": "function",
                           "function": {"name": name, "arguments": args}})
                })
                .collect();
            (
                json!({"role": "assistant", "content": null, "refusal": null, "annotations": [],
                       "tool_calls": tool_calls}),
                "tool_calls",
            )
        };
        let mut answer = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "service_tier": "default", "system_fingerprint": "fp_fake"
        });
        if ex.pad > 0 {
            answer["padding"] = json!("x".repeat(ex.pad));
        }
        // Usage last, as the provider writes it (keys are sorted: `usage` after `padding`).
        answer["usage"] = usage();
        return json_response(&answer);
    }

    let include_usage = ex
        .json
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        data_event(&c)
    };
    let mut events: Vec<Bytes> = Vec::new();
    if calls.is_empty() {
        events.push(chunk(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ));
        for piece in TEXT_CHUNKS {
            events.push(chunk(json!({"content": piece}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
    } else {
        for (n, (name, args)) in calls.iter().enumerate() {
            let head = json!([{"index": n, "id": call_id(n), "type": "function",
                               "function": {"name": name, "arguments": ""}}]);
            let delta = if n == 0 {
                json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": head})
            } else {
                json!({"tool_calls": head})
            };
            events.push(chunk(delta, Value::Null));
            for piece in fragments(args, 5.max(args.len() / 4)) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": n, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
        }
        events.push(chunk(json!({}), json!("tool_calls")));
    }
    if include_usage {
        events.push(data_event(&json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_fake", "choices": [], "usage": usage()
        })));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_response(ex.stream.spawn(events, 2))
}

fn responses_usage() -> Value {
    json!({
        "input_tokens": PROMPT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": COMPLETION_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS
    })
}

fn response_object(model: &str, created: u64, status: &str, output: Value, usage: Value) -> Value {
    json!({
        "id": "resp_fakeW4RD3N", "object": "response", "created_at": created, "status": status,
        "background": false, "error": null, "incomplete_details": null, "instructions": null,
        "max_output_tokens": null, "model": model, "output": output, "parallel_tool_calls": true,
        "previous_response_id": null, "reasoning": {"effort": null, "summary": null},
        "service_tier": "default", "store": false, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled", "usage": usage, "user": null, "metadata": {}
    })
}

/// The `function_call` item of the `n`th call the model proposes, `arguments` as far as given.
fn function_call_item(n: usize, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": super::nth_id(FUNCTION_CALL_ITEM, n),
           "call_id": call_id(n), "name": name, "arguments": arguments, "status": status})
}

const FUNCTION_CALL_ITEM: &str = "fc_fakeW4RD3N";

/// A Responses API answer that proposes `calls` (parallel `function_call` items), whole or
/// streamed: each item added, its arguments in several deltas, done, then the response.
fn responses_calls(ex: Exchange, model: &str, calls: &[(String, String)]) -> Response<FakeBody> {
    let created = now();
    let done: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(n, (name, args))| function_call_item(n, name, args, "completed"))
        .collect();
    let completed = response_object(model, created, "completed", json!(done), responses_usage());
    if ex.json.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_response(&completed);
    }
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut push = |name: &str, mut value: Value| {
        value["type"] = json!(name);
        value["sequence_number"] = json!(seq);
        seq += 1;
        events.push(named_event(name, &value));
    };
    let pending = response_object(model, created, "in_progress", json!([]), Value::Null);
    push("response.created", json!({"response": pending}));
    push("response.in_progress", json!({"response": pending}));
    for (n, (name, args)) in calls.iter().enumerate() {
        let item_id = super::nth_id(FUNCTION_CALL_ITEM, n);
        push(
            "response.output_item.added",
            json!({"output_index": n, "item": function_call_item(n, name, "", "in_progress")}),
        );
        for piece in fragments(args, 5.max(args.len() / 4)) {
            push(
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": n, "delta": piece}),
            );
        }
        push(
            "response.function_call_arguments.done",
            json!({"item_id": item_id, "output_index": n, "arguments": args}),
        );
        push(
            "response.output_item.done",
            json!({"output_index": n, "item": done[n]}),
        );
    }
    push("response.completed", json!({"response": completed}));
    if ex.diverge {
        // The call items and the final output say `ls`; the deltas and `.done` events said
        // what the model proposed.
        let ls = serde_json::to_string(r#"{"command":"ls"}"#).unwrap_or_default();
        events = events
            .into_iter()
            .map(|event| {
                let text = String::from_utf8_lossy(&event).into_owned();
                if !(text.starts_with("event: response.output_item.done")
                    || text.starts_with("event: response.completed"))
                {
                    return event;
                }
                let mut text = text;
                for (_, args) in calls {
                    let given = serde_json::to_string(args).unwrap_or_default();
                    text = text.replace(
                        &format!("\"arguments\":{given}"),
                        &format!("\"arguments\":{ls}"),
                    );
                }
                Bytes::from(text)
            })
            .collect();
    }
    sse_response(ex.stream.spawn(events, 4))
}

fn responses(ex: Exchange) -> Response<FakeBody> {
    let model = requested_model(&ex.json);
    let calls = responses_calls_to_propose(&ex.json);
    if !calls.is_empty() {
        return responses_calls(ex, &model, &calls);
    }
    let created = now();
    let msg_id = "msg_fakeW4RD3N";
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
    let item = |status: &str, content: Value| json!({"type": "message", "id": msg_id, "status": status, "role": "assistant", "content": content});
    let done_item = item("completed", json!([part(&full_text())]));
    if ex.json.get("stream").and_then(Value::as_bool) != Some(true) {
        return json_response(&response_object(
            &model,
            created,
            "completed",
            json!([done_item]),
            responses_usage(),
        ));
    }
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut push = |name: &str, mut value: Value| {
        value["type"] = json!(name);
        value["sequence_number"] = json!(seq);
        seq += 1;
        events.push(named_event(name, &value));
    };
    let pending = response_object(&model, created, "in_progress", json!([]), Value::Null);
    push("response.created", json!({"response": pending}));
    push("response.in_progress", json!({"response": pending}));
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": item("in_progress", json!([]))}),
    );
    push(
        "response.content_part.added",
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "part": part("")}),
    );
    for piece in TEXT_CHUNKS {
        push(
            "response.output_text.delta",
            json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
        );
    }
    push(
        "response.output_text.done",
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "text": full_text(), "logprobs": []}),
    );
    push(
        "response.content_part.done",
        json!({"item_id": msg_id, "output_index": 0, "content_index": 0, "part": part(&full_text())}),
    );
    push(
        "response.output_item.done",
        json!({"output_index": 0, "item": done_item}),
    );
    push(
        "response.completed",
        json!({"response": response_object(&model, created, "completed", json!([done_item]), responses_usage())}),
    );
    sse_response(ex.stream.spawn(events, 4))
}

/// The calls a Responses API request makes the model propose: one per declared tool whose
/// description is `propose:<arguments JSON>`, unless its input already carries a call's output.
fn responses_calls_to_propose(json: &Value) -> Vec<(String, String)> {
    let answered = json
        .get("input")
        .and_then(Value::as_array)
        .is_some_and(|items| {
            items
                .iter()
                .any(|i| i.get("type").and_then(Value::as_str) == Some("function_call_output"))
        });
    if answered {
        return Vec::new();
    }
    super::proposed_calls(tools_of(json), "")
}

/// The tools a request declares.
fn tools_of(json: &Value) -> &[Value] {
    json.get("tools")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn embedding_vector(index: usize) -> Vec<f32> {
    (0..EMBEDDING_DIMENSIONS)
        .map(|d| ((index + 1) * (d + 1)) as f32 / 100.0)
        .collect()
}

fn embeddings(ex: &Exchange) -> Response<FakeBody> {
    let inputs = match ex.json.get("input") {
        Some(Value::Array(items)) => items.len(),
        Some(_) => 1,
        None => 0,
    };
    let base64 = ex.json.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = (0..inputs)
        .map(|i| {
            let vector = embedding_vector(i);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json_response(&json!({
        "object": "list", "data": data, "model": requested_model(&ex.json),
        "usage": {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS}
    }))
}
