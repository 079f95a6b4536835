//! How OpenAI requests read (and OpenAI-compatible ones: Ollama `/v1`, vLLM): Chat
//! Completions, legacy Completions, Responses, Embeddings and the model list.

use http::Method;
use serde::Deserialize;

use crate::protocol::errors::ProtocolError;
use crate::protocol::estimate::{TextChars, ToolDef, tokens_from_chars};
use crate::protocol::parse::{
    checked_model, model_from_path, parse_body, require_method, require_model,
};
use crate::protocol::request::{Endpoint, LlmRequest, most_choices, output_limit};

/// The dialect's name in configuration, logs and errors.
pub const NAME: &str = "openai";

/// Reads an OpenAI request. Paths are accepted with or without a leading `/v1`.
pub fn interpret(method: &Method, path: &str, body: &[u8]) -> Result<LlmRequest, ProtocolError> {
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
            return Ok(LlmRequest::bare(Endpoint::ListModels));
        }
        _ => match rest.strip_prefix("/models/") {
            Some(id) => {
                require_method(method, Method::GET, path)?;
                let model = model_from_path(id, path, true)?;
                return Ok(LlmRequest::bare(Endpoint::GetModel).with_model(model));
            }
            None => return Err(ProtocolError::unsupported(NAME, method, path)),
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
    /// Choices asked for: each may produce up to the output limit.
    n: Option<u64>,
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
    let request = LlmRequest {
        stream,
        // Both limits are honoured by the API; policy sees the larger, so that neither hides
        // behind the other, times the choices asked for.
        max_tokens: output_limit(req.max_completion_tokens.max(req.max_tokens), [req.n]),
        choices: most_choices([req.n]),
        tools,
        input_tokens: tokens_from_chars(chars),
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        event_stream: stream,
        ..LlmRequest::bare(endpoint)
    };
    Ok(request.with_model(require_model(endpoint, req.model)?))
}

/// The fields of a legacy Completions request Warden reads.
#[derive(Deserialize)]
struct CompletionsRequest {
    model: Option<String>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    /// Completions returned, and (`best_of`) generated: each may produce up to `max_tokens`.
    n: Option<u64>,
    best_of: Option<u64>,
    #[serde(default)]
    prompt: TextChars,
    #[serde(default)]
    suffix: TextChars,
}

fn completions(body: &[u8]) -> Result<LlmRequest, ProtocolError> {
    let endpoint = Endpoint::Completions;
    let req: CompletionsRequest = parse_body(endpoint, body)?;
    let stream = req.stream.unwrap_or(false);
    let request = LlmRequest {
        stream,
        max_tokens: output_limit(req.max_tokens, [req.n, req.best_of]),
        choices: most_choices([req.n, req.best_of]),
        input_tokens: tokens_from_chars(req.prompt.0 + req.suffix.0),
        include_usage: req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        event_stream: stream,
        ..LlmRequest::bare(endpoint)
    };
    Ok(request.with_model(require_model(endpoint, req.model)?))
}

/// The fields of a Responses request Warden reads.
#[derive(Deserialize)]
struct ResponsesRequest<'a> {
    model: Option<String>,
    stream: Option<bool>,
    max_output_tokens: Option<u64>,
    background: Option<bool>,
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
    if req.background == Some(true) {
        // Generated after this request ends, fetched by `GET /responses/{id}`: beyond budgets,
        // inspection and the judging of the tool calls it proposes.
        return Err(ProtocolError::UnsupportedOption {
            endpoint,
            option: "\"background\": true",
            why: "a background response is generated after the request ends, beyond \
                  budgets, inspection and the judging of its tool calls",
            instead: "send it without background (streaming keeps a long answer's \
                      connection busy instead)",
        });
    }
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
    let request = LlmRequest {
        stream,
        max_tokens: req.max_output_tokens,
        tools,
        input_tokens: tokens_from_chars(chars),
        event_stream: stream,
        ..LlmRequest::bare(endpoint)
    };
    // A Responses call may take its model from a stored prompt; the model is optional.
    match req.model.filter(|m| !m.is_empty()) {
        Some(model) => Ok(request.with_model(checked_model(model)?)),
        None => Ok(request),
    }
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
    let request = LlmRequest {
        input_tokens: tokens_from_chars(req.input.0),
        ..LlmRequest::bare(endpoint)
    };
    Ok(request.with_model(require_model(endpoint, req.model)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn interpret(method: Method, path: &str, body: &str) -> Result<LlmRequest, ProtocolError> {
        super::interpret(&method, path, body.as_bytes())
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
    fn policy_sees_the_larger_of_max_tokens_and_max_completion_tokens() {
        for (body, want) in [
            (
                r#"{"model":"m","messages":[],"max_tokens":10,"max_completion_tokens":20}"#,
                20,
            ),
            (
                r#"{"model":"m","messages":[],"max_tokens":9000,"max_completion_tokens":20}"#,
                9000,
            ),
            (r#"{"model":"m","messages":[],"max_tokens":7}"#, 7),
            (
                r#"{"model":"m","messages":[],"max_completion_tokens":8}"#,
                8,
            ),
        ] {
            let got = interpret(Method::POST, "/chat/completions", body).map(|i| i.max_tokens);
            assert_eq!(got, Ok(Some(want)), "{body}");
        }
        let neither = interpret(Method::POST, "/chat/completions", r#"{"model":"m"}"#);
        assert_eq!(neither.map(|i| i.max_tokens), Ok(None));
    }

    #[test]
    fn policy_sees_the_output_limit_times_the_choices_asked_for() {
        for (path, body, want) in [
            (
                "/chat/completions",
                r#"{"model":"m","messages":[],"n":128,"max_tokens":32768}"#,
                (Some(128 * 32768), 128),
            ),
            (
                "/chat/completions",
                r#"{"model":"m","messages":[],"n":3,"max_tokens":5,"max_completion_tokens":10}"#,
                (Some(30), 3),
            ),
            (
                "/chat/completions",
                r#"{"model":"m","n":0,"max_tokens":7}"#,
                (Some(7), 1),
            ),
            // No output limit: the choices are kept, for a default limit to be multiplied by.
            ("/chat/completions", r#"{"model":"m","n":4}"#, (None, 4)),
            ("/chat/completions", r#"{"model":"m"}"#, (None, 1)),
            (
                "/chat/completions",
                r#"{"model":"m","n":18446744073709551615,"max_tokens":2}"#,
                (Some(u64::MAX), u64::MAX),
            ),
            (
                "/completions",
                r#"{"model":"m","prompt":"x","n":2,"best_of":5,"max_tokens":10}"#,
                (Some(50), 5),
            ),
            (
                "/completions",
                r#"{"model":"m","prompt":"x","best_of":3,"max_tokens":10}"#,
                (Some(30), 3),
            ),
            (
                "/completions",
                r#"{"model":"m","prompt":"x","n":6}"#,
                (None, 6),
            ),
        ] {
            let got = interpret(Method::POST, path, body).map(|i| (i.max_tokens, i.choices));
            assert_eq!(got, Ok(want), "{body}");
        }
    }

    #[test]
    fn a_background_response_is_refused_as_one_warden_could_not_bound() {
        let body = r#"{"model":"o3-pro","input":"hi","background":true}"#;
        let err = interpret(Method::POST, "/v1/responses", body).unwrap_err();
        assert_eq!(
            (err.status(), err.code()),
            (http::StatusCode::BAD_REQUEST, "unsupported_option")
        );
        assert!(err.to_string().contains("background"), "{err}");
        for body in [
            r#"{"model":"o3-pro","input":"hi","background":false}"#,
            r#"{"model":"o3-pro","input":"hi"}"#,
        ] {
            assert!(
                interpret(Method::POST, "/v1/responses", body).is_ok(),
                "{body}"
            );
        }
    }

    #[test]
    fn body_models_that_could_hide_from_policy_are_refused_or_folded() {
        for path in [
            "/chat/completions",
            "/completions",
            "/embeddings",
            "/responses",
        ] {
            let body = json!({ "model": "denied-model\u{0}", "messages": [] }).to_string();
            let got = interpret(Method::POST, path, &body);
            assert!(
                matches!(got, Err(ProtocolError::InvalidIdentifier { .. })),
                "{path}: {got:?}"
            );
            let body = json!({ "model": "denied\u{202e}-model" }).to_string();
            let got = interpret(Method::POST, path, &body);
            assert!(
                matches!(got, Err(ProtocolError::InvalidIdentifier { .. })),
                "{path}: {got:?}"
            );
            let body = json!({ "model": "d\u{0435}nied-model" }).to_string();
            let got = interpret(Method::POST, path, &body).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.model.as_deref(), Some("d\u{0435}nied-model"), "as sent");
            assert_eq!(
                got.folded_model.as_deref(),
                Some("denied-model"),
                "as judged"
            );
        }
        let get = interpret(Method::GET, "/v1/models/denied%00model", "");
        assert!(matches!(get, Err(ProtocolError::InvalidIdentifier { .. })));
    }

    #[test]
    fn errors_quote_at_most_a_short_prefix_of_multi_megabyte_paths_and_methods() {
        let long = format!("/v1/{}", "x".repeat(4 * 1024 * 1024));
        let unknown = interpret(Method::POST, &long, "{}").err();
        let text = unknown.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.len() < 400, "{} bytes", text.len());
        assert!(text.contains("/v1/xxx") && text.contains('…'), "{text}");
        let method = Method::from_bytes("Q".repeat(1024 * 1024).as_bytes()).unwrap();
        let models = format!("/v1/models/{}", "y".repeat(3 * 1024 * 1024));
        let wrong = super::interpret(&method, &models, b"").err();
        let text = wrong.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.len() < 400, "{} bytes: {}", text.len(), &text[..200]);
        let wrong = interpret(Method::POST, &models, "").err();
        let text = wrong.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.len() < 400, "{} bytes", text.len());
        let model = json!({ "model": "m".repeat(2 * 1024 * 1024), "messages": [] }).to_string();
        let long_model = interpret(Method::POST, "/v1/chat/completions", &model).err();
        let text = long_model.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            text,
            "the \"model\" field is not a valid name: it is 2097152 bytes long; at most 256 are accepted"
        );
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
        // The encrypted reasoning (8000 chars, 6000 bytes) is not text: 188 tokens, not 2000.
        assert!(got.input_tokens < 250, "{}", got.input_tokens);
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
            matches!(err, Err(ProtocolError::AmbiguousKeys { .. })),
            "{err:?}"
        );
    }
}
