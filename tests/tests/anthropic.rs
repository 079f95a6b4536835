//! The official Anthropic SDK through Warden: messages whole and streamed (the full event
//! sequence, tool_use with input_json_delta), provider key injected as `x-api-key`.

use serde_json::json;
use warden_e2e::fake_llm::{self, COMPLETION_TOKENS, PROMPT_TOKENS};
use warden_e2e::sdk;
use warden_e2e::stack::{AGENT, Stack};
use warden_e2e::warden::ANTHROPIC_KEY;

#[tokio::test]
async fn anthropic_sdk_messages_whole_streamed_and_tool_use_pass_through() {
    let s = Stack::start().await.unwrap();
    let out = sdk::run(
        "anthropic_messages.py",
        &s.anthropic_base(),
        &s.token,
        &["message", "stream", "tools-stream"],
    )
    .await
    .unwrap();

    let message = &out["message"];
    assert_eq!(message["text"], json!(fake_llm::full_text()), "{out}");
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(
        message["usage"],
        json!({"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS})
    );

    let stream = &out["stream"];
    assert_eq!(stream["text"], json!(fake_llm::full_text()), "{out}");
    assert_eq!(
        stream["deltas"],
        json!(fake_llm::TEXT_CHUNKS.len()),
        "text deltas arrive one by one"
    );
    assert_eq!(
        stream["usage"],
        json!({"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS})
    );

    let tools = &out["tools-stream"];
    assert_eq!(tools["stop_reason"], "tool_use", "{out}");
    assert_eq!(tools["tool_uses"][0]["name"], "get_weather");
    assert_eq!(
        tools["tool_uses"][0]["input"],
        json!({"location": "Paris", "unit": "celsius"})
    );
    assert!(tools["input_json_deltas"].as_u64().unwrap() >= 4, "{tools}");

    let outcome = s
        .audit("outcome", |r| {
            r["outcome"]["output_tokens"].is_u64() && r["route"] == "anthropic"
        })
        .await
        .unwrap();
    assert_eq!(
        outcome["outcome"]["input_tokens"],
        json!(PROMPT_TOKENS),
        "from message_start"
    );
    assert_eq!(
        outcome["outcome"]["output_tokens"],
        json!(COMPLETION_TOKENS),
        "from message_delta"
    );
    assert_eq!(outcome["principal"]["id"], AGENT);
}

#[tokio::test]
async fn agent_token_is_stripped_and_anthropic_key_injected_as_x_api_key() {
    let s = Stack::start().await.unwrap();
    let out = sdk::run(
        "anthropic_messages.py",
        &s.anthropic_base(),
        &s.token,
        &["message"],
    )
    .await
    .unwrap();
    assert_eq!(
        out["message"]["text"],
        json!(fake_llm::full_text()),
        "{out}"
    );

    let forwarded = s.upstream_requests(1).await.pop().unwrap();
    assert_eq!(forwarded.path, "/v1/messages");
    assert_eq!(forwarded.header("x-api-key"), Some(ANTHROPIC_KEY));
    assert!(
        forwarded.header("anthropic-version").is_some(),
        "anthropic-version passes through"
    );
    assert!(
        !forwarded.contains(&s.token),
        "the agent's token must never reach the provider"
    );
    let system = &forwarded.json()["system"];
    assert_eq!(
        system[0]["cache_control"]["type"], "ephemeral",
        "body forwarded as sent: {system}"
    );
}
