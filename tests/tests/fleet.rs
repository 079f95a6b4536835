//! Fleet controls through the real binary: rate and concurrency limits answered as each
//! provider answers its own (429 with `retry-after` in its error shape; a JSON-RPC error for
//! MCP), or as a well-formed refusal where configured.

use serde_json::{Value, json};
use warden_e2e::mcp;
use warden_e2e::operator::{approve, enrol, first_pending, gpt4o_waits_for_sre, held_chat, text};
use warden_e2e::stack::{AGENT, Stack, anthropic_messages, openai_chat};
use warden_e2e::warden::WardenBuilder;

/// One agent may send two requests at once, then one every 1000 s: a burst of three meets
/// the limit.
fn two_then_wait() -> Value {
    json!({"rules": [{"scope": "agent", "rate": 0.001, "burst": 2}]})
}

fn gemini_request() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}]})
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Sends the two requests the burst admits.
async fn spend_the_burst(s: &Stack) {
    for _ in 0..2 {
        let ok = s
            .post(
                "/openai/chat/completions",
                &openai_chat("gpt-4o-mini", false),
            )
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "within the burst");
    }
}

#[tokio::test]
async fn a_burst_over_the_agents_rate_is_answered_429_in_each_providers_shape() {
    let s = Stack::start_with(|b| b.set("/rate_limits", two_then_wait()))
        .await
        .unwrap();
    spend_the_burst(&s).await;

    let openai = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(openai.status(), 429);
    let wait = retry_after(&openai);
    assert!((900..=1000).contains(&wait), "retry-after {wait}");
    assert_eq!(openai.headers()["x-warden-error"], "rate_limited");
    let body: Value = openai.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(AGENT) && message.contains("rate_limits.rules[0]"),
        "names who and which rule: {message}"
    );

    let anthropic = s
        .post(
            "/anthropic/v1/messages",
            &anthropic_messages("claude-sonnet-4-5", false),
        )
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 429);
    assert!(retry_after(&anthropic) >= 900);
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");

    let gemini = s
        .post(
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            &gemini_request(),
        )
        .await
        .unwrap();
    assert_eq!(gemini.status(), 429);
    assert!(retry_after(&gemini) >= 900);
    let body: Value = gemini.json().await.unwrap();
    assert_eq!(body["error"]["code"], 429, "{body}");
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED", "{body}");

    // Only the two admitted requests reached the provider; each refusal is recorded.
    assert_eq!(s.upstream_requests(2).await.len(), 2);
    let record = s
        .audit("rejected", |r| {
            r["reasons"].to_string().contains("rate limit")
        })
        .await
        .unwrap();
    assert_eq!(record["principal"]["id"], AGENT);
    let metrics = s.warden.metrics().await.unwrap();
    assert!(
        metrics.contains("warden_rate_limited_total{scope=\"agent\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_limited_request_can_be_answered_with_a_well_formed_refusal() {
    let mut limits = two_then_wait();
    limits["answer"] = json!("refusal");
    let s = Stack::start_with(|b| b.set("/rate_limits", limits))
        .await
        .unwrap();
    spend_the_burst(&s).await;
    let refused = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        200,
        "agents that storm on 429 get an answer"
    );
    assert!(retry_after(&refused) >= 900);
    let body: Value = refused.json().await.unwrap();
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("rate limit reached"), "{text}");
    assert_eq!(s.upstream_requests(2).await.len(), 2);
}

/// Warden with the endpoint `/mcp/tools` on the `everything` MCP server.
fn everything() -> WardenBuilder {
    WardenBuilder::with_upstream_url("http://127.0.0.1:9").set(
        "/mcp",
        json!({"servers": [mcp::everything_stdio("everything")],
               "endpoints": [{"name": "tools", "servers": ["everything"]}]}),
    )
}

#[tokio::test]
async fn a_burst_of_tool_calls_over_the_tools_rate_gets_a_json_rpc_error_with_429() {
    let w = everything()
        .set(
            "/rate_limits",
            json!({"rules": [{"scope": "tool", "match": "everything/echo", "rate": 0.001, "burst": 2}]}),
        )
        .start()
        .await
        .expect("warden starts");
    let agent = w.token(AGENT).await.unwrap();
    let session = mcp::initialize_raw(&w, "/mcp/tools", &agent).await.unwrap();
    let post = |body: Value| {
        let (w, agent, session) = (&w, &agent, &session);
        async move { mcp::post_raw(w, "/mcp/tools", agent, Some(session), &body).await }
    };
    let echo = |id| mcp::tool_call(id, "everything_echo", json!({"message": "hi"}));
    for id in [2, 3] {
        assert_eq!(
            post(echo(id)).await.unwrap().status(),
            200,
            "within the burst"
        );
    }
    let refused = post(echo(4)).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(retry_after(&refused) >= 900);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["id"], 4, "answers the request it refuses: {body}");
    assert_eq!(body["error"]["data"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("everything/echo"),
        "{body}"
    );
    // Another tool is not limited by that rule.
    let sum = mcp::tool_call(5, "everything_get-sum", json!({"a": 1, "b": 2}));
    assert_eq!(post(sum).await.unwrap().status(), 200);
}

/// The policy `@id(id)` from the shipped policy file `file` (under `policies/`).
fn shipped_rule(file: &str, id: &str) -> String {
    let pack = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policies")
            .join(file),
    )
    .unwrap();
    let start = pack.find(&format!("@id(\"{id}\")")).unwrap();
    let end = start + pack[start..].find("};").unwrap() + 2;
    pack[start..end].to_owned()
}

/// The baseline pack's session rule, as shipped in `policies/baseline.cedar`.
fn baseline_session_rule() -> String {
    shipped_rule("baseline.cedar", "baseline-private-then-external-approval")
}

#[tokio::test]
async fn a_send_tagged_external_after_a_private_read_in_the_session_is_held_for_approval() {
    let w = everything()
        .set(
            "/sessions/tags",
            json!({"Tool::\"everything/echo\"": ["private"],
                   "Tool::\"everything/get-sum\"": ["external"]}),
        )
        .set(
            "/approvals",
            json!({"mode": "pending", "console_url": "https://warden.example.com",
                   "operators": [{"subject": "alice", "groups": ["sre"]}]}),
        )
        .policy("private-then-external.cedar", &baseline_session_rule())
        .start()
        .await
        .expect("warden starts");
    let token = w.token(AGENT).await.unwrap();
    let url = w.url("/mcp/tools");
    let send = json!({"op": "call", "name": "everything_get-sum", "arguments": {"a": 1, "b": 2}});
    let read = json!({"op": "call", "name": "everything_echo", "arguments": {"message": "the customer file"}});

    // A session that read nothing private sends freely.
    let r = mcp::session(&w, &url, &token, json!([send.clone()]))
        .await
        .unwrap();
    assert_eq!(r["steps"][0]["isError"], false, "{r}");

    // In another session, the same send after a private read waits for a human.
    let r = mcp::session(&w, &url, &token, json!([read, send]))
        .await
        .unwrap();
    assert_eq!(
        r["steps"][0]["isError"], false,
        "the read goes through: {r}"
    );
    let held = &r["steps"][1];
    assert_eq!(held["isError"], true, "{r}");
    let said = held["text"].as_str().unwrap();
    assert!(
        said.contains("approval") && said.contains("read private data"),
        "{said}"
    );
    let record = w
        .wait_for_audit(std::time::Duration::from_secs(10), |r| {
            r["kind"] == "decision" && r["decision"] == "approval_required"
        })
        .await
        .unwrap();
    assert_eq!(
        record["policies"],
        json!(["baseline-private-then-external-approval"]),
        "{record}"
    );
}

/// The example budget rule, as shipped in `policies/examples/budgets.cedar`.
fn example_budget_rule() -> String {
    shipped_rule("examples/budgets.cedar", "budget-exceeded-deny")
}

#[tokio::test]
async fn a_token_budget_spent_by_streamed_responses_denies_the_next_request() {
    use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
    let per_call = PROMPT_TOKENS + COMPLETION_TOKENS;
    // Two streamed calls spend the day's budget exactly.
    let s = budgeted(2 * per_call).await;
    for call in 1..=2 {
        let streamed = s
            .post(
                "/openai/chat/completions",
                &openai_chat("gpt-4o-mini", true),
            )
            .await
            .unwrap();
        assert_eq!(streamed.status(), 200, "call {call} is within the budget");
        let request_id = streamed.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let events = streamed.text().await.unwrap();
        assert!(
            events.contains("\"usage\""),
            "the stream reports usage: {events}"
        );
        // Its usage is charged when the stream ends, before its outcome is recorded.
        let outcome = s
            .audit("outcome", |r| r["request_id"] == request_id.as_str())
            .await
            .unwrap();
        assert_eq!(
            outcome["outcome"]["output_tokens"],
            json!(COMPLETION_TOKENS),
            "{outcome}"
        );
    }

    // The decision record says which policy denied.
    next_call_denied(&s).await;
    let record = s
        .audit("decision", |r| r["decision"] == "deny")
        .await
        .unwrap();
    assert_eq!(
        record["policies"],
        json!(["budget-exceeded-deny"]),
        "{record}"
    );
    assert_eq!(
        s.upstream_requests(2).await.len(),
        2,
        "the denied request never reached the provider"
    );
}

/// An operator's `warden budgets reset` of a spent budget serves the agent again, and the
/// running gateway's audit log names the reset and the operator (who the store recorded).
#[tokio::test]
async fn an_operators_budget_reset_is_audited_with_who_and_serves_the_agent_again() {
    use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
    let s = budgeted(PROMPT_TOKENS + COMPLETION_TOKENS).await;
    let spent = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(spent.status(), 200);
    next_call_denied(&s).await;
    // The spend reaches the store at the gateway's next sync: a reset before it would be
    // undone by it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = s
            .warden
            .cli(&[
                "budgets", "show", "--scope", "agent", "--name", AGENT, "--json",
            ])
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
        if shown
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["exceeded"] == true)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never stored: {shown}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let out = s
        .warden
        .cli(&[
            "budgets", "reset", "--scope", "agent", "--name", AGENT, "--as", "alice",
        ])
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        printed.contains("1 account(s)") && printed.contains("alice [warden-cli]"),
        "{printed}"
    );
    let record = s
        .audit("system", |r| r["detail"]["event"] == "budget_reset")
        .await
        .unwrap();
    let detail = &record["detail"];
    assert_eq!(
        detail["by"],
        json!({"id": "alice", "issuer": "warden-cli"}),
        "{record}"
    );
    assert_eq!(detail["scope"], "agent", "{record}");
    assert_eq!(detail["name"], AGENT, "{record}");
    assert_eq!(detail["accounts"], 1, "{record}");
    assert!(detail["at_ms"].as_i64().unwrap() > 0, "{record}");
    assert_eq!(record["principal"]["id"], AGENT, "{record}");
    // Audited at the sync that read the wiped spend: the agent is served again.
    let served = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let body = served.text().await.unwrap();
    assert!(!body.contains("budget is spent"), "{body}");
    assert_eq!(
        s.upstream_requests(2).await.len(),
        2,
        "served by the provider"
    );
    // Without a name for the operator, the reset is refused before the store is touched.
    let mut unnamed = s.warden.setup.command();
    unnamed
        .args([
            "budgets", "reset", "--scope", "agent", "--name", AGENT, "--config",
        ])
        .arg(&s.warden.setup.config_path)
        .env_remove("USER")
        .env_remove("LOGNAME");
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), unnamed.output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--as"),
        "{out:?}"
    );
}

/// A stack whose agent may spend `tokens` a day, the example budget rule denying it once spent.
async fn budgeted(tokens: u64) -> Stack {
    Stack::start_with(|b| {
        b.set(
            "/budgets",
            json!({"limits": [{"scope": "agent", "name": "*", "period": "day", "tokens": tokens}]}),
        )
        .policy("budgets.cedar", &example_budget_rule())
    })
    .await
    .unwrap()
}

/// Asserts that the agent's next (streamed) call is denied: its budget is spent. A deny of a
/// streamed call is answered as the provider would end a turn (200), with the reason.
async fn next_call_denied(s: &Stack) {
    let denied = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", true),
        )
        .await
        .unwrap();
    let body = denied.text().await.unwrap();
    assert!(body.contains("budget is spent"), "says why: {body}");
}

/// The request id of `response`.
fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Reads `response` until `events` whole server-sent events have come: what was read.
async fn read_events(response: &mut reqwest::Response, events: usize) -> String {
    let mut read = String::new();
    // Gemini ends its events with CRLF line ends, the others with LF.
    while read.replace("\r\n", "\n").matches("\n\n").count() < events {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended after {read}"));
        read.push_str(&String::from_utf8_lossy(&chunk));
    }
    read
}

/// Streams a chat the agent leaves after its first text chunk: the request id and what the
/// agent read (`gate`, holding the fake's streams after that chunk, is then released).
async fn leave_after_the_first_chunk(
    s: &Stack,
    gate: warden_e2e::fake_llm::StreamGate,
) -> (String, String) {
    let chat = openai_chat("gpt-4o-mini", true);
    leave_after_the_first_text(s, gate, "/openai/chat/completions", &chat).await
}

/// Streams `body` to `path` and leaves once the first text chunk has come: the request id and
/// what the agent read (`gate`, holding the fake's streams after that chunk, is then released).
async fn leave_after_the_first_text(
    s: &Stack,
    gate: warden_e2e::fake_llm::StreamGate,
    path: &str,
    body: &Value,
) -> (String, String) {
    let mut request = s.warden.http().post(s.warden.url(path));
    if path.starts_with("/anthropic/") {
        request = request.header("anthropic-version", "2023-06-01");
    }
    let mut streamed = request
        .bearer_auth(&s.token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let id = request_id(&streamed);
    let mut first = String::new();
    for _ in 0..4 {
        first.push_str(&read_events(&mut streamed, 1).await);
        if first.contains(warden_e2e::fake_llm::TEXT_CHUNKS[0]) {
            break;
        }
    }
    assert!(
        first.contains(warden_e2e::fake_llm::TEXT_CHUNKS[0]),
        "{first}"
    );
    drop(streamed);
    gate.release();
    (id, first)
}

/// The outcome record of request `id`, once its input and output tokens are as said.
async fn charged(s: &Stack, id: &str, input: u64, output: u64) -> Value {
    let outcome = s.audit("outcome", |r| r["request_id"] == id).await.unwrap();
    assert_eq!(
        (
            &outcome["outcome"]["input_tokens"],
            &outcome["outcome"]["output_tokens"]
        ),
        (&json!(input), &json!(output)),
        "{outcome}"
    );
    outcome
}

/// The input tokens Warden estimates for `openai_chat`'s prompt: "user" and "What is the
/// weather in Paris?", 33 characters, a token per four.
const CHAT_INPUT_ESTIMATE: u64 = 9;

#[tokio::test]
async fn a_stream_asked_without_usage_is_charged_and_the_agent_gets_no_usage_chunk() {
    use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS, TEXT_CHUNKS};
    let s = budgeted(PROMPT_TOKENS + COMPLETION_TOKENS).await;
    let mut body = openai_chat("gpt-4o-mini", true);
    body.as_object_mut().unwrap().remove("stream_options");
    let streamed = s.post("/openai/chat/completions", &body).await.unwrap();
    assert_eq!(streamed.status(), 200);
    let id = request_id(&streamed);
    let events = streamed.text().await.unwrap();

    // Warden asked the provider for the usage...
    let asked = s.upstream_requests(1).await[0].json();
    assert_eq!(
        asked["stream_options"],
        json!({"include_usage": true}),
        "{asked}"
    );
    // ...and the agent gets the stream it asked for: the role, each text chunk, the stop and
    // `[DONE]`, with no usage chunk and no `"usage": null` in the others.
    let received: Vec<&str> = events.split_terminator("\n\n").collect();
    assert_eq!(received.len(), TEXT_CHUNKS.len() + 3, "{events}");
    assert!(!events.contains("usage"), "{events}");
    assert!(!events.contains("\"choices\":[]"), "{events}");
    assert!(TEXT_CHUNKS.iter().all(|t| events.contains(t)), "{events}");
    assert_eq!(received.last(), Some(&"data: [DONE]"));

    let outcome = charged(&s, &id, PROMPT_TOKENS, COMPLETION_TOKENS).await;
    assert_eq!(outcome["outcome"].get("usage_estimated"), None, "{outcome}");
    next_call_denied(&s).await;
}

#[tokio::test]
async fn an_agent_that_leaves_after_the_first_chunk_is_charged_the_usage_sent_later() {
    use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
    let s = budgeted(PROMPT_TOKENS + COMPLETION_TOKENS).await;
    // The agent leaves with the first chunk; the provider goes on, usage last.
    let (id, _) = leave_after_the_first_chunk(&s, s.fake.hold_streams()).await;

    let outcome = charged(&s, &id, PROMPT_TOKENS, COMPLETION_TOKENS).await;
    assert_eq!(outcome["outcome"].get("usage_estimated"), None, "{outcome}");
    let error = outcome["outcome"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("disconnected") && error.contains("read the rest"),
        "{outcome}"
    );
    assert_eq!(
        s.fake.streams_completed(),
        1,
        "Warden read the stream to its end"
    );
    next_call_denied(&s).await;
}

/// An agent leaves a stream of `path` after its first text; Warden reads the rest and charges
/// the usage the provider sends at the end.
async fn leaving_is_charged_the_usage_sent_later(path: &str, body: &Value) {
    use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
    let s = budgeted(PROMPT_TOKENS + COMPLETION_TOKENS).await;
    let (id, _) = leave_after_the_first_text(&s, s.fake.hold_streams(), path, body).await;

    let outcome = charged(&s, &id, PROMPT_TOKENS, COMPLETION_TOKENS).await;
    assert_eq!(outcome["outcome"].get("usage_estimated"), None, "{outcome}");
    assert_eq!(
        s.fake.streams_completed(),
        1,
        "Warden read the stream to its end"
    );
    next_call_denied(&s).await;
}

#[tokio::test]
async fn an_agent_that_leaves_an_anthropic_stream_is_charged_the_usage_sent_later() {
    // The input tokens come first (message_start), the output tokens last (message_delta).
    let body = anthropic_messages("claude-sonnet-4-5", true);
    leaving_is_charged_the_usage_sent_later("/anthropic/v1/messages", &body).await;
}

#[tokio::test]
async fn an_agent_that_leaves_a_gemini_stream_is_charged_the_usage_sent_later() {
    // Every event carries usageMetadata; only the last counts the answer's tokens.
    let body = gemini_request();
    leaving_is_charged_the_usage_sent_later(
        "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        &body,
    )
    .await;
}

#[tokio::test]
async fn an_agent_that_leaves_a_stream_the_provider_then_cuts_is_charged_an_estimate() {
    let s = budgeted(20).await;
    let gate = s.fake.hold_streams();
    // The provider cuts the stream before its usage.
    s.fake.cut_streams_after(2);
    let (id, first) = leave_after_the_first_chunk(&s, gate).await;

    // The request's input estimate, and a token per four bytes of the answer read.
    let read = first.len() as u64;
    let outcome = charged(&s, &id, CHAT_INPUT_ESTIMATE, read.div_ceil(4)).await;
    assert_eq!(outcome["outcome"]["usage_estimated"], true, "{outcome}");
    let error = outcome["outcome"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("could not be read"), "{outcome}");
    // Charged: past the day's 20 tokens.
    next_call_denied(&s).await;
}

#[tokio::test]
async fn a_whole_answer_too_large_to_read_its_usage_is_charged_an_estimate() {
    // The estimate below spends it exactly.
    let s = budgeted(CHAT_INPUT_ESTIMATE + 50).await;
    // Past the 4 MiB Warden reads usage from.
    s.fake.pad_answers(5 * 1024 * 1024);
    let mut body = openai_chat("gpt-4o-mini", false);
    body["max_tokens"] = json!(50);
    let answer = s.post("/openai/chat/completions", &body).await.unwrap();
    assert_eq!(answer.status(), 200);
    let id = request_id(&answer);
    let read = answer.bytes().await.unwrap();
    assert!(read.len() > 5 * 1024 * 1024, "the agent gets it whole");

    // The request's input estimate, and the output its `max_tokens` bounds.
    let outcome = charged(&s, &id, CHAT_INPUT_ESTIMATE, 50).await;
    assert_eq!(outcome["outcome"]["usage_estimated"], true, "{outcome}");
    next_call_denied(&s).await;
}

/// The tokens this gateway's LLM calls in flight have reserved against budgets
/// (`warden_budget_reserved_tokens`).
async fn reserved_tokens(s: &Stack) -> u64 {
    let metrics = s.warden.metrics().await.unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("warden_budget_reserved_tokens "))
        .unwrap_or_else(|| panic!("no reservation gauge in {metrics}"))
        .parse()
        .unwrap()
}

/// The most input tokens an answer to `body` can be charged: a token per byte of the body as
/// sent, plus the 8192 a provider may add around it (docs/fleet.md, "Usage an upstream
/// reports").
fn input_ceiling(body: &Value) -> u64 {
    serde_json::to_vec(body).unwrap().len() as u64 + 8192
}

#[tokio::test]
async fn a_call_judged_while_another_is_in_flight_counts_that_ones_worst_case_until_it_ends() {
    use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
    // 5000 tokens a day: the first call's worst case (its input ceiling and 2000 output tokens)
    // is past them, what it really spends far below.
    let s = budgeted(5000).await;
    let gate = s.fake.hold_streams();
    let mut body = openai_chat("gpt-4o-mini", true);
    body["max_tokens"] = json!(2000);
    let mut first = s.post("/openai/chat/completions", &body).await.unwrap();
    assert_eq!(first.status(), 200, "judged on the whole budget");
    let id = request_id(&first);
    // The provider holds the stream after its first chunks: the call is in flight.
    read_events(&mut first, 1).await;
    assert_eq!(reserved_tokens(&s).await, input_ceiling(&body) + 2000);

    // A call judged now counts the first one's worst case as spent: the budget is exceeded.
    next_call_denied(&s).await;
    let record = s
        .audit("decision", |r| r["decision"] == "deny")
        .await
        .unwrap();
    assert_eq!(
        record["policies"],
        json!(["budget-exceeded-deny"]),
        "{record}"
    );

    // The first call ends: its real usage is charged and its reservation given back.
    gate.release();
    let events = first.text().await.unwrap();
    assert!(events.contains("[DONE]"), "{events}");
    charged(&s, &id, PROMPT_TOKENS, COMPLETION_TOKENS).await;
    assert_eq!(reserved_tokens(&s).await, 0);
    let after = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", true),
        )
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    let after = after.text().await.unwrap();
    assert!(
        !after.contains("budget is spent") && after.contains("\"usage\""),
        "judged on the tokens really spent: {after}"
    );
    assert_eq!(
        s.upstream_requests(2).await.len(),
        2,
        "the denied call never reached the provider"
    );
}

#[tokio::test]
async fn a_stream_its_agent_leaves_mid_way_gives_its_reservation_back_when_charged() {
    let s = budgeted(100_000).await;
    let gate = s.fake.hold_streams();
    // The provider cuts the stream too, before its usage: an estimate is charged.
    s.fake.cut_streams_after(2);
    let mut streamed = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", true),
        )
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    let id = request_id(&streamed);
    let first = read_events(&mut streamed, 1).await;
    // No output limit: the configured default (4096) is reserved.
    let body = openai_chat("gpt-4o-mini", true);
    assert_eq!(reserved_tokens(&s).await, input_ceiling(&body) + 4096);
    drop(streamed);
    gate.release();

    let outcome = s.audit("outcome", |r| r["request_id"] == id).await.unwrap();
    assert_eq!(outcome["outcome"]["usage_estimated"], true, "{outcome}");
    // Charged the estimate of what Warden read (at least what the agent read), its
    // reservation given back.
    let output = outcome["outcome"]["output_tokens"].as_u64().unwrap();
    assert!(output >= (first.len() as u64).div_ceil(4), "{outcome}");
    assert_eq!(reserved_tokens(&s).await, 0, "nothing left reserved");
}

/// The outcome record of the request decided `decision` ("allow", "approval_required"), once
/// its agent went away before the answer.
async fn went_away(s: &Stack, decision: &str) -> Value {
    let decided = s
        .audit("decision", |r| r["decision"] == decision)
        .await
        .unwrap();
    let outcome = s
        .audit("outcome", |r| r["request_id"] == decided["request_id"])
        .await
        .unwrap();
    let error = outcome["outcome"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("went away"), "{outcome}");
    outcome
}

/// An agent that leaves once its call is upstream, before any answer: the provider may still
/// generate (and bill) the whole answer, so the call is charged the most it could generate —
/// the input estimate and its `max_tokens` — marked estimated, and its reservation given back.
#[tokio::test]
async fn an_agent_gone_before_the_answer_is_charged_the_most_its_call_could_generate() {
    use std::time::Duration;
    // The estimate below spends it exactly.
    let s = budgeted(CHAT_INPUT_ESTIMATE + 50).await;
    // The answer does not come while the agent is there.
    s.fake.set_response_delay(Duration::from_secs(600));
    let mut body = openai_chat("gpt-4o-mini", false);
    body["max_tokens"] = json!(50);
    let agent = s.call_to_leave("/openai/chat/completions", &body).await;
    let seen = s.fake.wait_for_requests(1, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 1, "the call reached the upstream");
    drop(agent);

    let outcome = went_away(&s, "allow").await;
    let id = outcome["request_id"].as_str().unwrap();
    let outcome = charged(&s, id, CHAT_INPUT_ESTIMATE, 50).await;
    assert_eq!(outcome["outcome"]["usage_estimated"], true, "{outcome}");
    assert_eq!(reserved_tokens(&s).await, 0, "nothing left reserved");
    // The budget's spend: the estimate, priced as gpt-4o-mini (0.15 and 0.60 $/M).
    let spent = s.spent_usd_today().await;
    let estimate = (CHAT_INPUT_ESTIMATE as f64 * 0.15 + 50.0 * 0.6) / 1e6;
    assert!((spent - estimate).abs() < 2e-6, "{spent} for {estimate}");
    next_call_denied(&s).await;
}

/// An agent that leaves while its call waits for an approval: the call never went upstream,
/// and costs nothing.
#[tokio::test]
async fn an_agent_gone_while_its_call_awaits_approval_is_charged_nothing() {
    let s = Stack::start_with(|b| {
        gpt4o_waits_for_sre(b, "3m").set(
            "/budgets",
            json!({"limits": [{"scope": "agent", "name": "*", "period": "day", "tokens": 100_000}]}),
        )
    })
    .await
    .unwrap();
    let chat = openai_chat("gpt-4o", false);
    let agent = s.call_to_leave("/openai/chat/completions", &chat).await;
    s.audit("decision", |r| r["decision"] == "approval_required")
        .await
        .unwrap();
    drop(agent);

    let outcome = went_away(&s, "approval_required").await;
    assert_eq!(outcome["outcome"].get("input_tokens"), None, "{outcome}");
    assert_eq!(outcome["outcome"].get("output_tokens"), None, "{outcome}");
    assert_eq!(outcome["outcome"].get("usage_estimated"), None, "{outcome}");
    assert_eq!(reserved_tokens(&s).await, 0, "nothing left reserved");
    assert!(s.fake.requests().is_empty(), "never sent upstream");
}

/// An agent of the `research` group: a Warden token for `agent` with `groups: ["research"]`.
async fn researcher(s: &Stack, agent: &str) -> String {
    s.warden
        .token_with(agent, "1h", &[("groups", r#"["research"]"#)])
        .await
        .unwrap()
}

/// POSTs `body` to the proxy's OpenAI chat route as the agent of `token`.
async fn chat_as(s: &Stack, token: &str, body: &Value) -> reqwest::Response {
    s.warden
        .http()
        .post(s.warden.url("/openai/chat/completions"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The decision record of the first request of `agent`.
async fn decided_for(s: &Stack, agent: &str) -> Value {
    s.audit("decision", |r| r["principal"]["id"] == agent)
        .await
        .unwrap()
}

/// One agent asking for a billion output tokens reserves at most
/// `budgets.reserve.max_output_tokens` (128 000): while its call is in flight, the other
/// agents of its group are judged on what is really left, not starved by its request.
#[tokio::test]
async fn a_call_asking_for_a_billion_tokens_does_not_starve_the_rest_of_its_group() {
    use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
    let s = Stack::start_with(|b| {
        b.set("/budgets", group_budget(1_000_000))
            .policy("budgets.cedar", &example_budget_rule())
    })
    .await
    .unwrap();
    let (greedy, other) = (
        researcher(&s, "greedy-bot").await,
        researcher(&s, "other-bot").await,
    );
    let gate = s.fake.hold_streams();
    let mut body = openai_chat("gpt-4o-mini", true);
    body["max_tokens"] = json!(1_000_000_000u64);
    let mut first = chat_as(&s, &greedy, &body).await;
    assert_eq!(first.status(), 200);
    let id = request_id(&first);
    read_events(&mut first, 1).await;
    // In flight, it holds its input ceiling and the cap, not a billion tokens.
    assert_eq!(reserved_tokens(&s).await, input_ceiling(&body) + 128_000);

    // Another agent of the group, judged meanwhile: allowed, on what is really left.
    let answer = chat_as(&s, &other, &openai_chat("gpt-4o-mini", false)).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert!(!text.contains("budget is spent"), "{text}");
    let decided = decided_for(&s, "other-bot").await;
    assert_eq!(decided["decision"], "allow", "{decided}");

    // The greedy call ends: charged its usage, its outcome saying what it reserved.
    gate.release();
    assert!(first.text().await.unwrap().contains("[DONE]"));
    let outcome = charged(&s, &id, PROMPT_TOKENS, COMPLETION_TOKENS).await;
    assert_eq!(
        outcome["outcome"]["reserved"]["output_tokens"],
        json!(128_000),
        "{outcome}"
    );
    assert_eq!(reserved_tokens(&s).await, 0, "nothing left reserved");
}

/// The outcome record of an LLM call a budget bounds says what the call reserved: its input
/// ceiling and output limit in tokens, and their price in dollars (gpt-4o-mini: 0.15 and
/// 0.60 $/M).
#[tokio::test]
async fn an_outcome_record_says_what_its_call_reserved() {
    let s = budgeted(100_000).await;
    let mut body = openai_chat("gpt-4o-mini", false);
    body["max_tokens"] = json!(2000);
    let answer = s.post("/openai/chat/completions", &body).await.unwrap();
    assert_eq!(answer.status(), 200);
    let id = request_id(&answer);
    answer.bytes().await.unwrap();

    let outcome = s
        .audit("outcome", |r| r["request_id"] == id.as_str())
        .await
        .unwrap();
    let reserved = &outcome["outcome"]["reserved"];
    let input = input_ceiling(&body);
    assert_eq!(reserved["input_tokens"], json!(input), "{outcome}");
    assert_eq!(reserved["output_tokens"], json!(2000), "{outcome}");
    let usd = reserved["usd"].as_f64().unwrap();
    let priced = (input as f64 * 0.15 + 2000.0 * 0.6) / 1e6;
    assert!((usd - priced).abs() < 2e-6, "{usd} for {priced}");
}

/// A successful answer Warden refuses unread in observe (here: coded as `compress`, which
/// it cannot decode to read its usage) was billed by the provider all the same: the call is
/// charged the estimate of an answer never read — its input estimate and its output limit —
/// marked estimated, and its reservation given back.
#[tokio::test]
async fn a_successful_answer_refused_unread_is_charged_an_estimate() {
    use warden_e2e::fake_llm::AnswerEncoding;
    // The estimate below spends it exactly.
    let s = budgeted(CHAT_INPUT_ESTIMATE + 50).await;
    s.fake.encode_answers(Some(AnswerEncoding::Compress));
    let mut body = openai_chat("gpt-4o-mini", false);
    body["max_tokens"] = json!(50);
    let refused = s.post("/openai/chat/completions", &body).await.unwrap();
    assert_eq!(refused.status(), 502);
    let id = request_id(&refused);
    let text = refused.text().await.unwrap();
    assert!(text.contains("response_unreadable"), "{text}");

    let outcome = charged(&s, &id, CHAT_INPUT_ESTIMATE, 50).await;
    assert_eq!(outcome["outcome"]["usage_estimated"], true, "{outcome}");
    assert_eq!(outcome["outcome"]["reserved"]["output_tokens"], json!(50));
    assert_eq!(reserved_tokens(&s).await, 0, "nothing left reserved");
    s.fake.encode_answers(None);
    next_call_denied(&s).await;
}

/// The `research` group may spend `tokens` a day.
fn group_budget(tokens: u64) -> Value {
    json!({"limits": [{"scope": "group", "name": "research", "period": "day", "tokens": tokens}]})
}

/// A stack whose gpt-4o chats wait for an sre approval ([`gpt4o_waits_for_sre`]) and whose
/// `research` group may spend `tokens` a day, with the tokens of two agents of that group
/// (`waiting-bot`, `other-bot`) and alice's TOTP secret.
struct GroupWaits {
    s: Stack,
    waiting: String,
    other: String,
    alice: String,
}

impl GroupWaits {
    /// Starts it, `customize` applied to its setup.
    async fn start(tokens: u64, customize: impl FnOnce(WardenBuilder) -> WardenBuilder) -> Self {
        let s = Stack::start_with(|b| {
            customize(gpt4o_waits_for_sre(b, "60s").set("/budgets", group_budget(tokens)))
        })
        .await
        .unwrap();
        let (waiting, other) = (
            researcher(&s, "waiting-bot").await,
            researcher(&s, "other-bot").await,
        );
        let alice = enrol(&s.warden, "alice").await;
        GroupWaits {
            s,
            waiting,
            other,
            alice,
        }
    }

    /// `waiting-bot`'s gpt-4o chat, held for sre's approval — holding nothing of its group's
    /// budget meanwhile (it has no budget of its own: the reservation taken before its
    /// decision is given back once its approval is open) — while `other-bot` is judged on the
    /// group's whole budget and spends a call of it; then approved by alice: the approval's
    /// id and the held chat's answer.
    async fn approved_once_the_other_spent(&self) -> (String, reqwest::Response) {
        let s = &self.s;
        let held = held_chat(&s.warden, &self.waiting, std::time::Duration::from_secs(70));
        let id = first_pending(&s.warden)
            .await
            .expect("the waiting call's approval");
        until_nothing_reserved(s).await;
        let answer = chat_as(s, &self.other, &openai_chat("gpt-4o-mini", false)).await;
        assert_eq!(answer.status(), 200);
        let spent = answer.text().await.unwrap();
        assert!(!spent.contains("budget is spent"), "{spent}");
        assert_eq!(decided_for(s, "other-bot").await["decision"], "allow");
        assert!(!held.is_finished(), "the held call still waits");
        let out = approve(&s.warden, &id, "alice", &self.alice).await;
        assert!(out.status.success(), "{}", text(&out));
        (id, held.await.unwrap().unwrap())
    }
}

/// Waits (up to 5 s) until the calls in flight reserve nothing.
async fn until_nothing_reserved(s: &Stack) {
    let mut reserved = reserved_tokens(s).await;
    for _ in 0..50 {
        if reserved == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        reserved = reserved_tokens(s).await;
    }
    assert_eq!(
        reserved, 0,
        "the group's budget is not held while the call waits"
    );
}

/// The system record of the approved call of `waiting-bot` refused once judged again, after
/// asserting that the call never reached the provider and nothing is left reserved.
async fn refused_once_approved(s: &Stack) -> Value {
    let record = s
        .audit("system", |r| {
            r["detail"]["event"] == "approved_call_refused_for_budget"
        })
        .await
        .unwrap();
    assert_eq!(record["principal"]["id"], "waiting-bot", "{record}");
    assert!(
        s.fake
            .requests()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("gpt-4o\"")),
        "the refused call never reached the provider"
    );
    assert_eq!(reserved_tokens(s).await, 0, "nothing left reserved");
    record
}

/// A call held for approval holds its reservation on its agent's own budgets only: while it
/// waits, the other agents of its group are judged without it. Approved once the group's
/// budget was spent meanwhile, it is judged again on what is left: denied by the budget
/// rule, recorded so, and never sent.
#[tokio::test]
async fn a_call_awaiting_approval_holds_no_group_budget_and_is_refused_if_the_group_ran_out() {
    use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
    // One call of the other agent spends the group's day.
    let g = GroupWaits::start(PROMPT_TOKENS + COMPLETION_TOKENS, |b| {
        b.policy("budgets.cedar", &example_budget_rule())
    })
    .await;
    // Approved: judged again on what the group has left, nothing, and refused.
    let (_, refused) = g.approved_once_the_other_spent().await;
    let body = refused.text().await.unwrap();
    assert!(body.contains("budget is spent"), "says why: {body}");
    let record = refused_once_approved(&g.s).await;
    assert_eq!(
        record["policies"],
        json!(["budget-exceeded-deny"]),
        "{record}"
    );
    assert_eq!(record["detail"]["decision"], "deny", "{record}");
    assert_eq!(record["detail"]["budget"]["exceeded"], true, "{record}");
}

/// Past half its group's budget, a gpt-4o call needs two approvers of `finance` (a two-person
/// rule: where it matches, it decides over the one sre approval `gpt4o-needs-sre` asks for).
const HALF_SPENT_NEEDS_FINANCE: &str = "@id(\"half-spent-needs-finance\")\n\
    @reason(\"half the group's budget is spent\")\n@approval(\"required\")\n@approvals(\"2\")\n\
    @approvers(\"Group::\\\"finance\\\"\")\n\
    permit (principal, action == Action::\"llm:chat\", resource == Model::\"openai/gpt-4o\")\n\
    when { context has budget && context.budget.used_ratio_percent >= 50 };\n";

/// A call approved under one policy (sre's) and judged again once approved, on what its group
/// has left then, needs an approval under another (finance's, past half the group's budget):
/// the approval it has does not stand for that one, so it is refused (403
/// `another_approval_required`, saying to send it again to ask for that approval), recorded,
/// and never sent.
#[tokio::test]
async fn an_approved_call_that_now_needs_another_policys_approval_is_refused_not_sent() {
    use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
    // One call of the other agent spends half the group's day. Policy refusals are answered
    // as errors (`on_deny: http_error`), not as a well-formed completion (a 200).
    let g = GroupWaits::start(2 * (PROMPT_TOKENS + COMPLETION_TOKENS), |b| {
        b.policy("half-spent-needs-finance.cedar", HALF_SPENT_NEEDS_FINANCE)
            .set("/routes/0/on_deny", json!("http_error"))
    })
    .await;
    // Approved under sre's policy; judged again, it needs finance's approval now.
    let (id, refused) = g.approved_once_the_other_spent().await;
    let decided = decided_for(&g.s, "waiting-bot").await;
    assert_eq!(decided["policies"], json!(["gpt4o-needs-sre"]), "{decided}");
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.headers()["x-warden-error"],
        "another_approval_required"
    );
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("half-spent-needs-finance")
            && body.contains("send the same request again to ask for that approval"),
        "says why and what to do: {body}"
    );
    let record = refused_once_approved(&g.s).await;
    assert_eq!(
        record["policies"],
        json!(["half-spent-needs-finance"]),
        "{record}"
    );
    assert_eq!(
        record["detail"]["decision"], "approval_required",
        "{record}"
    );
    assert_eq!(record["detail"]["approval_id"], id.as_str(), "{record}");
    assert_eq!(
        record["detail"]["approved_under"], "gpt4o-needs-sre",
        "{record}"
    );
}
