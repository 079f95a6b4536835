//! The official OpenAI SDK through Warden: chat (whole, streamed, with tool-call deltas),
//! Responses API, embeddings, models. Warden strips the agent's token, injects the provider
//! key, and records decision and usage.

use serde_json::{Value, json};
use warden_e2e::fake_llm::{self, COMPLETION_TOKENS, PROMPT_TOKENS};
use warden_e2e::sdk;
use warden_e2e::stack::{AGENT, Stack, openai_chat};
use warden_e2e::warden::OPENAI_KEY;

/// What the official OpenAI SDK (`openai_chat.py`) reports of `args`, run with base URL `base`
/// and the stack's agent token.
async fn openai_sdk(s: &Stack, base: &str, args: &[&str]) -> Value {
    sdk::run("openai_chat.py", base, &s.token, args)
        .await
        .unwrap()
}

/// Asserts that the SDK's `out` of mode `mode` read the fake LLM's whole text as its `field`.
#[track_caller]
fn assert_whole_text(out: &Value, mode: &str, field: &str) {
    assert_eq!(out[mode][field], json!(fake_llm::full_text()), "{out}");
}

#[tokio::test]
async fn openai_sdk_chat_whole_streamed_and_tool_call_deltas_pass_through_unchanged() {
    let s = Stack::start().await.unwrap();
    let out = openai_sdk(
        &s,
        &s.openai_base(),
        &["chat", "stream", "tools", "tools-stream"],
    )
    .await;

    let chat = &out["chat"];
    assert_whole_text(&out, "chat", "content");
    assert_eq!(chat["finish_reason"], "stop");
    assert_eq!(chat["usage"]["prompt_tokens"], json!(PROMPT_TOKENS));

    let stream = &out["stream"];
    assert_whole_text(&out, "stream", "content");
    assert_eq!(stream["finish_reason"], "stop");
    assert_eq!(
        stream["usage"]["completion_tokens"],
        json!(COMPLETION_TOKENS),
        "final usage chunk passes through"
    );
    assert!(
        stream["chunks"].as_u64().unwrap() >= 11,
        "role, 9 content deltas, finish: {stream}"
    );

    let tools = &out["tools"];
    assert_eq!(tools["finish_reason"], "tool_calls", "{out}");
    assert_eq!(
        tools["tool_calls"][0]["arguments"],
        json!({"location": "Paris", "unit": "celsius"})
    );

    let deltas = &out["tools-stream"];
    assert_eq!(deltas["finish_reason"], "tool_calls", "{out}");
    assert_eq!(deltas["tool_calls"][0]["name"], "get_weather");
    assert_eq!(
        deltas["tool_calls"][0]["arguments"],
        json!({"location": "Paris", "unit": "celsius"})
    );
    assert!(
        deltas["argument_fragments"].as_u64().unwrap() >= 4,
        "argument fragments arrive apart: {deltas}"
    );

    let upstream = s.upstream_requests(4).await;
    assert_eq!(upstream.len(), 4);
    for r in &upstream {
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.json()["model"], "gpt-4o-mini");
    }
    let streamed = upstream
        .iter()
        .find(|r| r.json()["stream"] == true)
        .unwrap();
    assert_eq!(
        streamed.json()["stream_options"]["include_usage"],
        true,
        "the request body is forwarded as sent"
    );
}

#[tokio::test]
async fn agent_token_is_stripped_and_openai_provider_key_injected() {
    let s = Stack::start().await.unwrap();
    let out = openai_sdk(&s, &s.openai_base(), &["chat"]).await;
    assert_whole_text(&out, "chat", "content");

    let upstream = s.upstream_requests(1).await;
    let forwarded = upstream.last().unwrap();
    assert_eq!(
        forwarded.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert!(
        !forwarded.contains(&s.token),
        "the agent's token must never reach the provider"
    );
    assert_eq!(
        forwarded
            .header("user-agent")
            .map(|u| u.starts_with("OpenAI/Python")),
        Some(true),
        "end-to-end headers pass"
    );
}

/// An SDK given `…/openai/v1` as its base URL (the provider's own base URL ends in `/v1`, so
/// users copy it) reaches the provider's `/v1/chat/completions`, not `/v1/v1/…`, which no
/// OpenAI-compatible server has.
#[tokio::test]
async fn a_base_url_ending_in_v1_reaches_the_upstream_once_under_v1() {
    let s = Stack::start().await.unwrap();
    let base = format!("{}/v1", s.openai_base());
    let out = openai_sdk(&s, &base, &["chat", "models"]).await;
    assert_whole_text(&out, "chat", "content");
    let upstream = s.upstream_requests(2).await;
    let paths: Vec<&str> = upstream.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/v1/chat/completions", "/v1/models"], "{out}");
}

#[tokio::test]
async fn allowed_chat_is_audited_with_principal_decision_and_usage() {
    let s = Stack::start().await.unwrap();
    let out = openai_sdk(&s, &s.openai_base(), &["stream", "chat"]).await;
    assert_whole_text(&out, "stream", "content");

    let decision = s
        .audit("decision", |r| r["action"] == "llm:chat")
        .await
        .unwrap();
    assert_eq!(decision["principal"]["id"], AGENT);
    assert_eq!(decision["decision"], "allow");
    assert!(
        decision["resource"]
            .as_str()
            .unwrap()
            .contains("openai/gpt-4o-mini"),
        "{decision}"
    );
    assert_eq!(decision["route"], "openai");

    let outcome = s
        .audit("outcome", |r| r["outcome"]["output_tokens"].is_u64())
        .await
        .unwrap();
    assert_eq!(outcome["outcome"]["status"], 200);
    assert_eq!(
        outcome["outcome"]["input_tokens"],
        json!(PROMPT_TOKENS),
        "usage read from the stream's last chunk"
    );
    assert_eq!(
        outcome["outcome"]["output_tokens"],
        json!(COMPLETION_TOKENS)
    );
    assert_eq!(outcome["decision_id"], decision["decision_id"]);

    // Both exchanges ran to their end, the whole one (content-length) and the stream: their
    // outcomes carry usage and no error.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let outcomes: Vec<_> = s
            .warden
            .audit_records()
            .into_iter()
            .filter(|r| r["kind"] == "outcome")
            .collect();
        if outcomes.len() >= 2 {
            for o in &outcomes {
                assert!(o["outcome"]["error"].is_null(), "{o}");
                assert_eq!(
                    o["outcome"]["output_tokens"],
                    json!(COMPLETION_TOKENS),
                    "{o}"
                );
            }
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{outcomes:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn openai_sdk_embeddings_models_and_responses_pass_through() {
    let s = Stack::start().await.unwrap();
    let out = openai_sdk(
        &s,
        &s.openai_base(),
        &["models", "responses", "responses-stream"],
    )
    .await;
    let ids = out["models"]["ids"].as_array().cloned().unwrap_or_default();
    assert!(ids.contains(&json!("gpt-4o-mini")), "{out}");
    assert_whole_text(&out, "responses", "text");
    assert_whole_text(&out, "responses-stream", "text");
    assert_eq!(
        out["responses-stream"]["deltas"],
        json!(fake_llm::TEXT_CHUNKS.len())
    );
    assert_eq!(
        out["responses-stream"]["usage"]["output_tokens"],
        json!(COMPLETION_TOKENS)
    );

    let emb = openai_sdk(
        &s,
        &s.openai_base(),
        &["embeddings", "--model", "text-embedding-3-small"],
    )
    .await;
    assert_eq!(emb["embeddings"]["count"], 2, "{emb}");
    assert_eq!(emb["embeddings"]["dimensions"], 8);

    let paths: Vec<String> = s
        .upstream_requests(4)
        .await
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(paths.contains(&"/v1/models".to_owned()), "{paths:?}");
    assert!(paths.contains(&"/v1/responses".to_owned()), "{paths:?}");
    assert!(paths.contains(&"/v1/embeddings".to_owned()), "{paths:?}");
    let embed = s
        .audit("decision", |r| r["action"] == "llm:embed")
        .await
        .unwrap();
    assert!(
        embed["resource"]
            .as_str()
            .unwrap()
            .contains("text-embedding-3-small"),
        "{embed}"
    );
}

#[tokio::test]
async fn provider_key_is_read_from_a_file_and_reread_on_reload() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("openai-key");
    std::fs::write(&key_file, format!("{OPENAI_KEY}\n")).unwrap();
    let s = Stack::start_with(|b| {
        b.set(
            "/routes/0/credential",
            json!({ "file": key_file.to_str().unwrap() }),
        )
        .env("FAKE_OPENAI_KEY", "")
    })
    .await
    .unwrap();
    let body = openai_chat("gpt-4o-mini", false);
    let chat = || s.post("/openai/chat/completions", &body);
    assert_eq!(chat().await.unwrap().status(), 200);
    let forwarded = s.upstream_requests(1).await.pop().unwrap();
    assert_eq!(
        forwarded.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str()),
        "the file's content, trimmed"
    );

    let rotated = "sk-fake-openai-rotated-key";
    std::fs::write(&key_file, rotated).unwrap();
    s.warden.signal(libc::SIGHUP).unwrap();
    s.audit("system", |r| r["detail"]["result"] == "applied")
        .await
        .unwrap();
    let _ = chat().await.unwrap();
    let forwarded = s.upstream_requests(2).await.pop().unwrap();
    assert_eq!(
        forwarded.header("authorization"),
        Some(format!("Bearer {rotated}").as_str())
    );
}
