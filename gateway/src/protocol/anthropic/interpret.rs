//! How Anthropic Messages requests read: `/v1/messages`, `/v1/messages/count_tokens` and the
//! model list.

use http::Method;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::protocol::errors::ProtocolError;
use crate::protocol::estimate::{TextChars, ToolDef, tokens_from_chars};
use crate::protocol::parse::{model_from_path, parse_body, require_method, require_model};
use crate::protocol::request::{Endpoint, LlmRequest};

/// The dialect's name in configuration, logs and errors.
pub const NAME: &str = "anthropic";

/// Reads an Anthropic request (`/v1/messages`, `/v1/messages/count_tokens`, `/v1/models`).
pub fn interpret(method: &Method, path: &str, body: &[u8]) -> Result<LlmRequest, ProtocolError> {
    let endpoint = match path {
        "/v1/messages" => Endpoint::Messages,
        "/v1/messages/count_tokens" => Endpoint::CountTokens,
        "/v1/models" => {
            require_method(method, Method::GET, path)?;
            return Ok(LlmRequest::bare(Endpoint::ListModels));
        }
        _ => match path.strip_prefix("/v1/models/") {
            Some(id) => {
                require_method(method, Method::GET, path)?;
                let model = model_from_path(id, path, false)?;
                return Ok(LlmRequest::bare(Endpoint::GetModel).with_model(model));
            }
            None => return Err(ProtocolError::unsupported(NAME, method, path)),
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
    // MCP servers Anthropic connects to itself (the MCP connector, `mcp_servers`): the model
    // calls their tools there, so the request declares tools that no `tools` entry names.
    // Judged as the hosted tool `mcp`, the name OpenAI's `{"type": "mcp"}` tool has.
    if req.mcp_servers.is_some_and(|servers| !servers.is_empty()) {
        tools.push(HOSTED_MCP.to_owned());
    }
    let stream = endpoint == Endpoint::Messages && req.stream.unwrap_or(false);
    let request = LlmRequest {
        stream,
        // The only output limit Messages has: `thinking.budget_tokens` must stay below it.
        max_tokens: req.max_tokens,
        tools,
        input_tokens: tokens_from_chars(chars),
        event_stream: stream,
        ..LlmRequest::bare(endpoint)
    };
    Ok(request.with_model(require_model(endpoint, req.model)?))
}

/// The tool name a request that has Anthropic connect to MCP servers declares.
const HOSTED_MCP: &str = "mcp";

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
    /// The MCP servers Anthropic is to connect to (each an object: `type`, `url`, `name`).
    #[serde(borrow)]
    mcp_servers: Option<Vec<&'a RawValue>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn interpret(method: Method, path: &str, body: &str) -> Result<LlmRequest, ProtocolError> {
        super::interpret(&method, path, body.as_bytes())
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
        // 26k chars of system prompt dominate; the image (8 250 bytes) and the signature count
        // a token per 32 decoded bytes (`estimate.rs`).
        assert!(
            (6_750..7_000).contains(&got.input_tokens),
            "{}",
            got.input_tokens
        );
    }

    /// `mcp_servers` has Anthropic connect to servers whose tools the model then calls: the
    /// request declares the hosted tool `mcp`, whether or not it has `tools` of its own.
    #[test]
    fn mcp_servers_declare_the_hosted_mcp_tool() {
        let servers = json!([{ "type": "url", "url": "https://mcp.example/sse", "name": "x" }]);
        for (tools, expected) in [
            (json!(null), vec!["mcp"]),
            (
                json!([{ "name": "read", "input_schema": {} }]),
                vec!["read", "mcp"],
            ),
            (
                json!([{ "type": "mcp_toolset", "mcp_server_name": "x" }]),
                vec!["mcp_toolset", "mcp"],
            ),
        ] {
            let mut body = json!({
                "model": "claude-sonnet-4-5", "max_tokens": 10, "mcp_servers": servers,
                "messages": [{ "role": "user", "content": "hi" }]
            });
            if !tools.is_null() {
                body["tools"] = tools;
            }
            let got = interpret(Method::POST, "/v1/messages", &body.to_string())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.tools, expected, "{body}");
        }
        // No servers, no hosted tool; servers that are not a list are refused.
        let none = r#"{"model":"m","mcp_servers":[],"messages":[]}"#;
        let got = interpret(Method::POST, "/v1/messages", none).map(|i| i.tools);
        assert_eq!(got, Ok(Vec::<String>::new()));
        let odd = r#"{"model":"m","mcp_servers":{"url":"https://mcp.example"},"messages":[]}"#;
        assert!(interpret(Method::POST, "/v1/messages", odd).is_err());
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

    #[test]
    fn models_that_could_hide_from_policy_are_refused_or_folded() {
        for path in ["/v1/messages", "/v1/messages/count_tokens"] {
            for bad in [
                "denied-model\u{0}",
                "denied\u{2066}-model",
                "denied-\u{200b}model",
            ] {
                let body = json!({ "model": bad, "max_tokens": 5, "messages": [] }).to_string();
                let got = interpret(Method::POST, path, &body);
                assert!(
                    matches!(got, Err(ProtocolError::InvalidIdentifier { .. })),
                    "{path} {bad:?}: {got:?}"
                );
            }
            let body = json!({ "model": "claude-\u{043e}pus-4-1", "messages": [] }).to_string();
            let got = interpret(Method::POST, path, &body).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.folded_model.as_deref(), Some("claude-opus-4-1"));
        }
        let path_model = interpret(Method::GET, "/v1/models/claude%E2%80%AE", "");
        assert!(matches!(
            path_model,
            Err(ProtocolError::InvalidIdentifier { .. })
        ));
    }
}
