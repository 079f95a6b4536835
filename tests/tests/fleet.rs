//! Fleet controls through the real binary: rate and concurrency limits answered as each
//! provider answers its own (429 with `retry-after` in its error shape; a JSON-RPC error for
//! MCP), or as a well-formed refusal where configured.

use serde_json::{Value, json};
use warden_e2e::mcp;
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
    let s = Stack::start_with(|b| {
        b.set(
            "/budgets",
            json!({"limits": [{"scope": "agent", "name": "*", "period": "day", "tokens": 2 * per_call}]}),
        )
        .policy("budgets.cedar", &example_budget_rule())
    })
    .await
    .unwrap();
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

    let denied = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", true),
        )
        .await
        .unwrap();
    // A deny of a streamed call is answered as the provider would end a turn (200), with
    // the reason; the decision record says which policy denied.
    let body = denied.text().await.unwrap();
    assert!(body.contains("budget is spent"), "says why: {body}");
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
