//! OpenAI (and OpenAI-compatible: Ollama `/v1`, vLLM): requests and refusal answers.

use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::estimate::{TextChars, ToolDef, tokens_from_chars};
use super::refusal::{Answer, RefusalText, SseWriter};
use super::{
    Endpoint, LlmRequest, Protocol, ProtocolError, model_from_path, parse_body, require_method,
    require_model, unsupported,
};

/// Reads an OpenAI request. Paths are accepted with or without a leading `/v1`.
pub(super) fn interpret(
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<LlmRequest, ProtocolError> {
    let rest = match path.strip_prefix("/v1") {
        Some(r) if r.starts_with('/') => r,
        _ => path,
    };
    let endpoint = match rest {
        "/chat/completions" => Endpoint::ChatCompletions,
        "/completions" => Endpoint::Completions,
        "/responses" => Endpoint::Responses,
        "/embeddings" => Endpoint::Embeddings,
        "/models" => {
            require_method(method, Method::GET, path)?;
            return Ok(LlmRequest::bare(Endpoint::ListModels, None));
        }
        _ => match rest.strip_prefix("/models/") {
            Some(id) => {
                require_method(method, Method::GET, path)?;
                let model = model_from_path(id, path, true)?;
                return Ok(LlmRequest::bare(Endpoint::GetModel, Some(model)));
            }
            None => return Err(unsupported(Protocol::Openai, method, path)),
        },
    };
    require_method(method, Method::POST, path)?;
    match endpoint {
        Endpoint::ChatCompletions => chat(body),
        Endpoint::Completions => completions(body),
        Endpoint::Responses => responses(body),
        _ => embeddings(body),
    }
}

/// `stream_options` of chat and completions.
#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// A Chat Completions tool: `{type, function: {...}}` or `{type: "custom", custom: {...}}`.
#[derive(Deserialize)]
struct ChatTool<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(borrow)]
    function: Option<ToolDef<'a>>,
    #[serde(borrow)]
    custom: Option<ToolDef<'a>>,
}

/// The fields of a Chat Completions request Warden reads.
#[derive(Deserialize)]
struct ChatRequest<'a> {
    model: Option<String>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    messages: TextChars,
    #[serde(borrow)]
    tools: Option<Vec<ChatTool<'a>>>,
    #[serde(borrow)]
    functions: Option<Vec<ToolDef<'a>>>,
}

fn chat(body: &[u8]) -> Result<LlmRequest, ProtocolError> {
    let endpoint = Endpoint::ChatCompletions;
    let req: ChatRequest<'_> = parse_body(endpoint, body)?;
    let mut chars = req.messages.0;
    let mut tools = Vec::new();
    for tool in req.tools.into_iter().flatten() {
        let def = tool.function.or(tool.custom);
        chars += def.as_ref().map_or(0, ToolDef::chars);
        if let Some(name) = def.and_then(|d| d.name).or(tool.kind) {
            tools.push(name);
        }
    }
    for function in req.functions.into_iter().flatten() {
        chars += function.chars();
        tools.extend(function.name);
    }
    let stream = req.stream.unwrap_or(false);
    Ok(LlmRequest {
        verb: endpoint.verb(),
        model: Some(require_model(endpoint, req.model)?),
        stream,
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        tools,
        input_tokens: tokens_from_chars(chars),
        endpoint,
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        event_stream: stream,
    })
}

/// The fields of a legacy Completions request Warden reads.
#[derive(Deserialize)]
struct CompletionsRequest {
    model: Option<String>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    #[serde(default)]
    prompt: TextChars,
    #[serde(default)]
    suffix: TextChars,
}

fn completions(body: &[u8]) -> Result<LlmRequest, ProtocolError> {
    let endpoint = Endpoint::Completions;
    let req: CompletionsRequest = parse_body(endpoint, body)?;
    let stream = req.stream.unwrap_or(false);
    Ok(LlmRequest {
        verb: endpoint.verb(),
        model: Some(require_model(endpoint, req.model)?),
        stream,
        max_tokens: req.max_tokens,
        tools: Vec::new(),
        input_tokens: tokens_from_chars(req.prompt.0 + req.suffix.0),
        endpoint,
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        event_stream: stream,
    })
}

/// The fields of a Responses request Warden reads.
#[derive(Deserialize)]
struct ResponsesRequest<'a> {
    model: Option<String>,
    stream: Option<bool>,
    max_output_tokens: Option<u64>,
    #[serde(default)]
    instructions: TextChars,
    #[serde(default)]
    input: TextChars,
    #[serde(borrow)]
    tools: Option<Vec<ToolDef<'a>>>,
}

fn responses(body: &[u8]) -> Result<LlmRequest, ProtocolError> {
    let endpoint = Endpoint::Responses;
    let req: ResponsesRequest<'_> = parse_body(endpoint, body)?;
    let mut chars = req.instructions.0 + req.input.0;
    let mut tools = Vec::new();
    for tool in req.tools.into_iter().flatten() {
        chars += tool.chars();
        // Function and custom tools are named; built-ins (web_search, file_search, mcp, ...)
        // are known by their type.
        let name = match tool.kind.as_deref() {
            None | Some("function" | "custom") => tool.name.or(tool.kind),
            Some(_) => tool.kind,
        };
        tools.extend(name);
    }
    let stream = req.stream.unwrap_or(false);
    Ok(LlmRequest {
        verb: endpoint.verb(),
        // A Responses call may take its model from a stored prompt; the model is optional.
        model: req.model.filter(|m| !m.is_empty()),
        stream,
        max_tokens: req.max_output_tokens,
        tools,
        input_tokens: tokens_from_chars(chars),
        endpoint,
        include_usage: false,
        event_stream: stream,
    })
}

/// The fields of an Embeddings request Warden reads.
#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: Option<String>,
    #[serde(default)]
    input: TextChars,
}

fn embeddings(body: &[u8]) -> Result<LlmRequest, ProtocolError> {
    let endpoint = Endpoint::Embeddings;
    let req: EmbeddingsRequest = parse_body(endpoint, body)?;
    let mut interpreted = LlmRequest::bare(endpoint, Some(require_model(endpoint, req.model)?));
    interpreted.input_tokens = tokens_from_chars(req.input.0);
    Ok(interpreted)
}

/// Zero usage in Chat Completions / Completions shape.
fn chat_usage() -> Value {
    json!({ "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0 })
}

/// A refusal as a Chat Completions answer (`finish_reason: "content_filter"`).
pub(super) fn chat_refusal(interpreted: &LlmRequest, text: &RefusalText) -> Answer {
    let id = format!("chatcmpl-{}", text.id);
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
                "finish_reason": "content_filter",
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
    sse.data(&chunk(json!({}), json!("content_filter")));
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

/// A refusal as a legacy Completions answer (`finish_reason: "content_filter"`).
pub(super) fn completions_refusal(interpreted: &LlmRequest, text: &RefusalText) -> Answer {
    let id = format!("cmpl-{}", text.id);
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
        let mut body = completion(&text.message, json!("content_filter"));
        body["usage"] = chat_usage();
        return Answer::Json(body);
    }
    let mut sse = SseWriter::default();
    sse.data(&completion(&text.message, Value::Null));
    sse.data(&completion("", json!("content_filter")));
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

/// A refusal as a Responses answer: `status: "incomplete"`,
/// `incomplete_details.reason: "content_filter"`.
///
/// A stream ends with a `response.completed` event carrying that incomplete response: every
/// client (including the SDKs' `responses.stream()` helpers, which require
/// `response.completed`) finalises on it, and the status still tells the truth.
pub(super) fn responses_refusal(interpreted: &LlmRequest, text: &RefusalText) -> Answer {
    let resp_id = format!("resp_{}", text.id);
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
    let final_item = item("incomplete", json!([part]));
    if !interpreted.stream {
        return Answer::Json(response("incomplete", json!([final_item]), usage));
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
        json!({ "response": response("incomplete", json!([final_item]), usage) }),
    );
    Answer::EventStream(sse.finish())
}

#[cfg(test)]
mod tests {
    use super::super::interpret_llm as interpret_any;
    use super::super::refusal::refusal_response;
    use super::super::refusal::tests::{EXPECTED_TEXT, REFUSAL, parts, sse_events};
    use super::*;
    use http::StatusCode;

    fn interpret(method: Method, path: &str, body: &str) -> Result<LlmRequest, ProtocolError> {
        interpret_any(Protocol::Openai, &method, path, None, body.as_bytes())
    }

    /// A Chat Completions body shaped like OpenClaw's: long system prompt, many tools, stream
    /// with usage, `max_completion_tokens`.
    pub(crate) fn openclaw_chat_body(system_chars: usize, tool_count: usize) -> String {
        let system = "You are a careful assistant. ".repeat(system_chars / 29 + 1);
        let tools: Vec<Value> = (0..tool_count)
            .map(|i| {
                json!({
                    "type": "function",
                    "function": {
                        "name": format!("tool_{i}"),
                        "description": "Run a shell command in the workspace and return its output.",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "command": { "type": "string", "description": "The command line" },
                                "timeout": { "type": "integer", "minimum": 1 }
                            },
                            "required": ["command"]
                        }
                    }
                })
            })
            .collect();
        json!({
            "model": "gpt-4.1",
            "messages": [
                { "role": "system", "content": system },
                { "role": "user", "content": "List the files in the repo." },
                { "role": "assistant", "content": null, "tool_calls": [
                    { "id": "call_1", "type": "function",
                      "function": { "name": "tool_0", "arguments": "{\"command\":\"ls\"}" } }
                ]},
                { "role": "tool", "tool_call_id": "call_1", "content": "README.md\nsrc\n" }
            ],
            "stream": true,
            "stream_options": { "include_usage": true },
            "tool_choice": "auto",
            "max_completion_tokens": 8192,
            "tools": tools
        })
        .to_string()
    }

    #[test]
    fn reads_openclaw_chat_request() {
        let body = openclaw_chat_body(26_000, 39);
        let got = interpret(Method::POST, "/chat/completions", &body);
        let got = got.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.endpoint, Endpoint::ChatCompletions);
        assert_eq!(got.verb, crate::action::Verb::LlmChat);
        assert_eq!(got.model.as_deref(), Some("gpt-4.1"));
        assert!(got.stream && got.include_usage && got.event_stream);
        assert_eq!(got.max_tokens, Some(8192));
        assert_eq!(got.tools.len(), 39);
        assert_eq!(got.tools[0], "tool_0");
        assert_eq!(got.tools[38], "tool_38");
        // ~26k chars of system prompt plus ~39 × 300 chars of tool schema, divided by 4.
        assert!(
            (8_500..11_000).contains(&got.input_tokens),
            "{}",
            got.input_tokens
        );
    }

    #[test]
    fn accepts_paths_with_and_without_v1() {
        let body = r#"{"model":"m","messages":[]}"#;
        for path in ["/chat/completions", "/v1/chat/completions"] {
            let got = interpret(Method::POST, path, body).map(|i| i.endpoint);
            assert_eq!(got, Ok(Endpoint::ChatCompletions), "{path}");
        }
        let list = interpret(Method::GET, "/v1/models", "").map(|i| (i.endpoint, i.verb));
        assert_eq!(
            list,
            Ok((Endpoint::ListModels, crate::action::Verb::LlmModels))
        );
        let get = interpret(Method::GET, "/models/meta-llama/Llama-3-8B", "");
        assert_eq!(
            get.map(|i| (i.endpoint, i.model)),
            Ok((Endpoint::GetModel, Some("meta-llama/Llama-3-8B".to_owned())))
        );
    }

    #[test]
    fn refuses_unknown_endpoints_and_wrong_methods() {
        let unknown = interpret(Method::POST, "/v1/files", "{}");
        assert!(matches!(
            unknown,
            Err(ProtocolError::UnsupportedEndpoint { .. })
        ));
        let nested = interpret(Method::POST, "/v1/chat/completions/../embeddings", "{}");
        assert!(matches!(
            nested,
            Err(ProtocolError::UnsupportedEndpoint { .. })
        ));
        let v1beta = interpret(Method::POST, "/v1beta/chat/completions", "{}");
        assert!(matches!(
            v1beta,
            Err(ProtocolError::UnsupportedEndpoint { .. })
        ));
        let get_chat = interpret(Method::GET, "/v1/chat/completions", "");
        assert!(matches!(
            get_chat,
            Err(ProtocolError::WrongMethod { allowed, .. }) if allowed == Method::POST
        ));
        let post_models = interpret(Method::POST, "/v1/models", "{}");
        assert!(matches!(
            post_models,
            Err(ProtocolError::WrongMethod { .. })
        ));
    }

    #[test]
    fn reads_legacy_functions_and_custom_tools() {
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],
            "functions":[{"name":"get_weather","parameters":{"type":"object"}}],
            "tools":[{"type":"custom","custom":{"name":"apply_patch","format":{"type":"text"}}}],
            "max_tokens":100}"#;
        let got =
            interpret(Method::POST, "/v1/chat/completions", body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got.tools,
            vec!["apply_patch".to_owned(), "get_weather".to_owned()]
        );
        assert_eq!(got.max_tokens, Some(100));
        assert!(!got.stream && !got.include_usage);
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let body = r#"{"model":"m","messages":[],"max_tokens":10,"max_completion_tokens":20}"#;
        let got = interpret(Method::POST, "/chat/completions", body).map(|i| i.max_tokens);
        assert_eq!(got, Ok(Some(20)));
    }

    #[test]
    fn reads_responses_request_with_function_and_builtin_tools() {
        let body = json!({
            "model": "gpt-5",
            "instructions": "Be brief.",
            "input": [
                { "role": "user", "content": [{ "type": "input_text", "text": "Find the weather" }] },
                { "type": "reasoning", "encrypted_content": "gAAAAABo".repeat(1000), "summary": [] },
                { "type": "function_call_output", "call_id": "c1", "output": "sunny" }
            ],
            "tools": [
                { "type": "function", "name": "exec", "parameters": { "type": "object" } },
                { "type": "web_search" },
                { "type": "mcp", "server_label": "deepwiki", "server_url": "https://x" }
            ],
            "store": false,
            "stream": true,
            "max_output_tokens": 4096
        })
        .to_string();
        let got = interpret(Method::POST, "/v1/responses", &body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.endpoint, Endpoint::Responses);
        assert_eq!(got.tools, vec!["exec", "web_search", "mcp"]);
        assert_eq!(got.max_tokens, Some(4096));
        assert!(got.stream && got.event_stream);
        // The encrypted reasoning (8000 chars) is not counted.
        assert!(got.input_tokens < 50, "{}", got.input_tokens);
    }

    #[test]
    fn reads_embeddings_and_completions() {
        let emb = interpret(
            Method::POST,
            "/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":["abcd","efgh"]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(emb.verb, crate::action::Verb::LlmEmbed);
        assert_eq!(emb.input_tokens, 2);
        let cmp = interpret(Method::POST, "/completions", r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7,"stream":true}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cmp.endpoint, Endpoint::Completions);
        assert_eq!(
            (cmp.max_tokens, cmp.stream, cmp.input_tokens),
            (Some(7), true, 5)
        );
    }

    #[test]
    fn missing_or_empty_model_is_refused() {
        for body in [
            r#"{"messages":[]}"#,
            r#"{"model":"","messages":[]}"#,
            r#"{"model":null}"#,
        ] {
            let got = interpret(Method::POST, "/v1/chat/completions", body);
            assert_eq!(
                got,
                Err(ProtocolError::MissingModel {
                    endpoint: Endpoint::ChatCompletions
                }),
                "{body}"
            );
        }
        let responses = interpret(Method::POST, "/responses", r#"{"prompt":{"id":"pmpt_1"}}"#);
        assert_eq!(responses.map(|i| i.model), Ok(None));
    }

    #[test]
    fn wrong_field_types_are_invalid_body_without_echoing_values() {
        let body = r#"{"model":"m","messages":[],"stream":"please leak this prompt"}"#;
        let err = interpret(Method::POST, "/v1/chat/completions", body).err();
        let text = err.as_ref().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            matches!(err, Some(ProtocolError::InvalidBody { .. })),
            "{text}"
        );
        assert!(!text.contains("leak"), "{text}");
        assert!(text.contains("line 1 column"), "{text}");
    }

    #[test]
    fn duplicate_model_field_is_refused() {
        let body = r#"{"model":"allowed","messages":[],"model":"forbidden"}"#;
        let err = interpret(Method::POST, "/v1/chat/completions", body);
        assert!(
            matches!(err, Err(ProtocolError::InvalidBody { .. })),
            "{err:?}"
        );
    }

    fn chat_request(stream: bool, include_usage: bool) -> LlmRequest {
        let body = json!({
            "model": "gpt-4.1",
            "messages": [{ "role": "user", "content": "hi" }],
            "stream": stream,
            "stream_options": if stream { json!({ "include_usage": include_usage }) } else { Value::Null },
        });
        interpret(Method::POST, "/v1/chat/completions", &body.to_string())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn non_streaming_chat_refusal_is_a_complete_chat_completion() {
        let response = refusal_response(Protocol::Openai, &chat_request(false, false), &REFUSAL);
        let (status, content_type, body) = parts(response).await;
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
        assert_eq!(choice["finish_reason"], "content_filter");
        assert_eq!(completion["usage"]["total_tokens"], 0);
    }

    #[tokio::test]
    async fn streaming_chat_refusal_is_role_content_finish_usage_then_done() {
        let response = refusal_response(Protocol::Openai, &chat_request(true, true), &REFUSAL);
        let (status, content_type, body) = parts(response).await;
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
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(chunks[3]["choices"], json!([]));
        assert_eq!(chunks[3]["usage"]["completion_tokens"], 0);
        assert_eq!(events[4].1, "[DONE]");
    }

    #[tokio::test]
    async fn streaming_chat_refusal_without_include_usage_has_no_usage_chunk() {
        let response = refusal_response(Protocol::Openai, &chat_request(true, false), &REFUSAL);
        let (_, _, body) = parts(response).await;
        let events = sse_events(&body);
        assert_eq!(events.len(), 4);
        assert!(events[..3].iter().all(|(_, d)| d.get("usage").is_none()));
        assert_eq!(events[3].1, "[DONE]");
    }

    #[tokio::test]
    async fn completions_refusal_streams_text_completion_chunks() {
        let req = interpret(
            Method::POST,
            "/v1/completions",
            r#"{"model":"gpt-3.5-turbo-instruct","prompt":"x","stream":true}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (_, content_type, body) =
            parts(refusal_response(Protocol::Openai, &req, &REFUSAL)).await;
        assert_eq!(content_type, "text/event-stream");
        let events = sse_events(&body);
        assert_eq!(events[0].1["object"], "text_completion");
        assert_eq!(events[0].1["choices"][0]["text"], EXPECTED_TEXT);
        assert_eq!(events[1].1["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(events.last().map(|(_, d)| d.clone()), Some(json!("[DONE]")));
        let plain = interpret(
            Method::POST,
            "/v1/completions",
            r#"{"model":"gpt-3.5-turbo-instruct","prompt":"x"}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (_, _, body) = parts(refusal_response(Protocol::Openai, &plain, &REFUSAL)).await;
        let body: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(body["usage"]["prompt_tokens"], 0);
    }

    fn responses_request(stream: bool) -> LlmRequest {
        let body = json!({ "model": "gpt-5", "input": "hi", "stream": stream, "store": false, "max_output_tokens": 300 });
        interpret(Method::POST, "/responses", &body.to_string()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn assert_incomplete_response(response: &Value) {
        assert!(
            response["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("resp_"))
        );
        assert_eq!(response["object"], "response");
        assert_eq!(response["status"], "incomplete");
        assert_eq!(response["incomplete_details"]["reason"], "content_filter");
        assert_eq!(response["model"], "gpt-5");
        assert_eq!(response["max_output_tokens"], 300);
        assert_eq!(response["output"][0]["type"], "message");
        assert_eq!(response["output"][0]["role"], "assistant");
        assert_eq!(response["output"][0]["content"][0]["type"], "output_text");
        assert_eq!(response["output"][0]["content"][0]["text"], EXPECTED_TEXT);
        assert_eq!(response["usage"]["output_tokens"], 0);
        assert!(response["tools"].is_array() && response["parallel_tool_calls"].is_boolean());
    }

    #[tokio::test]
    async fn non_streaming_responses_refusal_is_incomplete_for_content_filter() {
        let response = refusal_response(Protocol::Openai, &responses_request(false), &REFUSAL);
        let (status, _, body) = parts(response).await;
        assert_eq!(status, StatusCode::OK);
        assert_incomplete_response(&serde_json::from_str(&body).unwrap_or_default());
    }

    #[tokio::test]
    async fn streaming_responses_refusal_is_the_full_event_sequence() {
        let response = refusal_response(Protocol::Openai, &responses_request(true), &REFUSAL);
        let (_, content_type, body) = parts(response).await;
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
        assert_incomplete_response(&events[8].1["response"]);
        assert_eq!(events[8].1["response"]["id"], events[0].1["response"]["id"]);
    }
}
