//! Traces over OpenTelemetry: Warden exports a SERVER span per request and a CLIENT span per
//! upstream call over OTLP/HTTP to a receiver in this crate, continuing the agent's
//! `traceparent` and propagating its own upstream, with the GenAI semantic conventions and
//! Warden's decision on the span; never a prompt or a credential.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
use warden_e2e::otlp::{OtlpReceiver, ReceivedSpan};
use warden_e2e::stack::{AGENT, Stack, openai_chat};
use warden_e2e::warden::{ClosedPort, OPENAI_KEY, WardenBuilder};

const AGENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const AGENT_SPAN: &str = "00f067aa0ba902b7";
const EXPORT_KEY: &str = "otlp-secret-key-0123456789";
const WAIT: Duration = Duration::from_secs(10);

/// A secret the prompt carries, which no span may show.
const PROMPT: &str = "What is the weather in Paris? (ref 7f3c-prompt-marker)";

/// Warden exporting to `endpoint` every 100 ms, with an export header from an env secret.
fn traced(endpoint: &str) -> impl FnOnce(WardenBuilder) -> WardenBuilder {
    let endpoint = endpoint.to_owned();
    move |b| {
        b.set(
            "/traces",
            json!({
                "endpoint": endpoint,
                "service_name": "warden-e2e",
                "headers": {"x-otlp-key": {"env": "E2E_OTLP_KEY"}},
                "timeout": "2s",
                "batch": {"scheduled_delay": "100ms"}
            }),
        )
        .env("E2E_OTLP_KEY", EXPORT_KEY)
    }
}

fn chat(model: &str, stream: bool) -> Value {
    let mut body = openai_chat(model, stream);
    body["messages"][0]["content"] = json!(PROMPT);
    body["max_tokens"] = json!(64);
    body
}

async fn post_traced(s: &Stack, body: &Value, traceparent: Option<&str>) -> reqwest::Response {
    let mut req = s
        .warden
        .http()
        .post(s.warden.url("/openai/chat/completions"))
        .bearer_auth(&s.token)
        .json(body);
    if let Some(tp) = traceparent {
        req = req
            .header("traceparent", tp)
            .header("tracestate", "vendor=opaque");
    }
    req.send().await.unwrap()
}

fn agent_traceparent() -> String {
    format!("00-{AGENT_TRACE}-{AGENT_SPAN}-01")
}

fn kind(s: &ReceivedSpan) -> i32 {
    s.span.kind
}

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

/// Asserts no span of `spans` shows the prompt, the agent's token or a provider key.
fn nothing_secret(spans: &[ReceivedSpan], token: &str) {
    for s in spans {
        let text = s.dump();
        for secret in ["7f3c-prompt-marker", token, OPENAI_KEY, EXPORT_KEY] {
            assert!(!text.contains(secret), "a span shows {secret:?}: {text}");
        }
    }
}

#[tokio::test]
async fn an_agents_traceparent_is_continued_with_genai_and_decision_attributes() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let s = Stack::start_with(traced(&otlp.endpoint())).await.unwrap();
    let r = post_traced(&s, &chat("gpt-4o-mini", false), Some(&agent_traceparent())).await;
    assert_eq!(r.status(), 200);
    let decision_id = r
        .headers()
        .get("x-warden-decision-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let _ = r.bytes().await.unwrap();

    let server = otlp.wait_for(WAIT, |s| kind(s) == SERVER).await.unwrap();
    assert_eq!(server.service, "warden-e2e");
    assert_eq!(
        server.trace_id(),
        AGENT_TRACE,
        "the agent's trace continues"
    );
    assert_eq!(
        server.parent_span_id(),
        AGENT_SPAN,
        "the agent's span is the parent"
    );
    assert_eq!(server.span.name, "chat gpt-4o-mini");
    assert_eq!(server.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(server.str("gen_ai.provider.name"), Some("openai"));
    assert_eq!(server.str("gen_ai.request.model"), Some("gpt-4o-mini"));
    assert_eq!(server.int("gen_ai.request.max_tokens"), Some(64));
    assert_eq!(server.bool("gen_ai.request.stream"), Some(false));
    assert_eq!(
        server.int("gen_ai.usage.input_tokens"),
        Some(PROMPT_TOKENS as i64)
    );
    assert_eq!(
        server.int("gen_ai.usage.output_tokens"),
        Some(COMPLETION_TOKENS as i64)
    );
    // What the response says: the model that answered and why it stopped.
    assert_eq!(server.str("gen_ai.response.model"), Some("gpt-4o-mini"));
    assert_eq!(
        server.strs("gen_ai.response.finish_reasons"),
        Some(vec!["stop"])
    );
    assert_eq!(server.str("warden.decision"), Some("allow"));
    assert_eq!(server.str("warden.decision_id"), Some(decision_id.as_str()));
    assert_eq!(
        server.strings("warden.policy_ids"),
        Some(vec!["e2e-permit-all".to_owned()])
    );
    assert_eq!(server.str("warden.principal.id"), Some(AGENT));
    assert_eq!(server.str("warden.route"), Some("openai"));
    assert_eq!(server.str("http.request.method"), Some("POST"));
    assert_eq!(server.str("http.route"), Some("/openai"));
    assert_eq!(server.str("url.path"), Some("/openai/chat/completions"));
    assert_eq!(server.int("http.response.status_code"), Some(200));
    assert_eq!(server.span.trace_state, "vendor=opaque");

    let client = otlp.wait_for(WAIT, |s| kind(s) == CLIENT).await.unwrap();
    assert_eq!(client.trace_id(), AGENT_TRACE);
    assert_eq!(
        client.parent_span_id(),
        server.span_id(),
        "the upstream call is Warden's child"
    );
    assert_eq!(
        client.int("gen_ai.usage.output_tokens"),
        Some(COMPLETION_TOKENS as i64)
    );

    let upstream = s.upstream_requests(1).await;
    let sent = upstream[0]
        .header("traceparent")
        .expect("a traceparent upstream");
    assert_eq!(
        sent,
        format!("00-{AGENT_TRACE}-{}-01", client.span_id()),
        "the upstream's parent is Warden's CLIENT span, not the agent's"
    );
    assert_eq!(upstream[0].header("tracestate"), Some("vendor=opaque"));

    let exports = otlp.export_headers();
    assert!(
        exports
            .iter()
            .all(|h| h.get("x-otlp-key").is_some_and(|v| v == EXPORT_KEY)),
        "every export carries the header read from its secret source"
    );
    nothing_secret(&otlp.spans(), &s.token);
}

#[tokio::test]
async fn without_a_traceparent_warden_starts_the_trace() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let s = Stack::start_with(traced(&otlp.endpoint())).await.unwrap();
    let r = post_traced(&s, &chat("gpt-4o-mini", false), None).await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    let server = otlp.wait_for(WAIT, |s| kind(s) == SERVER).await.unwrap();
    assert_eq!(server.parent_span_id(), "", "a root span");
    let client = otlp.wait_for(WAIT, |s| kind(s) == CLIENT).await.unwrap();
    let upstream = s.upstream_requests(1).await;
    assert_eq!(
        upstream[0].header("traceparent").unwrap(),
        format!("00-{}-{}-01", server.trace_id(), client.span_id())
    );
    assert_eq!(upstream[0].header("tracestate"), None);
}

#[tokio::test]
async fn a_streamed_chat_reports_the_usage_of_its_last_chunk() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let s = Stack::start_with(traced(&otlp.endpoint())).await.unwrap();
    let r = post_traced(&s, &chat("gpt-4o", true), Some(&agent_traceparent())).await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    let server = otlp.wait_for(WAIT, |s| kind(s) == SERVER).await.unwrap();
    assert_eq!(server.span.name, "chat gpt-4o");
    assert_eq!(server.bool("gen_ai.request.stream"), Some(true));
    assert_eq!(
        server.int("gen_ai.usage.input_tokens"),
        Some(PROMPT_TOKENS as i64)
    );
    assert_eq!(
        server.int("gen_ai.usage.output_tokens"),
        Some(COMPLETION_TOKENS as i64)
    );
    nothing_secret(&otlp.spans(), &s.token);
}

const FORBID_GPT41: &str = r#"
@id("e2e-forbid-gpt41")
@reason("gpt-4.1 is not for agents")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1");
"#;

#[tokio::test]
async fn a_denied_request_carries_the_decision_and_its_policies() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let endpoint = otlp.endpoint();
    let s = Stack::start_with(|b| traced(&endpoint)(b).policy("forbid.cedar", FORBID_GPT41))
        .await
        .unwrap();
    let r = post_traced(&s, &chat("gpt-4.1", false), Some(&agent_traceparent())).await;
    assert_eq!(r.status(), 200, "a refusal answered as a completion");
    let _ = r.bytes().await.unwrap();
    let server = otlp.wait_for(WAIT, |s| kind(s) == SERVER).await.unwrap();
    assert_eq!(server.trace_id(), AGENT_TRACE);
    assert_eq!(server.str("warden.decision"), Some("deny"));
    assert_eq!(
        server.strings("warden.policy_ids"),
        Some(vec!["e2e-forbid-gpt41".to_owned()])
    );
    assert!(
        server.str("warden.refusal.code").is_some(),
        "{}",
        server.dump()
    );
    assert_eq!(
        server.span.status.as_ref().map_or(0, |s| s.code),
        0,
        "a policy's refusal is not an error"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        otlp.spans().iter().all(|s| kind(s) != CLIENT),
        "nothing went upstream"
    );
    assert!(
        s.fake
            .wait_for_requests(1, Duration::from_millis(100))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn with_tracing_off_nothing_is_exported_and_traceparent_passes_as_sent() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let s = Stack::start().await.unwrap();
    let tp = agent_traceparent();
    let r = post_traced(&s, &chat("gpt-4o-mini", false), Some(&tp)).await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    let upstream = s.upstream_requests(1).await;
    assert_eq!(upstream[0].header("traceparent"), Some(tp.as_str()));
    assert_eq!(upstream[0].header("tracestate"), Some("vendor=opaque"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(otlp.spans().is_empty());
}

#[tokio::test]
async fn with_the_collector_down_requests_succeed_and_lost_spans_are_counted() {
    let closed = ClosedPort::new().unwrap();
    let endpoint = format!("{}/v1/traces", closed.url());
    let s = Stack::start_with(traced(&endpoint)).await.unwrap();
    for _ in 0..3 {
        let r = post_traced(&s, &chat("gpt-4o-mini", false), Some(&agent_traceparent())).await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = s.warden.metrics().await.unwrap();
        let failed = metrics
            .lines()
            .find(|l| l.starts_with("warden_trace_spans_total{result=\"failed\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if failed >= 6 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lost spans are not counted: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_invalid_traces_section_stops_the_start_with_the_key_and_what_to_do() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let r = Stack::start_with(|b| {
        b.set(
            "/traces",
            json!({"endpoint": otlp.endpoint(), "sample_ratio": 2.0}),
        )
    })
    .await;
    let e = format!("{:#}", r.expect_err("an invalid ratio is refused"));
    assert!(e.contains("traces.sample_ratio"), "{e}");
    assert!(e.contains("between 0.0"), "{e}");
}

#[tokio::test]
async fn spans_still_queued_are_sent_at_shutdown() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let endpoint = otlp.endpoint();
    let mut s = Stack::start_with(|b| {
        traced(&endpoint)(b).set("/traces/batch/scheduled_delay", json!("1h"))
    })
    .await
    .unwrap();
    let r = post_traced(&s, &chat("gpt-4o-mini", false), Some(&agent_traceparent())).await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(otlp.spans().is_empty(), "the batch waits for its delay");
    s.warden.signal(libc::SIGTERM).unwrap();
    s.warden.wait_exit(WAIT).await.unwrap();
    let server = otlp.wait_for(WAIT, |s| kind(s) == SERVER).await.unwrap();
    assert_eq!(server.trace_id(), AGENT_TRACE);
}

/// One JSON-RPC message to the MCP endpoint at `url` (Streamable HTTP); the answer's JSON
/// (from a JSON body or the first event of a stream) and its session id header.
async fn mcp_post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: Option<&str>,
    message: Value,
    traceparent: Option<&str>,
) -> (u16, Option<Value>, Option<String>) {
    let mut req = http
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&message);
    if let Some(id) = session {
        req = req.header("mcp-session-id", id);
    }
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let session = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).ok().or_else(|| {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|d| serde_json::from_str(d.trim()).ok())
    });
    (status, json, session)
}

#[tokio::test]
async fn an_mcp_tool_call_is_an_execute_tool_span_without_its_arguments() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let endpoint = otlp.endpoint();
    let recorded = tempfile::tempdir().unwrap();
    let record = recorded.path().join("meta.jsonl");
    let w = traced(&endpoint)(WardenBuilder::with_upstream_url("http://127.0.0.1:9").set(
        "/mcp",
        json!({"servers": [warden_e2e::mcp::everything_stdio("everything"),
                           warden_e2e::mcp::recording_stdio("recorder", &record)],
                   "endpoints": [{"name": "tools", "servers": ["everything", "recorder"]}]}),
    ))
    .start()
    .await
    .unwrap();
    let token = w.token(AGENT).await.unwrap();
    let url = w.url("/mcp/tools");
    let (status, init, session) = mcp_post(
        w.http(),
        &url,
        &token,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"}}}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{init:?}");
    let session = session.expect("a session id");
    let (status, _, _) = mcp_post(
        w.http(),
        &url,
        &token,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        None,
    )
    .await;
    assert!(status < 300, "{status}");
    let (status, answer, _) = mcp_post(
        w.http(),
        &url,
        &token,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "everything_echo", "arguments": {"message": "arg-marker-5e1d"}}}),
        Some(&agent_traceparent()),
    )
    .await;
    assert_eq!(status, 200);
    let answer = answer.expect("a JSON-RPC answer");
    assert!(answer["result"].is_object(), "{answer}");

    let server = otlp
        .wait_for(WAIT, |s| kind(s) == SERVER && s.trace_id() == AGENT_TRACE)
        .await
        .unwrap();
    assert_eq!(server.span.name, "tools/call echo");
    assert_eq!(server.parent_span_id(), AGENT_SPAN);
    assert_eq!(server.str("gen_ai.operation.name"), Some("execute_tool"));
    assert_eq!(server.str("gen_ai.tool.name"), Some("echo"));
    assert_eq!(server.str("mcp.method.name"), Some("tools/call"));
    assert_eq!(server.str("warden.decision"), Some("allow"));
    assert_eq!(server.str("warden.action"), Some("mcp:call_tool"));
    assert_eq!(server.str("gen_ai.provider.name"), None);
    let client = otlp
        .wait_for(WAIT, |s| kind(s) == CLIENT && s.trace_id() == AGENT_TRACE)
        .await
        .unwrap();
    assert_eq!(client.parent_span_id(), server.span_id());
    assert_eq!(client.span.name, "tools/call echo");
    for s in otlp.spans() {
        assert!(!s.dump().contains("arg-marker-5e1d"), "{}", s.dump());
    }

    // A stdio server has no headers: the trace context reaches it in `params._meta`, naming
    // Warden's CLIENT span of that call, with the agent's tracestate.
    let (status, answer, _) = mcp_post(
        w.http(),
        &url,
        &token,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "recorder_add", "arguments": {"a": 2, "b": 3}}}),
        Some(&agent_traceparent()),
    )
    .await;
    assert_eq!(status, 200, "{answer:?}");
    let meta: Value = serde_json::from_str(
        std::fs::read_to_string(&record)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let client = otlp
        .wait_for(WAIT, |s| {
            kind(s) == CLIENT && s.trace_id() == AGENT_TRACE && s.span.name == "tools/call add"
        })
        .await
        .unwrap();
    assert_eq!(
        meta["traceparent"],
        format!("00-{AGENT_TRACE}-{}-01", client.span_id()),
        "{meta}"
    );
}

/// A collector that accepts connections and never answers: requests go on at full speed, and
/// what the queue cannot hold is dropped and counted.
#[tokio::test]
async fn a_stalled_collector_never_holds_a_request_and_overflow_is_counted() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let stalled = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let s = Stack::start_with(|b| {
        traced(&endpoint)(b).set(
            "/traces",
            json!({"endpoint": endpoint, "timeout": "30s",
                   "batch": {"max_queue_size": 2, "max_export_batch_size": 1,
                             "scheduled_delay": "10ms"}}),
        )
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    for _ in 0..8 {
        let r = post_traced(&s, &chat("gpt-4o-mini", false), Some(&agent_traceparent())).await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests waited for the collector: {:?}",
        started.elapsed()
    );
    let metrics = s.warden.metrics().await.unwrap();
    let dropped = metrics
        .lines()
        .find(|l| l.starts_with("warden_trace_spans_total{result=\"dropped\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        dropped >= 10,
        "16 spans, one in export, two queued: {metrics}"
    );
    stalled.abort();
}

/// The agent's sampling decision is honoured: an unsampled trace exports nothing, yet the
/// upstream still hears of Warden's span, unsampled.
#[tokio::test]
async fn an_unsampled_agent_trace_exports_nothing_and_stays_unsampled_upstream() {
    let otlp = OtlpReceiver::start().await.unwrap();
    let s = Stack::start_with(traced(&otlp.endpoint())).await.unwrap();
    let unsampled = format!("00-{AGENT_TRACE}-{AGENT_SPAN}-00");
    let r = post_traced(&s, &chat("gpt-4o-mini", false), Some(&unsampled)).await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    let upstream = s.upstream_requests(1).await;
    let sent = upstream[0].header("traceparent").unwrap();
    assert!(sent.starts_with(&format!("00-{AGENT_TRACE}-")), "{sent}");
    assert!(sent.ends_with("-00"), "still unsampled: {sent}");
    assert!(
        !sent.contains(AGENT_SPAN),
        "Warden's span, not the agent's: {sent}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(otlp.spans().is_empty(), "{:?}", otlp.spans());
}
