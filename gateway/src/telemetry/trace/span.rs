//! What a request's spans say: the OpenTelemetry GenAI semantic conventions (`gen_ai.*`) for
//! LLM calls, the MCP conventions for tool calls, HTTP server and client attributes, and
//! Warden's decision (`warden.*`). The one place the conventions are written down; never a
//! prompt, tool argument, token or credential.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::action::{Facts, Resource, Verb};
use crate::protocol::{Protocol, Usage};
use crate::text::bounded;

/// Longest value of a name taken from a request (model, tool, path) on a span.
const NAME_MAX: usize = 256;

/// What interpret learned that the spans report (only kept for sampled requests).
#[derive(Debug, Default)]
pub struct Asked {
    /// `gen_ai.operation.name`, for an LLM call or MCP tool call.
    operation: Option<&'static str>,
    /// `mcp.method.name`, for an MCP request.
    mcp_method: Option<&'static str>,
    /// The model (`gen_ai.request.model`) or tool (`gen_ai.tool.name`) asked for.
    target: Option<Arc<str>>,
    stream: Option<bool>,
    max_tokens: Option<u64>,
    action: Option<Cow<'static, str>>,
}

impl Asked {
    /// What `verb` on `resource` with `facts` asks for, in `protocol`'s words.
    pub fn new(verb: &Verb, resource: &Resource, facts: &Facts, protocol: Protocol) -> Asked {
        let mut asked = Asked {
            action: Some(verb.label()),
            ..Asked::default()
        };
        match (verb, resource) {
            (Verb::LlmChat | Verb::LlmEmbed, Resource::Model { name, .. }) => {
                asked.operation = Some(match (verb, protocol) {
                    (Verb::LlmEmbed, _) => "embeddings",
                    (_, Protocol::Gemini) => "generate_content",
                    _ => "chat",
                });
                asked.target = Some(Arc::from(&*bounded(name, NAME_MAX)));
                if let Some(llm) = facts.llm() {
                    asked.stream = Some(llm.stream);
                    asked.max_tokens = llm.max_tokens;
                }
            }
            (Verb::McpCallTool, Resource::Tool { name, .. }) => {
                asked.operation = Some("execute_tool");
                asked.mcp_method = Some("tools/call");
                asked.target = Some(Arc::from(&*bounded(name, NAME_MAX)));
            }
            (Verb::McpListTools, _) => asked.mcp_method = Some("tools/list"),
            (Verb::McpReadResource, _) => asked.mcp_method = Some("resources/read"),
            (Verb::McpGetPrompt, _) => asked.mcp_method = Some("prompts/get"),
            (Verb::McpComplete, _) => asked.mcp_method = Some("completion/complete"),
            (Verb::McpSample, _) => asked.mcp_method = Some("sampling/createMessage"),
            (Verb::McpElicit, _) => asked.mcp_method = Some("elicitation/create"),
            (Verb::McpListRoots, _) => asked.mcp_method = Some("roots/list"),
            _ => {}
        }
        asked
    }
}

/// What the request's trace recorded on its way.
pub struct Request<'a> {
    pub method: &'a http::Method,
    /// The path, without the query.
    pub path: &'a str,
    pub start: SystemTime,
    /// When the upstream call began, if it did.
    pub upstream_start: Option<SystemTime>,
    pub asked: &'a Asked,
    /// The policies that decided.
    pub policies: &'a [Arc<str>],
}

/// What the exchange knows when the response starts or the request is refused.
pub struct Answered<'a> {
    pub request_id: &'a str,
    /// The route's name, prefix, provider and protocol, once routed.
    pub route: Option<(&'a str, &'a str, &'a str, Protocol)>,
    /// The upstream's host, when the request went upstream.
    pub upstream_host: Option<&'a str>,
    pub peer: IpAddr,
    pub principal: Option<&'a str>,
    pub decision: Option<&'static str>,
    pub decision_id: &'a str,
    pub status: http::StatusCode,
    /// The refusal's code, and whether it is Warden's failure rather than the agent's.
    pub refusal: Option<(&'static str, bool)>,
}

/// The identities of one request's spans.
#[derive(Debug, Clone)]
pub struct Ids {
    pub trace_id: TraceId,
    /// The agent's span, when its `traceparent` named one.
    pub parent: Option<SpanId>,
    /// Warden's SERVER span.
    pub server: SpanId,
    /// Warden's CLIENT span of the upstream call.
    pub client: SpanId,
    pub state: TraceState,
}

/// A request's spans, built when its response starts and ended when its body ends.
pub struct Open {
    server: SpanData,
    client: Option<SpanData>,
    /// Where the usage attributes go: the span named for the GenAI operation.
    llm: bool,
}

/// The spans of `request`, answered with `answered`.
pub fn open(ids: &Ids, request: &Request<'_>, answered: &Answered<'_>) -> Open {
    let (line, asked) = (request, request.asked);
    let name = span_name(line, asked, answered);
    let mut attrs = Vec::with_capacity(24);
    let mut common = Vec::with_capacity(8);
    if let Some(op) = asked.operation {
        common.push(KeyValue::new("gen_ai.operation.name", op));
    }
    if let Some((_, _, provider, _)) = answered.route
        && asked.operation.is_some()
        && asked.mcp_method.is_none()
    {
        common.push(KeyValue::new(
            "gen_ai.provider.name",
            provider_name(provider).to_owned(),
        ));
    }
    if let Some(target) = &asked.target {
        let key = if asked.mcp_method.is_some() {
            "gen_ai.tool.name"
        } else {
            "gen_ai.request.model"
        };
        common.push(KeyValue::new(key, string(target)));
    }
    if let Some(stream) = asked.stream {
        common.push(KeyValue::new("gen_ai.request.stream", stream));
    }
    if let Some(max) = asked.max_tokens {
        common.push(KeyValue::new("gen_ai.request.max_tokens", int(max)));
    }
    if let Some(method) = asked.mcp_method {
        common.push(KeyValue::new("mcp.method.name", method));
    }
    attrs.extend(common.iter().cloned());
    attrs.push(KeyValue::new(
        "http.request.method",
        line.method.as_str().to_owned(),
    ));
    attrs.push(KeyValue::new(
        "url.path",
        bounded(line.path, NAME_MAX).into_owned(),
    ));
    attrs.push(KeyValue::new(
        "http.response.status_code",
        i64::from(answered.status.as_u16()),
    ));
    attrs.push(KeyValue::new("client.address", answered.peer.to_string()));
    attrs.push(KeyValue::new(
        "warden.request_id",
        answered.request_id.to_owned(),
    ));
    if let Some((route, prefix, _, _)) = answered.route {
        attrs.push(KeyValue::new("http.route", prefix.to_owned()));
        attrs.push(KeyValue::new("warden.route", route.to_owned()));
    }
    if let Some(principal) = answered.principal {
        attrs.push(KeyValue::new("warden.principal.id", principal.to_owned()));
    }
    if let Some(action) = &asked.action {
        attrs.push(KeyValue::new("warden.action", action.to_string()));
    }
    if let Some(decision) = answered.decision {
        attrs.push(KeyValue::new("warden.decision", decision));
        attrs.push(KeyValue::new(
            "warden.decision_id",
            answered.decision_id.to_owned(),
        ));
        attrs.push(KeyValue::new(
            "warden.policy_ids",
            Value::Array(
                request
                    .policies
                    .iter()
                    .map(|p| StringValue::from(p.to_string()))
                    .collect::<Vec<_>>()
                    .into(),
            ),
        ));
    }
    let mut status = Status::Unset;
    if let Some((code, ours)) = answered.refusal {
        attrs.push(KeyValue::new("warden.refusal.code", code));
        if ours {
            attrs.push(KeyValue::new("error.type", code));
            status = Status::error(code);
        }
    } else if answered.status.is_server_error() {
        attrs.push(KeyValue::new(
            "error.type",
            answered.status.as_str().to_owned(),
        ));
        status = Status::error(answered.status.as_str().to_owned());
    }
    let server = span(
        ids,
        ids.server,
        ids.parent.unwrap_or(SpanId::INVALID),
        ids.parent.is_some(),
        SpanKind::Server,
        name.clone(),
        request.start,
        attrs,
        status.clone(),
    );
    let client = request.upstream_start.map(|at| {
        let mut attrs = common;
        let name = if asked.mcp_method.is_some() {
            name
        } else {
            attrs.push(KeyValue::new(
                "http.request.method",
                line.method.as_str().to_owned(),
            ));
            attrs.push(KeyValue::new(
                "http.response.status_code",
                i64::from(answered.status.as_u16()),
            ));
            if let Some(host) = answered.upstream_host {
                attrs.push(KeyValue::new("server.address", host.to_owned()));
            }
            if asked.operation.is_some() {
                name
            } else {
                Cow::Owned(line.method.as_str().to_owned())
            }
        };
        let failed = answered.status.is_server_error() || answered.refusal.is_some();
        span(
            ids,
            ids.client,
            ids.server,
            false,
            SpanKind::Client,
            name,
            at,
            attrs,
            if failed { status } else { Status::Unset },
        )
    });
    Open {
        server,
        client,
        llm: asked.operation.is_some() && asked.mcp_method.is_none(),
    }
}

impl Open {
    /// The finished spans: `usage` as the response reported it, `error` why it failed.
    pub fn end(mut self, usage: Usage, error: Option<&str>) -> impl Iterator<Item = SpanData> {
        let now = SystemTime::now();
        for span in std::iter::once(&mut self.server).chain(self.client.as_mut()) {
            span.end_time = now.max(span.start_time);
            if self.llm {
                if let Some(n) = usage.input_tokens {
                    span.attributes
                        .push(KeyValue::new("gen_ai.usage.input_tokens", int(n)));
                }
                if let Some(n) = usage.output_tokens {
                    span.attributes
                        .push(KeyValue::new("gen_ai.usage.output_tokens", int(n)));
                }
                if let Some(model) = &usage.model {
                    span.attributes
                        .push(KeyValue::new("gen_ai.response.model", model.to_string()));
                }
                if !usage.finish_reasons.is_empty() {
                    let reasons: Vec<StringValue> = usage
                        .finish_reasons
                        .iter()
                        .map(|r| StringValue::from(r.to_string()))
                        .collect();
                    span.attributes.push(KeyValue::new(
                        "gen_ai.response.finish_reasons",
                        Value::Array(Array::String(reasons)),
                    ));
                }
            }
            if let (Some(e), Status::Unset) = (error, &span.status) {
                span.attributes
                    .push(KeyValue::new("error.type", "response_interrupted"));
                span.status = Status::error(bounded(e, NAME_MAX).into_owned());
            }
        }
        std::iter::once(self.server).chain(self.client)
    }
}

/// `{gen_ai.operation.name} {gen_ai.request.model}` (GenAI), `tools/call {tool}` (MCP),
/// else `{method} {http.route}` (HTTP).
fn span_name(line: &Request<'_>, asked: &Asked, answered: &Answered<'_>) -> Cow<'static, str> {
    match (asked.mcp_method, asked.operation, &asked.target) {
        (Some(method), _, Some(target)) => Cow::Owned(format!("{method} {target}")),
        (Some(method), _, None) => Cow::Borrowed(method),
        (None, Some(op), Some(model)) => Cow::Owned(format!("{op} {model}")),
        (None, Some(op), None) => Cow::Borrowed(op),
        (None, None, _) => match answered.route {
            Some((_, prefix, _, _)) => Cow::Owned(format!("{} {prefix}", line.method)),
            None => Cow::Owned(line.method.as_str().to_owned()),
        },
    }
}

/// `gen_ai.provider.name`: the conventions' well-known value for a provider Warden names
/// differently, else Warden's provider name.
fn provider_name(provider: &str) -> &str {
    match provider {
        "gemini" => "gcp.gemini",
        "mistral" => "mistral_ai",
        "xai" => "x_ai",
        other => other,
    }
}

fn string(s: &Arc<str>) -> StringValue {
    StringValue::from(Arc::clone(s))
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[allow(clippy::too_many_arguments)]
fn span(
    ids: &Ids,
    span_id: SpanId,
    parent: SpanId,
    parent_remote: bool,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    status: Status,
) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            ids.trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            ids.state.clone(),
        ),
        parent_span_id: parent,
        parent_span_is_remote: parent_remote,
        span_kind: kind,
        name,
        start_time: start,
        end_time: start,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope(),
    }
}

/// The instrumentation scope of Warden's spans.
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("warden")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{LlmFacts, ToolFacts};

    fn ids() -> Ids {
        Ids {
            trace_id: TraceId::from(7),
            parent: Some(SpanId::from(1)),
            server: SpanId::from(2),
            client: SpanId::from(3),
            state: TraceState::default(),
        }
    }

    fn answered(status: u16, refusal: Option<(&'static str, bool)>) -> Answered<'static> {
        Answered {
            request_id: "r1",
            route: Some(("gemini", "/gemini", "gemini", Protocol::Gemini)),
            upstream_host: Some("generativelanguage.googleapis.com"),
            peer: IpAddr::from([127, 0, 0, 1]),
            principal: Some("ci-bot"),
            decision: Some("allow"),
            decision_id: "d1",
            status: http::StatusCode::from_u16(status).unwrap(),
            refusal,
        }
    }

    fn spans(asked: &Asked, answered: &Answered<'_>, forwarded: bool) -> Vec<SpanData> {
        let now = SystemTime::now();
        let request = Request {
            method: &http::Method::POST,
            path: "/gemini/v1beta/models/gemini-2.5-pro:generateContent",
            start: now,
            upstream_start: forwarded.then_some(now),
            asked,
            policies: &[Arc::from("permit-gemini")],
        };
        open(&ids(), &request, answered)
            .end(
                Usage {
                    input_tokens: Some(11),
                    output_tokens: Some(5),
                    ..Usage::default()
                },
                None,
            )
            .collect()
    }

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn gemini_chat() -> Asked {
        let facts = Facts::Llm(LlmFacts {
            stream: true,
            max_tokens: Some(100),
            ..LlmFacts::default()
        });
        let model = Resource::Model {
            provider: Arc::from("gemini"),
            name: "gemini-2.5-pro".into(),
        };
        Asked::new(&Verb::LlmChat, &model, &facts, Protocol::Gemini)
    }

    #[test]
    fn a_gemini_call_is_generate_content_by_gcp_gemini_with_usage_on_both_spans() {
        let spans = spans(&gemini_chat(), &answered(200, None), true);
        let [server, client] = &spans[..] else {
            panic!("two spans: {spans:?}")
        };
        assert_eq!(server.name, "generate_content gemini-2.5-pro");
        assert_eq!(server.span_kind, SpanKind::Server);
        assert_eq!(server.parent_span_id, SpanId::from(1));
        assert!(server.parent_span_is_remote);
        assert_eq!(client.span_kind, SpanKind::Client);
        assert_eq!(client.parent_span_id, SpanId::from(2));
        for span in [server, client] {
            assert_eq!(
                attr(span, "gen_ai.provider.name"),
                Some(&Value::from("gcp.gemini"))
            );
            assert_eq!(
                attr(span, "gen_ai.request.stream"),
                Some(&Value::Bool(true))
            );
            assert_eq!(
                attr(span, "gen_ai.usage.output_tokens"),
                Some(&Value::I64(5))
            );
            assert_eq!(span.status, Status::Unset);
        }
        assert_eq!(
            attr(server, "warden.policy_ids"),
            Some(&Value::Array(
                vec![StringValue::from("permit-gemini")].into()
            ))
        );
        assert_eq!(
            attr(client, "server.address"),
            Some(&Value::from("generativelanguage.googleapis.com"))
        );
    }

    #[test]
    fn warden_failing_is_an_error_and_a_policy_refusal_is_not() {
        let failed = spans(
            &gemini_chat(),
            &answered(503, Some(("vault_unavailable", true))),
            false,
        );
        assert_eq!(failed.len(), 1, "nothing went upstream");
        assert_eq!(failed[0].status, Status::error("vault_unavailable"));
        assert_eq!(
            attr(&failed[0], "error.type"),
            Some(&Value::from("vault_unavailable"))
        );
        let denied = spans(
            &gemini_chat(),
            &answered(200, Some(("policy_denied", false))),
            false,
        );
        assert_eq!(denied[0].status, Status::Unset);
        assert_eq!(
            attr(&denied[0], "warden.refusal.code"),
            Some(&Value::from("policy_denied"))
        );
        assert_eq!(attr(&denied[0], "error.type"), None);
    }

    #[test]
    fn a_tool_call_names_the_tool_and_never_its_arguments() {
        let facts = Facts::Tool(ToolFacts {
            arguments: Arc::new(serde_json::json!({"message": "do-not-export"})),
        });
        let tool = Resource::Tool {
            server: Arc::from("github"),
            name: "create_issue".into(),
        };
        let asked = Asked::new(&Verb::McpCallTool, &tool, &facts, Protocol::Mcp);
        let spans = spans(&asked, &answered(200, None), true);
        assert_eq!(spans[0].name, "tools/call create_issue");
        assert_eq!(
            attr(&spans[0], "gen_ai.operation.name"),
            Some(&Value::from("execute_tool"))
        );
        assert_eq!(attr(&spans[0], "gen_ai.provider.name"), None);
        assert_eq!(attr(&spans[0], "gen_ai.usage.input_tokens"), None);
        for span in &spans {
            assert!(!format!("{span:?}").contains("do-not-export"));
        }
    }

    #[test]
    fn an_interrupted_response_ends_its_spans_in_error() {
        let now = SystemTime::now();
        let asked = gemini_chat();
        let request = Request {
            method: &http::Method::POST,
            path: "/gemini/x",
            start: now,
            upstream_start: Some(now),
            asked: &asked,
            policies: &[],
        };
        for span in open(&ids(), &request, &answered(200, None))
            .end(Usage::default(), Some("upstream reset the stream"))
        {
            assert_eq!(span.status, Status::error("upstream reset the stream"));
            assert!(span.end_time >= span.start_time);
        }
    }
}
