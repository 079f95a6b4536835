//! The seam between the request path and the protocols: a [`Dialect`] is one wire protocol's
//! knowledge (how its requests read, how it answers refusals and errors, where its responses
//! report usage). `Protocol::dialect` names the one for a route.
//!
//! The request path only ever speaks to a `&dyn Dialect`; adding a protocol is adding a
//! dialect (a folder beside `openai/`), not an arm in the path's stages.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;

use super::errors::ProtocolError;
use super::identifier::LOOKALIKE_FINDING;
use super::proposed::ProposalRewriter;
use super::refusal::Refusal;
use super::request::LlmRequest;
use super::rest::operations::Operations;
use super::usage::Usage;
use crate::action::{Facts, Finding, Findings, LlmFacts, Resource, Verb};

/// One request as a dialect reads it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Request path with the route prefix stripped (`/v1/chat/completions`).
    pub path: &'a str,
    /// Raw query string, if any.
    pub query: Option<&'a str>,
    /// Request headers (the agent's credential already read, not yet removed).
    pub headers: &'a HeaderMap,
    /// The whole request body.
    pub body: &'a [u8],
    /// The route's upstream as Cedar names it: the provider of an LLM route (`openai`), the
    /// server of an MCP route, the API of a REST route.
    pub upstream: &'a Arc<str>,
    /// A REST route's operations (its connector's), `None` on other routes.
    pub operations: Option<&'a Operations>,
    /// The route lets a request name content cached at the provider (Gemini's
    /// `cachedContent`, `allow_cached_content`); refused otherwise.
    pub allow_cached_content: bool,
}

/// What a request means: the parts of its Cedar action, and how to answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct Interpreted {
    /// The Cedar action.
    pub verb: Verb,
    /// What it acts on.
    pub resource: Resource,
    /// What the request says that policy may judge.
    pub facts: Facts,
    /// What interpretation itself found (`lookalike_identifier` at `model`), for the context.
    pub findings: Findings,
    /// What the dialect needs to answer this request in its own shape.
    pub shape: Shape,
}

/// The dialect's own reading of a request, kept for its answers (refusals, errors, usage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// An LLM call. Its `tools` were moved into the facts.
    Llm(LlmRequest),
    /// An MCP message.
    Mcp(super::mcp::shape::McpShape),
    /// A REST call, to go upstream to `path` (below the base URL), the path as judged, with
    /// `query` instead of the query sent when fields in it were folded (`fold_case:`), and
    /// the operation's fields `folded` (whose values in the body go upstream folded).
    Rest {
        path: String,
        query: Option<String>,
        folded: Vec<super::rest::operations::Field>,
    },
}

impl Shape {
    /// The path (below the upstream's base URL) the request must go to when the dialect read
    /// it into a canonical form; `None` to send it as received.
    pub fn upstream_path(&self) -> Option<&str> {
        match self {
            Shape::Rest { path, .. } => Some(path),
            Shape::Llm(_) | Shape::Mcp(_) => None,
        }
    }

    /// The query the request must go upstream with when the dialect rewrote it as judged;
    /// `None` to send it as received.
    pub fn upstream_query(&self) -> Option<&str> {
        match self {
            Shape::Rest { query, .. } => query.as_deref(),
            Shape::Llm(_) | Shape::Mcp(_) => None,
        }
    }
}

impl Interpreted {
    /// The meaning of an LLM call to `upstream` (the route's provider): a `Model` resource
    /// named by the folded model name when there is one, else the provider.
    pub fn llm(mut request: LlmRequest, upstream: &Arc<str>) -> Interpreted {
        let resource = match request.folded_model.as_ref().or(request.model.as_ref()) {
            Some(name) => Resource::Model {
                provider: Arc::clone(upstream),
                name: name.clone(),
            },
            None => Resource::Provider {
                name: Arc::clone(upstream),
            },
        };
        let mut findings = Findings::none();
        if request.folded_model.is_some() {
            findings.0.push(Finding {
                detector: Arc::from(LOOKALIKE_FINDING),
                location: "model".to_owned(),
            });
        }
        Interpreted {
            verb: request.verb.clone(),
            resource,
            facts: Facts::Llm(LlmFacts {
                stream: request.stream,
                max_tokens: request.max_tokens,
                tools: std::mem::take(&mut request.tools),
                input_tokens: request.input_tokens,
                cached_content: request.cached_content,
            }),
            findings,
            shape: Shape::Llm(request),
        }
    }
}

/// One wire protocol: OpenAI, Anthropic, Gemini, REST connectors (and, later, MCP JSON-RPC,
/// CONNECT).
pub trait Dialect: Send + Sync + 'static {
    /// The protocol's name in configuration and logs.
    fn name(&self) -> &'static str;

    /// What `request` means. Unknown endpoints and malformed bodies are errors: refused, never
    /// forwarded.
    fn interpret(&self, request: &Inbound<'_>) -> Result<Interpreted, ProtocolError>;

    /// A policy refusal in this protocol's shape, for a request this dialect read as `shape`,
    /// marked `x-warden-decision: deny`: a
    /// well-formed answer whose text explains the refusal, or a 403 in the protocol's error
    /// shape where the request has no text to carry; `None` when the dialect has no answer of
    /// its own (the caller sends a 403 error).
    fn refusal(&self, shape: &Shape, refusal: &Refusal<'_>) -> Option<Response<Full<Bytes>>>;

    /// An HTTP error in this protocol's error shape; `code` is Warden's stable error code.
    fn error(&self, status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>>;

    /// An error that ends an event stream already answered `200`, as the provider streams one:
    /// `error` (a body in this protocol's error shape) as one `data:` event.
    fn stream_error(&self, error: &serde_json::Value) -> Bytes {
        let mut sse = super::sse::SseWriter::default();
        sse.data(error);
        Bytes::from(sse.finish())
    }

    /// [`Dialect::error`]'s body, whole (a `Full` body is there at once).
    fn error_body(&self, status: StatusCode, code: &str, message: &str) -> Bytes {
        use futures_util::FutureExt as _;
        use http_body_util::BodyExt as _;
        self.error(status, code, message)
            .into_body()
            .collect()
            .now_or_never()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default()
    }

    /// [`Dialect::error`] as the event that ends a stream already answered `200`
    /// ([`Dialect::stream_error`]).
    fn error_event(&self, status: StatusCode, code: &str, message: &str) -> Bytes {
        let body = self.error_body(status, code, message);
        let error = serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::json!({"error": {"message": message, "code": code}}));
        self.stream_error(&error)
    }

    /// Whether a response's server-sent event named `event` can carry usage (others are not
    /// buffered).
    fn usage_event_wanted(&self, event: &[u8]) -> bool;

    /// The usage one server-sent event reports (figures it does not report stay `None`).
    fn usage_from_event(&self, event: &[u8], data: &[u8]) -> Usage;

    /// The usage a complete (non-streamed, or JSON-array streamed) body reports.
    fn usage_from_body(&self, body: &[u8]) -> Usage;

    /// `body` rewritten to ask the provider for the usage its answer to a request read as
    /// `shape` would not report (an OpenAI stream without `stream_options.include_usage`);
    /// `None` when the answer reports it anyway. What the answer then carries that the agent
    /// did not ask for is taken out of it (`openai::UsageChunks`).
    fn ask_usage(&self, _shape: &Shape, _body: &[u8]) -> Option<Bytes> {
        None
    }

    /// The body to send upstream for a request read as `shape` (with `headers`), when it is
    /// not `body` as it stands: the values the dialect judged in another form than sent
    /// (REST fields `fold_case:` names). An error when the body no longer reads as judged.
    fn sent_body(
        &self,
        _shape: &Shape,
        _headers: &HeaderMap,
        _body: &[u8],
    ) -> Result<Option<Bytes>, ProtocolError> {
        Ok(None)
    }

    /// A rewriter that has the tool calls a model proposes in the response to a request read
    /// as `shape` judged before the agent gets them; `None` when this dialect's response to it
    /// carries no tool calls Warden reads. The response is judged as the client reads it: as
    /// an event stream when the request asked for one ([`LlmRequest::streams_events`]), else
    /// whole, whatever content type the upstream gives (an event stream answering a request
    /// for a whole body is no JSON, and is not delivered).
    fn proposals(&self, _shape: &Shape) -> Option<Box<dyn ProposalRewriter>> {
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    /// What `dialect` makes of a request to `path` with `body` (route upstream `test`).
    pub(crate) fn read(
        dialect: &dyn Dialect,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: &str,
    ) -> Result<Interpreted, ProtocolError> {
        let headers = HeaderMap::new();
        let upstream: Arc<str> = Arc::from("test");
        dialect.interpret(&Inbound {
            method: &method,
            path,
            query,
            headers: &headers,
            body: body.as_bytes(),
            upstream: &upstream,
            operations: None,
            allow_cached_content: false,
        })
    }

    fn request(model: Option<&str>, folded: Option<&str>) -> LlmRequest {
        LlmRequest {
            model: model.map(str::to_owned),
            folded_model: folded.map(str::to_owned),
            tools: vec!["exec".to_owned()],
            max_tokens: Some(10),
            ..LlmRequest::bare(crate::protocol::request::Endpoint::ChatCompletions)
        }
    }

    #[test]
    fn an_llm_call_acts_on_its_model_and_moves_its_tools_into_the_facts() {
        let upstream: Arc<str> = Arc::from("openai");
        let meaning = Interpreted::llm(request(Some("gpt-4o"), None), &upstream);
        assert_eq!(meaning.resource.cedar_ref(), r#"Model::"openai/gpt-4o""#);
        assert_eq!(meaning.verb, Verb::LlmChat);
        let facts = meaning.facts.llm().cloned().unwrap_or_default();
        assert_eq!(
            (facts.tools, facts.max_tokens),
            (vec!["exec".into()], Some(10))
        );
        assert!(meaning.findings.is_empty());
        let Shape::Llm(shape) = &meaning.shape else {
            panic!("an LLM call has an LLM shape: {:?}", meaning.shape)
        };
        assert!(shape.tools.is_empty());
        let listing = Interpreted::llm(request(None, None), &upstream);
        assert_eq!(listing.resource.cedar_ref(), r#"Provider::"openai""#);
    }

    struct AllowAll;

    impl crate::protocol::proposed::JudgeCalls for AllowAll {
        fn judge(
            &mut self,
            _call: &crate::protocol::proposed::ProposedCall<'_>,
        ) -> crate::protocol::proposed::Verdict {
            crate::protocol::proposed::Verdict::Allow
        }
    }

    /// A request as its path, query and body.
    type Asked<'a> = (&'a str, Option<&'a str>, &'a str);

    /// What the agent gets of `answer` to the request `dialect` read from `path`, `query` and
    /// `body`, every call allowed.
    fn judged(dialect: &dyn Dialect, (path, query, body): Asked<'_>, answer: &str) -> String {
        let meaning = read(dialect, Method::POST, path, query, body)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let Some(mut rewriter) = dialect.proposals(&meaning.shape) else {
            panic!("{path}: no judging");
        };
        let mut out = rewriter.push(answer.as_bytes(), &mut AllowAll).to_vec();
        out.extend_from_slice(&rewriter.finish(&mut AllowAll));
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn an_answer_is_judged_as_the_request_asked_whatever_its_content_type() {
        use crate::protocol::proposed::UNREADABLE;
        let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let chat_streamed =
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let responses = r#"{"model":"m","input":"hi"}"#;
        let responses_streamed = r#"{"model":"m","stream":true,"input":"hi"}"#;
        let messages =
            r#"{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#;
        let messages_streamed = r#"{"model":"m","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let gemini = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
        let generate = "/v1beta/models/g:generateContent";
        let stream_generate = "/v1beta/models/g:streamGenerateContent";
        // (dialect, whole request, streamed request, a whole answer with a call, one event
        // with a call)
        let call = r#"{"command":"rm -rf /"}"#;
        let chat_call = serde_json::json!({"choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"exec","arguments":call}}]},"finish_reason":"tool_calls"}]});
        let chat_delta = serde_json::json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"exec","arguments":call}}]},"finish_reason":"tool_calls"}]});
        let item = serde_json::json!({"type":"function_call","id":"fc","call_id":"c","name":"exec","arguments":call});
        let response =
            serde_json::json!({"id":"r","object":"response","status":"completed","output":[item]});
        let item_done =
            serde_json::json!({"type":"response.output_item.done","output_index":0,"item":item});
        let block = serde_json::json!({"type":"tool_use","id":"t","name":"exec","input":{"command":"rm -rf /"}});
        let message = serde_json::json!({"id":"m","type":"message","role":"assistant","content":[block],"stop_reason":"tool_use"});
        let block_start =
            serde_json::json!({"type":"content_block_start","index":0,"content_block":block});
        let candidate = serde_json::json!({"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"exec","args":{"command":"rm -rf /"}}}]}}]});
        let cases: Vec<(&dyn Dialect, Asked<'_>, Asked<'_>, String, String)> = vec![
            (
                &super::super::openai::OpenAi,
                ("/v1/chat/completions", None, chat),
                ("/v1/chat/completions", None, chat_streamed),
                chat_call.to_string(),
                chat_delta.to_string(),
            ),
            (
                &super::super::openai::OpenAi,
                ("/v1/responses", None, responses),
                ("/v1/responses", None, responses_streamed),
                response.to_string(),
                item_done.to_string(),
            ),
            (
                &super::super::anthropic::Anthropic,
                ("/v1/messages", None, messages),
                ("/v1/messages", None, messages_streamed),
                message.to_string(),
                block_start.to_string(),
            ),
            (
                &super::super::gemini::Gemini,
                (generate, None, gemini),
                (stream_generate, Some("alt=sse"), gemini),
                candidate.to_string(),
                candidate.to_string(),
            ),
            (
                &super::super::gemini::Gemini,
                (stream_generate, None, gemini),
                (stream_generate, Some("alt=sse"), gemini),
                format!("[{candidate}]"),
                candidate.to_string(),
            ),
        ];
        for (dialect, whole, streamed, body, event) in cases {
            let name = dialect.name();
            let events = format!("data: {event}\n\n");
            // An event stream to a request for a whole answer: the client reads it as JSON,
            // which it is not; replaced by the dialect's error, a JSON body.
            let out = judged(dialect, whole, &events);
            assert!(
                out.contains(UNREADABLE) && !out.contains("rm -rf"),
                "{name}: {out}"
            );
            assert!(serde_json::from_str::<Value>(&out).is_ok(), "{name}: {out}");
            let text = judged(dialect, whole, "data: {\"text\":\"hi\"}\n\n");
            assert!(text.contains(UNREADABLE), "{name}: {text}");
            // A whole body to a request for a stream: the client reads it as events; the
            // calls it may hold cannot be read there, and the stream ends with the error.
            let out = judged(dialect, streamed, &body);
            assert!(
                out.contains(UNREADABLE) && !out.contains("rm -rf"),
                "{name}: {out}"
            );
            let text = r#"{"text":"hi"}"#;
            assert_eq!(judged(dialect, streamed, text), text, "{name}");
            // As asked: judged and delivered.
            assert_eq!(judged(dialect, whole, &body), body, "{name}");
            assert_eq!(judged(dialect, streamed, &events), events, "{name}");
        }
    }

    #[test]
    fn a_folded_model_is_judged_and_reported_as_a_lookalike() {
        let upstream: Arc<str> = Arc::from("openai");
        let meaning = Interpreted::llm(
            request(Some("d\u{0435}nied-model"), Some("denied-model")),
            &upstream,
        );
        assert_eq!(
            meaning.resource.cedar_ref(),
            r#"Model::"openai/denied-model""#
        );
        assert_eq!(
            meaning.findings.0,
            vec![Finding {
                detector: Arc::from("lookalike_identifier"),
                location: "model".into(),
            }]
        );
    }
}
