//! Requests Warden cannot or must not serve: each gets a clear error in the provider's own
//! shape and an audit record; upstream errors pass through unchanged.

use serde_json::{Value, json};
use std::time::Duration;
use warden_e2e::fake_llm::{Failure, FakeLlm};
use warden_e2e::sdk;
use warden_e2e::stack::{AGENT, Stack, openai_chat, send_chat, send_message};
use warden_e2e::warden::{ClosedPort, Warden, WardenBuilder};

#[tokio::test]
async fn malformed_json_is_refused_with_400_and_audited() {
    let s = Stack::start().await.unwrap();
    let response = s
        .warden
        .http()
        .post(s.warden.url("/openai/chat/completions"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(r#"{"model": "gpt-4o-mini", "messages": [ "#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("JSON"),
        "{body}"
    );
    let record = s.audit("rejected", |_| true).await.unwrap();
    assert_eq!(record["principal"]["id"], AGENT);
    assert!(record["reasons"].to_string().contains("JSON"), "{record}");
    assert!(s.fake.requests().is_empty());
}

#[tokio::test]
async fn keys_that_differ_only_by_case_are_refused_with_400_and_never_sent() {
    let s = Stack::start().await.unwrap();
    let hi = json!([{"role": "user", "content": "hi"}]);
    // A case-insensitive upstream (Go's encoding/json: Ollama) takes one `model` for the
    // other, Warden would have judged the other. Likewise an output cap given twice.
    for body in [
        json!({"model": "gpt-4o-mini", "messages": hi, "Model": "gpt-4o"}),
        json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": hi, "MAX_TOKENS": 100000}),
    ] {
        let response = s.post("/openai/chat/completions", &body).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(response.headers()["x-warden-error"], "ambiguous_keys");
        let answer: Value = response.json().await.unwrap();
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("differ only by case"), "{answer}");
    }
    let record = s.audit("rejected", |_| true).await.unwrap();
    let reasons = record["reasons"].to_string();
    assert!(
        reasons.contains("Model") && reasons.contains("differ only by case"),
        "{record}"
    );
    assert!(s.fake.requests().is_empty());
}

#[tokio::test]
async fn a_background_response_is_refused_as_one_no_budget_could_reach() {
    let s = Stack::start().await.unwrap();
    // Generated after the request ends, fetched later: beyond budgets and inspection.
    let background = json!({"model": "gpt-4o-mini", "input": "hi", "background": true});
    let response = s.post("/openai/responses", &background).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-warden-error"], "unsupported_option");
    let answer: Value = response.json().await.unwrap();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("background"), "{answer}");
    let record = s.audit("rejected", |_| true).await.unwrap();
    assert!(
        record["reasons"].to_string().contains("background"),
        "{record}"
    );
    assert!(s.fake.requests().is_empty());
}

#[tokio::test]
async fn oversized_body_is_refused_with_413_and_audited() {
    let s = Stack::start_with(|b| b.set("/limits/max_request_bytes", json!(4096)))
        .await
        .unwrap();
    let mut body = openai_chat("gpt-4o-mini", false);
    body["messages"][0]["content"] = json!("x".repeat(10_000));
    let response = s.post("/openai/chat/completions", &body).await.unwrap();
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"].as_str().unwrap().contains("4096"),
        "names the limit: {error}"
    );
    let record = s.audit("rejected", |_| true).await.unwrap();
    assert!(
        record["reasons"].to_string().contains("max_request_bytes"),
        "{record}"
    );
    assert!(s.fake.requests().is_empty());

    let small = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(small.status(), 200, "bodies under the limit pass");
}

#[tokio::test]
async fn default_body_limit_admits_openclaw_sized_requests() {
    let s = Stack::start().await.unwrap();
    let mut body = openai_chat("gpt-4o-mini", true);
    // An OpenClaw turn: ~26 KB system prompt, dozens of tools, ~97 KB in all.
    body["messages"] = json!([
        {"role": "system", "content": "s".repeat(26_000)},
        {"role": "user", "content": "u".repeat(40_000)}
    ]);
    body["tools"] = json!(
        (0..39)
            .map(|i| json!({"type": "function", "function": {
        "name": format!("tool_{i}"), "description": "d".repeat(600),
        "parameters": {"type": "object", "properties": {}}}}))
            .collect::<Vec<_>>()
    );
    let response = s.post("/openai/chat/completions", &body).await.unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.text().await.unwrap();
    let forwarded = s.upstream_requests(1).await.pop().unwrap();
    assert!(
        forwarded.body.len() > 90_000,
        "forwarded whole: {} bytes",
        forwarded.body.len()
    );
}

/// Warden whose every route's upstream is a port nothing listens on (kept closed by the
/// first), and an agent's token.
async fn upstream_down() -> (ClosedPort, Warden, String) {
    let closed = ClosedPort::new().unwrap();
    let warden = WardenBuilder::with_upstream_url(&closed.url())
        .start()
        .await
        .unwrap();
    let token = warden.token(AGENT).await.unwrap();
    (closed, warden, token)
}

#[tokio::test]
async fn upstream_down_answers_502_in_each_provider_shape_and_is_audited() {
    let (_closed, warden, token) = upstream_down().await;

    let openai = send_chat(&warden, &token).await;
    assert_eq!(openai.status(), 502);
    let body: Value = openai.json().await.unwrap();
    assert!(
        body["error"]["message"].is_string(),
        "OpenAI error shape: {body}"
    );

    let anthropic = send_message(&warden, &token).await;
    assert_eq!(anthropic.status(), 502);
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["type"], "error", "Anthropic error shape: {body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    let record = warden
        .wait_for_audit(Duration::from_secs(10), |r| r["outcome"]["status"] == 502)
        .await
        .unwrap();
    assert!(
        record["outcome"]["error"].is_string(),
        "the record says what failed: {record}"
    );
}

#[tokio::test]
async fn upstream_429_passes_through_unchanged() {
    let s = Stack::start().await.unwrap();
    s.fake.fail_with(Failure::rate_limited());
    let response = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "0");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): Limit 3, Used 3, Requested 1.",
                         "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
        "the provider's body, byte for byte in meaning"
    );

    let out = sdk::run("openai_chat.py", &s.openai_base(), &s.token, &["chat"])
        .await
        .unwrap();
    assert_eq!(out["chat"]["error"]["status"], 429, "{out}");
    assert_eq!(out["chat"]["error"]["class"], "RateLimitError");
    assert_eq!(s.fake.requests().len(), 2, "no retries by Warden");
    let record = s
        .audit("outcome", |r| r["outcome"]["status"] == 429)
        .await
        .unwrap();
    assert_eq!(record["principal"]["id"], AGENT);
}

#[tokio::test]
async fn unknown_route_is_404() {
    let fake = FakeLlm::start().await.unwrap();
    let warden = WardenBuilder::new(&fake).start().await.unwrap();
    let token = warden.token(AGENT).await.unwrap();
    let response = warden
        .http()
        .post(warden.url("/nowhere/v1/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn default_body_limit_admits_a_ten_mib_request() {
    let s = Stack::start().await.unwrap();
    let mut body = openai_chat("gpt-4o-mini", false);
    body["messages"][0]["content"] = json!("p".repeat(10 * 1024 * 1024));
    // 10 MiB read by every detector of a debug build: on a loaded 2-core machine that can
    // take longer than the client's default 30 s, so this one request has its own bound.
    let response = s
        .warden
        .http()
        .post(s.warden.url("/openai/chat/completions"))
        .bearer_auth(&s.token)
        .timeout(std::time::Duration::from_secs(180))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = response.text().await.unwrap();
    let forwarded = s.upstream_requests(1).await.pop().unwrap();
    assert!(
        forwarded.body.len() > 10 * 1024 * 1024,
        "forwarded whole: {} bytes",
        forwarded.body.len()
    );
}

#[tokio::test]
async fn upstream_down_answers_502_in_gemini_shape() {
    let (_closed, warden, token) = upstream_down().await;
    let response = warden
        .http()
        .post(warden.url("/gemini/v1beta/models/gemini-2.0-flash:generateContent"))
        .header("x-goog-api-key", &token)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], 502, "Gemini error shape: {body}");
    assert!(body["error"]["status"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["route"] == "gemini" && r["outcome"]["status"] == 502
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn upstream_failures_are_logged_with_request_id_and_principal() {
    let (_closed, warden, token) = upstream_down().await;
    let response = send_chat(&warden, &token).await;
    assert_eq!(response.status(), 502);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = warden
            .output()
            .lines()
            .filter_map(|l| {
                let json = l.split_once("] ").map_or(l, |(_, rest)| rest);
                serde_json::from_str::<Value>(json).ok()
            })
            .find(|l| l.to_string().contains(&request_id));
        if let Some(line) = found {
            break line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line names request {request_id}:\n{}",
            warden.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = line.to_string();
    assert_eq!(line["level"], "WARN", "{text}");
    assert!(text.contains(AGENT), "names the principal: {text}");
    assert!(text.contains("502"), "names the status: {text}");
}
