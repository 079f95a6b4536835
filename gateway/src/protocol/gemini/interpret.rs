//! How Gemini (Generative Language API) requests read: `/v1beta/models[/{model}[:{method}]]`
//! (or `/v1/...`), the model taken from the path.

use std::fmt;
use std::marker::PhantomData;

use http::Method;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::protocol::errors::ProtocolError;
use crate::protocol::estimate::{TextChars, ToolDef, tokens_from_chars};
use crate::protocol::parse::{check_path_model, parse_body_as, percent_decode, require_method};
use crate::protocol::request::{Endpoint, LlmRequest, most_choices, output_limit};
use crate::protocol::strict_json::Spellings;
use crate::text::Quoted;

/// The dialect's name in configuration, logs and errors.
pub const NAME: &str = "gemini";

/// Reads a Gemini request: `/v1beta/models[/{model}[:{method}]]` (or `/v1/...`). A
/// generateContent request naming a `cachedContent` is refused unless `allow_cached_content`.
pub fn interpret(
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    allow_cached_content: bool,
) -> Result<LlmRequest, ProtocolError> {
    let rest = path
        .strip_prefix("/v1beta")
        .or_else(|| path.strip_prefix("/v1"))
        .unwrap_or("");
    if rest == "/models" {
        require_method(method, Method::GET, path)?;
        return Ok(LlmRequest::bare(Endpoint::ListModels));
    }
    let Some(tail) = rest.strip_prefix("/models/") else {
        return Err(ProtocolError::unsupported(NAME, method, path));
    };
    // Decode once, then split: `gemini%3AgenerateContent` means what the upstream decodes it to.
    let tail = percent_decode(tail).ok_or_else(|| ProtocolError::InvalidModelInPath {
        path: Quoted::of(path),
        detail: "it has a bad percent-escape",
    })?;
    let Some((model, rpc)) = tail.rsplit_once(':') else {
        require_method(method, Method::GET, path)?;
        let folded = check_path_model(&tail, path, false)?;
        return Ok(LlmRequest::bare(Endpoint::GetModel).with_model((tail.into_owned(), folded)));
    };
    let endpoint = match rpc {
        "generateContent" => Endpoint::GenerateContent,
        "streamGenerateContent" => Endpoint::StreamGenerateContent,
        "countTokens" => Endpoint::CountTokens,
        "embedContent" => Endpoint::EmbedContent,
        "batchEmbedContents" => Endpoint::BatchEmbedContents,
        _ => return Err(ProtocolError::unsupported(NAME, method, path)),
    };
    require_method(method, Method::POST, path)?;
    let folded = check_path_model(model, path, false)?;
    let model = model.to_owned();
    let interpreted = match endpoint {
        Endpoint::GenerateContent | Endpoint::StreamGenerateContent => {
            let req: GenerateRequest<'_> = parse_body_as(endpoint, body, Spellings::Proto)?;
            check_same_model(&model, req.model.as_deref(), None)?;
            generate(endpoint, req)
        }
        Endpoint::CountTokens => {
            let req: CountTokensRequest<'_> = parse_body_as(endpoint, body, Spellings::Proto)?;
            let inner_model = req.generate_content_request.as_ref();
            check_same_model(&model, inner_model.and_then(|r| r.model.as_deref()), None)?;
            let mut interpreted = req
                .generate_content_request
                .map(|inner| generate(endpoint, inner))
                .unwrap_or_else(|| LlmRequest::bare(endpoint));
            interpreted.input_tokens += tokens_from_chars(req.contents.0);
            interpreted.max_tokens = None;
            interpreted
        }
        Endpoint::EmbedContent => {
            let req: EmbedRequest = parse_body_as(endpoint, body, Spellings::Proto)?;
            check_same_model(&model, req.model.as_deref(), None)?;
            let mut interpreted = LlmRequest::bare(endpoint);
            interpreted.input_tokens = tokens_from_chars(req.content.0 + req.title.0);
            interpreted
        }
        _ => {
            let req: BatchEmbedRequest = parse_body_as(endpoint, body, Spellings::Proto)?;
            let mut chars = 0;
            for (index, request) in req.requests.iter().enumerate() {
                check_same_model(&model, request.model.as_deref(), Some(index))?;
                chars += request.content.0 + request.title.0;
            }
            let mut interpreted = LlmRequest::bare(endpoint);
            interpreted.input_tokens = tokens_from_chars(chars);
            interpreted
        }
    };
    if interpreted.cached_content && !allow_cached_content {
        return Err(ProtocolError::CachedContent { endpoint });
    }
    let mut interpreted = interpreted.with_model((model, folded));
    if endpoint == Endpoint::StreamGenerateContent {
        interpreted.stream = true;
        interpreted.event_stream = query.is_some_and(|q| q.split('&').any(|p| p == "alt=sse"));
    }
    Ok(interpreted)
}

/// A model named in a body (`models/{model}` or `{model}`: generateContent,
/// streamGenerateContent, countTokens' `generateContentRequest`, embedContent, each request of
/// a batch at `index`) must be the model of the path, or policy would judge one model while the
/// upstream runs another.
fn check_same_model(
    path_model: &str,
    body_model: Option<&str>,
    index: Option<usize>,
) -> Result<(), ProtocolError> {
    match body_model {
        Some(m) if m.strip_prefix("models/").unwrap_or(m) != path_model => {
            Err(ProtocolError::ModelMismatch {
                index,
                expected: Quoted::of(path_model),
                found: Quoted::of(m),
            })
        }
        _ => Ok(()),
    }
}

fn generate(endpoint: Endpoint, req: GenerateRequest<'_>) -> LlmRequest {
    let mut chars = req.contents.0 + req.system_instruction.0;
    let mut tools = Vec::new();
    for tool in req.tools.into_iter().flatten() {
        for declaration in tool.declarations {
            chars += declaration.chars();
            tools.extend(declaration.name);
        }
        tools.extend(tool.builtins);
    }
    let config = req.generation_config;
    LlmRequest {
        max_tokens: config
            .as_ref()
            .and_then(|g| output_limit(g.max_output_tokens, [g.candidate_count])),
        choices: most_choices([config.and_then(|g| g.candidate_count)]),
        tools,
        input_tokens: tokens_from_chars(chars),
        cached_content: req.cached_content.is_some(),
        ..LlmRequest::bare(endpoint)
    }
}

/// The fields of a generateContent request Warden reads (camelCase or snake_case, as the API
/// accepts both).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest<'a> {
    /// `models/{model}`: must be the model of the path.
    model: Option<String>,
    #[serde(default)]
    contents: TextChars,
    #[serde(default, alias = "system_instruction")]
    system_instruction: TextChars,
    #[serde(borrow)]
    tools: Option<Vec<GeminiTool<'a>>>,
    #[serde(alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
    /// `cachedContents/{id}`: content cached at the provider, which Warden never saw.
    #[serde(alias = "cached_content")]
    cached_content: Option<IgnoredAny>,
}

/// `generationConfig`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig {
    #[serde(alias = "max_output_tokens")]
    max_output_tokens: Option<u64>,
    #[serde(alias = "candidate_count")]
    candidate_count: Option<u64>,
}

/// The fields of a countTokens request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CountTokensRequest<'a> {
    #[serde(default)]
    contents: TextChars,
    #[serde(borrow, alias = "generate_content_request")]
    generate_content_request: Option<GenerateRequest<'a>>,
}

/// The fields of an embedContent request (also one request of a batch).
#[derive(Deserialize)]
struct EmbedRequest {
    model: Option<String>,
    #[serde(default)]
    content: TextChars,
    #[serde(default)]
    title: TextChars,
}

/// The fields of a batchEmbedContents request.
#[derive(Deserialize)]
struct BatchEmbedRequest {
    #[serde(default)]
    requests: Vec<EmbedRequest>,
}

/// One entry of `tools`: function declarations, and built-in tools named by their key
/// (`googleSearch`, `codeExecution`, `urlContext`, ...).
#[derive(Default)]
struct GeminiTool<'a> {
    declarations: Vec<ToolDef<'a>>,
    builtins: Vec<String>,
}

impl<'de: 'a, 'a> Deserialize<'de> for GeminiTool<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ToolVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ToolVisitor<'a> {
            type Value = GeminiTool<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tool object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GeminiTool<'a>, A::Error> {
                let mut tool = GeminiTool::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "functionDeclarations" || key == "function_declarations" {
                        let declarations: Option<Vec<ToolDef<'a>>> = map.next_value()?;
                        tool.declarations.extend(declarations.into_iter().flatten());
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        tool.builtins.push(camel_case(&key));
                    }
                }
                Ok(tool)
            }
        }
        deserializer.deserialize_map(ToolVisitor(PhantomData))
    }
}

/// `google_search` → `googleSearch` (the API accepts both spellings; policies see one).
fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn interpret(
        method: Method,
        path: &str,
        query: Option<&str>,
        body: &str,
    ) -> Result<LlmRequest, ProtocolError> {
        super::interpret(&method, path, query, body.as_bytes(), false)
    }

    fn generate_body() -> String {
        json!({
            "systemInstruction": { "parts": [{ "text": "You are terse." }] },
            "contents": [
                { "role": "user", "parts": [
                    { "text": "Describe this picture" },
                    { "inlineData": { "mimeType": "image/jpeg", "data": "/9j/4AAQSkZJRg".repeat(500) } }
                ]},
                { "role": "model", "parts": [
                    { "functionCall": { "name": "lookup", "args": { "q": "cats" } }, "thoughtSignature": "CiQB".repeat(200) }
                ]},
                { "role": "user", "parts": [
                    { "functionResponse": { "name": "lookup", "response": { "result": "a cat" } } }
                ]}
            ],
            "tools": [
                { "functionDeclarations": [
                    { "name": "lookup", "description": "Search", "parameters": { "type": "OBJECT", "properties": { "q": { "type": "STRING" } } } },
                    { "name": "exec", "parametersJsonSchema": { "type": "object" } }
                ]},
                { "google_search": {} },
                { "codeExecution": {} }
            ],
            "generationConfig": { "maxOutputTokens": 1024, "temperature": 0.2 }
        })
        .to_string()
    }

    #[test]
    fn reads_generate_content_with_model_from_path() {
        let got = interpret(
            Method::POST,
            "/v1beta/models/gemini-2.5-flash:generateContent",
            None,
            &generate_body(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.endpoint, Endpoint::GenerateContent);
        assert_eq!(got.model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(got.max_tokens, Some(1024));
        assert!(!got.stream);
        assert_eq!(
            got.tools,
            vec!["lookup", "exec", "googleSearch", "codeExecution"]
        );
        // Image bytes and thought signatures are not text: a token per 32 decoded bytes.
        assert!(got.input_tokens < 250, "{}", got.input_tokens);
    }

    #[test]
    fn stream_generate_content_streams_and_alt_sse_selects_event_stream() {
        let path = "/v1/models/gemini-2.0-flash:streamGenerateContent";
        let sse =
            interpret(Method::POST, path, Some("alt=sse"), "{}").unwrap_or_else(|e| panic!("{e}"));
        assert!(sse.stream && sse.event_stream);
        assert_eq!(sse.endpoint, Endpoint::StreamGenerateContent);
        let array = interpret(Method::POST, path, None, "{}").unwrap_or_else(|e| panic!("{e}"));
        assert!(array.stream && !array.event_stream);
    }

    #[test]
    fn snake_case_fields_are_read_too() {
        let body = r#"{"contents":[],"generation_config":{"max_output_tokens":7},"tools":[{"function_declarations":[{"name":"f"}]}]}"#;
        let got = interpret(
            Method::POST,
            "/v1beta/models/gemini-pro:generateContent",
            None,
            body,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got.max_tokens, got.tools), (Some(7), vec!["f".to_owned()]));
    }

    #[test]
    fn percent_encoded_model_is_decoded_once() {
        let got = interpret(
            Method::POST,
            "/v1beta/models/gemini%2D2.5%2Dpro%3AgenerateContent",
            None,
            "{}",
        )
        .map(|i| (i.endpoint, i.model));
        assert_eq!(
            got,
            Ok((Endpoint::GenerateContent, Some("gemini-2.5-pro".to_owned())))
        );
        let double = interpret(
            Method::POST,
            "/v1beta/models/gemini%252Dpro:generateContent",
            None,
            "{}",
        )
        .map(|i| i.model);
        assert_eq!(double, Ok(Some("gemini%2Dpro".to_owned())));
        let slash = interpret(
            Method::POST,
            "/v1beta/models/a%2F..%2Fb:generateContent",
            None,
            "{}",
        );
        assert!(matches!(
            slash,
            Err(ProtocolError::InvalidModelInPath { .. })
        ));
    }

    #[test]
    fn embeddings_count_tokens_and_model_listing() {
        let embed = interpret(
            Method::POST,
            "/v1beta/models/gemini-embedding-001:embedContent",
            None,
            r#"{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"abcdefgh"}]}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (embed.verb, embed.input_tokens),
            (crate::action::Verb::LlmEmbed, 2)
        );
        let batch = interpret(
            Method::POST,
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            None,
            r#"{"requests":[{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"abcd"}]}},{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"efgh"}]}}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (batch.endpoint, batch.input_tokens),
            (Endpoint::BatchEmbedContents, 2)
        );
        let count = interpret(
            Method::POST,
            "/v1beta/models/gemini-2.0-flash:countTokens",
            None,
            r#"{"generateContentRequest":{"model":"models/gemini-2.0-flash","contents":[{"parts":[{"text":"abcd"}]}]}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (count.endpoint, count.input_tokens, count.verb),
            (Endpoint::CountTokens, 1, crate::action::Verb::LlmChat)
        );
        let list = interpret(Method::GET, "/v1beta/models", None, "").map(|i| i.endpoint);
        assert_eq!(list, Ok(Endpoint::ListModels));
        let one =
            interpret(Method::GET, "/v1beta/models/gemini-2.0-flash", None, "").map(|i| i.model);
        assert_eq!(one, Ok(Some("gemini-2.0-flash".to_owned())));
    }

    #[test]
    fn batch_naming_another_model_is_refused() {
        let got = interpret(
            Method::POST,
            "/v1beta/models/cheap-embedder:batchEmbedContents",
            None,
            r#"{"requests":[{"model":"models/cheap-embedder"},{"model":"models/expensive-embedder"}]}"#,
        );
        assert!(
            matches!(
                got,
                Err(ProtocolError::ModelMismatch { index: Some(1), .. })
            ),
            "{got:?}"
        );
    }

    #[test]
    fn a_body_naming_another_model_than_the_path_is_refused() {
        let cases = [
            (
                "generateContent",
                r#"{"model":"models/OTHER","contents":[]}"#,
            ),
            (
                "streamGenerateContent",
                r#"{"model":"OTHER","contents":[]}"#,
            ),
            (
                "countTokens",
                r#"{"generateContentRequest":{"model":"models/OTHER","contents":[]}}"#,
            ),
            ("embedContent", r#"{"model":"models/OTHER"}"#),
        ];
        for (rpc, body) in cases {
            let body = body.replace("OTHER", "gemini-2.5-pro");
            let path = format!("/v1beta/models/gemini-2.5-flash-lite:{rpc}");
            let got = interpret(Method::POST, &path, None, &body);
            let Err(error) = got else {
                panic!("{rpc}: {body} was accepted")
            };
            assert_eq!(
                (error.code(), error.status()),
                ("model_mismatch", http::StatusCode::BAD_REQUEST),
                "{rpc}"
            );
            let text = error.to_string();
            assert!(
                text.contains("the body names model")
                    && text.contains("gemini-2.5-pro")
                    && text.contains("gemini-2.5-flash-lite"),
                "{rpc}: {text}"
            );
            // The same model, spelled either way, is the path's.
            for same in ["models/gemini-2.5-flash-lite", "gemini-2.5-flash-lite"] {
                let body = body
                    .replace("models/gemini-2.5-pro", same)
                    .replace("gemini-2.5-pro", same);
                let got = interpret(Method::POST, &path, None, &body);
                assert_eq!(
                    got.map(|i| i.model),
                    Ok(Some("gemini-2.5-flash-lite".to_owned())),
                    "{rpc}: {body}"
                );
            }
        }
    }

    #[test]
    fn refuses_unknown_rpcs_paths_and_methods() {
        for path in [
            "/v1beta/models/gemini-pro:predict",
            "/v1beta/files",
            "/v1beta/cachedContents",
            "/v1alpha/models/gemini-pro:generateContent",
            "/models/gemini-pro:generateContent",
        ] {
            let got = interpret(Method::POST, path, None, "{}");
            assert!(
                matches!(got, Err(ProtocolError::UnsupportedEndpoint { .. })),
                "{path}: {got:?}"
            );
        }
        let get = interpret(
            Method::GET,
            "/v1beta/models/gemini-pro:generateContent",
            None,
            "",
        );
        assert!(matches!(get, Err(ProtocolError::WrongMethod { .. })));
        let post_list = interpret(Method::POST, "/v1beta/models", None, "{}");
        assert!(matches!(post_list, Err(ProtocolError::WrongMethod { .. })));
    }

    #[test]
    fn path_models_that_could_hide_from_policy_are_refused_or_folded() {
        for model in [
            "denied-model%00",
            "denied%E2%80%8Fmodel",
            "denied%E2%81%A0model",
        ] {
            let got = interpret(
                Method::POST,
                &format!("/v1beta/models/{model}:generateContent"),
                None,
                "{}",
            );
            assert!(
                matches!(got, Err(ProtocolError::InvalidIdentifier { .. })),
                "{model}: {got:?}"
            );
        }
        let lookalike = interpret(
            Method::POST,
            "/v1beta/models/g%D0%B5mini-pro:generateContent",
            None,
            "{}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lookalike.model.as_deref(), Some("g\u{0435}mini-pro"));
        assert_eq!(lookalike.folded_model.as_deref(), Some("gemini-pro"));
    }

    #[test]
    fn the_output_limit_counts_every_candidate_asked_for() {
        for (body, want) in [
            (
                r#"{"generationConfig":{"maxOutputTokens":100,"candidateCount":8}}"#,
                (Some(800), 8),
            ),
            (
                r#"{"generation_config":{"max_output_tokens":100,"candidate_count":2}}"#,
                (Some(200), 2),
            ),
            (
                r#"{"generationConfig":{"maxOutputTokens":100}}"#,
                (Some(100), 1),
            ),
            // No output limit: the candidates are kept, for a default limit to be multiplied by.
            (r#"{"generationConfig":{"candidateCount":8}}"#, (None, 8)),
            (r#"{}"#, (None, 1)),
        ] {
            let got = interpret(
                Method::POST,
                "/v1beta/models/gemini-2.5-flash:generateContent",
                None,
                body,
            )
            .map(|i| (i.max_tokens, i.choices));
            assert_eq!(got, Ok(want), "{body}");
        }
    }

    #[test]
    fn a_field_spelled_both_ways_in_one_object_is_refused_as_ambiguous() {
        // Google reads a field's proto name and its lowerCamelCase JSON name alike: given
        // both, which one the API keeps is not Warden's to guess.
        for body in [
            r#"{"generationConfig":{"maxOutputTokens":10,"max_output_tokens":100000}}"#,
            r#"{"generationConfig":{"maxOutputTokens":10},"generation_config":{"maxOutputTokens":100000}}"#,
            r#"{"systemInstruction":{"parts":[]},"system_instruction":{"parts":[{"text":"x"}]}}"#,
            r#"{"tools":[{"functionDeclarations":[],"function_declarations":[{"name":"exec"}]}]}"#,
            r#"{"toolConfig":{},"tool_config":{"functionCallingConfig":{"mode":"ANY"}}}"#,
            r#"{"safetySettings":[],"safety_settings":[]}"#,
            r#"{"cachedContent":"a","cached_content":"b"}"#,
            r#"{"contents":[{"parts":[{"inlineData":{"mimeType":"text/plain","mime_type":"image/png","data":""}}]}]}"#,
            r#"{"contents":[{"parts":[{"inlineData":{},"inline_data":{}}]}]}"#,
            r#"{"generationConfig":{"Max_Output_Tokens":1,"maxOutputTokens":2}}"#,
        ] {
            let got = interpret(
                Method::POST,
                "/v1beta/models/gemini-pro:generateContent",
                None,
                body,
            );
            let Err(ProtocolError::AmbiguousKeys { detail }) = &got else {
                panic!("{body}: {got:?}");
            };
            assert!(detail.contains("two spellings of one field"), "{detail}");
        }
        let counted = interpret(
            Method::POST,
            "/v1beta/models/gemini-pro:countTokens",
            None,
            r#"{"generateContentRequest":{},"generate_content_request":{}}"#,
        );
        assert!(
            matches!(counted, Err(ProtocolError::AmbiguousKeys { .. })),
            "{counted:?}"
        );
        // A case twin is one still.
        let case = interpret(
            Method::POST,
            "/v1beta/models/gemini-pro:generateContent",
            None,
            r#"{"generationConfig":{"maxOutputTokens":10,"MaxOutputTokens":100000}}"#,
        );
        let Err(ProtocolError::AmbiguousKeys { detail }) = &case else {
            panic!("{case:?}");
        };
        assert!(detail.contains("differ only by case"), "{detail}");
        // A function's arguments, result and schemas are maps of the caller's own keys.
        let free = r#"{"contents":[{"parts":[{"functionCall":{"name":"f","args":{"user_id":1,"userId":2}}},
            {"function_response":{"name":"f","response":{"a_b":1,"aB":2}}}]}],
            "tools":[{"function_declarations":[{"name":"f","parameters_json_schema":{"properties":{"a_b":{},"aB":{}}}}]}]}"#;
        let got = interpret(
            Method::POST,
            "/v1beta/models/gemini-pro:generateContent",
            None,
            free,
        );
        assert!(got.is_ok(), "{got:?}");
    }

    #[test]
    fn every_field_read_is_read_in_either_spelling() {
        let camel = json!({
            "systemInstruction": { "parts": [{ "text": "x".repeat(400) }] },
            "contents": [{ "parts": [{ "inlineData": { "mimeType": "text/plain", "data": "QUFB".repeat(100) } }] }],
            "tools": [{ "functionDeclarations": [{ "name": "exec", "parametersJsonSchema": { "type": "object" } }] },
                      { "googleSearch": {} }],
            "generationConfig": { "maxOutputTokens": 99 }
        })
        .to_string();
        let snake = camel
            .replace("systemInstruction", "system_instruction")
            .replace("inlineData", "inline_data")
            .replace("mimeType", "mime_type")
            .replace("functionDeclarations", "function_declarations")
            .replace("parametersJsonSchema", "parameters_json_schema")
            .replace("googleSearch", "google_search")
            .replace("generationConfig", "generation_config")
            .replace("maxOutputTokens", "max_output_tokens");
        let read = |body: &str, rpc: &str| {
            let got = interpret(
                Method::POST,
                &format!("/v1beta/models/gemini-pro:{rpc}"),
                None,
                body,
            )
            .unwrap_or_else(|e| panic!("{body}: {e}"));
            (got.max_tokens, got.tools, got.input_tokens)
        };
        let seen = read(&camel, "generateContent");
        assert_eq!(seen.0, Some(99));
        assert_eq!(seen.1, ["exec", "googleSearch"]);
        // The system text and the text document count as text: 400 and 300 characters.
        assert!(seen.2 >= 175, "{}", seen.2);
        assert_eq!(read(&snake, "generateContent"), seen);
        let wrapped = |inner: &str| format!(r#"{{"generate_content_request":{inner}}}"#);
        assert_eq!(
            read(&wrapped(&snake), "countTokens").1,
            read(
                &wrapped(&camel).replace("generate_content_request", "generateContentRequest"),
                "countTokens"
            )
            .1,
        );
    }

    #[test]
    fn content_cached_at_the_provider_is_refused_unless_the_route_allows_it() {
        let generate = "/v1beta/models/gemini-2.5-flash:generateContent";
        let stream = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
        let count = "/v1beta/models/gemini-2.5-flash:countTokens";
        let named = r#"{"cachedContent":"cachedContents/abc123","contents":[]}"#;
        let snake = r#"{"cached_content":"cachedContents/abc123","contents":[]}"#;
        let counted = r#"{"generateContentRequest":{"cachedContent":"cachedContents/abc123"}}"#;
        for (path, body) in [
            (generate, named),
            (generate, snake),
            (stream, named),
            (count, counted),
        ] {
            let got = interpret(Method::POST, path, None, body);
            let Err(refused) = &got else {
                panic!("{path} {body}: {got:?}");
            };
            assert_eq!(refused.code(), "cached_content_refused");
            assert_eq!(refused.status(), http::StatusCode::BAD_REQUEST);
            let message = refused.to_string();
            assert!(message.contains("cachedContent"), "{message}");
            assert!(message.contains("allow_cached_content"), "{message}");
            // Allowed, it is read, and said so to policy.
            let allowed = super::interpret(&Method::POST, path, None, body.as_bytes(), true)
                .unwrap_or_else(|e| panic!("{path} {body}: {e}"));
            assert!(allowed.cached_content, "{path} {body}");
        }
        // None named (or null): nothing to refuse, nothing to say.
        for body in ["{}", r#"{"cachedContent":null}"#] {
            let got = interpret(Method::POST, generate, None, body)
                .unwrap_or_else(|e| panic!("{body}: {e}"));
            assert!(!got.cached_content, "{body}");
        }
    }

    #[test]
    fn a_mismatched_batch_model_is_quoted_at_most_in_a_short_prefix() {
        let body =
            json!({ "requests": [{ "model": format!("models/{}", "z".repeat(3 * 1024 * 1024)) }] });
        let got = interpret(
            Method::POST,
            "/v1beta/models/cheap-embedder:batchEmbedContents",
            None,
            &body.to_string(),
        );
        let text = got.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.len() < 300, "{} bytes", text.len());
        assert!(text.contains("zzz…"), "{text}");
    }
}
