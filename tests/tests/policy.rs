//! Cedar decisions as agents see them: a denied model is refused with a well-formed
//! completion that ends the turn normally, so the official SDKs and their helpers hand the
//! policy's reason to the person behind the agent (OpenAI `stop`, Responses `completed`,
//! Anthropic `end_turn`); with `refusal_finish: content_filter` the provider's marking returns;
//! with `on_deny: http_error` a 403 in the provider's shape. Model names that could hide from a
//! policy are refused or judged as what they look like.

use serde_json::{Value, json};
use warden_e2e::fake_llm;
use warden_e2e::sdk;
use warden_e2e::stack::{Stack, openai_chat};

const REASON: &str = "gpt-4.1 is not approved for e2e agents";

const FORBID_GPT41: &str = r#"
@id("e2e-forbid-gpt41")
@reason("gpt-4.1 is not approved for e2e agents")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1");

@id("e2e-forbid-opus")
@reason("claude-opus-4-1 is reserved for humans")
forbid (principal, action == Action::"llm:chat", resource == Model::"anthropic/claude-opus-4-1");
"#;

#[tokio::test]
async fn denied_model_is_refused_with_a_completion_the_openai_sdk_and_its_helpers_show() {
    let s = Stack::start_with(|b| b.policy("e2e-forbid.cedar", FORBID_GPT41))
        .await
        .unwrap();
    let out = sdk::run(
        "openai_chat.py",
        &s.openai_base(),
        &s.token,
        &[
            "chat",
            "stream",
            "chat-stream-helper",
            "chat-parse",
            "responses-stream-helper",
            "responses",
            "--model",
            "gpt-4.1",
        ],
    )
    .await
    .unwrap();

    let decision = s
        .audit("decision", |r| r["decision"] == "deny")
        .await
        .unwrap();
    let decision_id = decision["decision_id"].as_str().unwrap();
    assert!(
        decision["reasons"].to_string().contains(REASON),
        "{decision}"
    );
    assert!(
        decision["policies"]
            .to_string()
            .contains("e2e-forbid-gpt41"),
        "{decision}"
    );
    assert_eq!(decision["principal"]["id"], "e2e-agent");

    let chat = &out["chat"];
    assert_eq!(
        chat["finish_reason"], "stop",
        "the refusal ends the turn: {out}"
    );
    let text = chat["content"].as_str().unwrap();
    assert!(text.contains(REASON), "the refusal explains itself: {text}");
    assert!(
        text.contains(decision_id),
        "the refusal names its decision id: {text}"
    );
    assert_eq!(chat["headers"]["x-warden-decision"], "deny");

    let stream = &out["stream"];
    assert_eq!(
        stream["finish_reason"], "stop",
        "a streamed request gets a streamed refusal: {out}"
    );
    assert!(
        stream["content"].as_str().unwrap().contains(REASON),
        "{out}"
    );

    // The SDK's helpers raise ContentFilterFinishReasonError on a content_filter finish; on
    // Warden's refusal they hand over the reason as the assistant's answer.
    let helper = &out["chat-stream-helper"];
    assert!(helper.get("error").is_none(), "no exception: {out}");
    assert_eq!(helper["finish_reason"], "stop", "{out}");
    assert!(helper["text"].as_str().unwrap().contains(REASON), "{out}");
    assert_eq!(helper["content"], helper["text"], "{out}");
    let parsed = &out["chat-parse"];
    assert!(parsed.get("error").is_none(), "no exception: {out}");
    assert_eq!(parsed["finish_reason"], "stop", "{out}");
    assert!(
        parsed["content"].as_str().unwrap().contains(REASON),
        "{out}"
    );
    assert_eq!(parsed["headers"]["x-warden-decision"], "deny");
    for mode in ["responses-stream-helper", "responses"] {
        let response = &out[mode];
        assert!(response.get("error").is_none(), "no exception: {out}");
        assert_eq!(response["status"], "completed", "{mode}: {out}");
        assert!(
            response["text"].as_str().unwrap().contains(REASON),
            "{mode}: {out}"
        );
    }

    assert!(
        s.fake.requests().is_empty(),
        "a denied request never reaches the provider"
    );
}

#[tokio::test]
async fn denied_model_is_refused_with_a_message_that_ends_the_turn_for_the_anthropic_sdk() {
    let s = Stack::start_with(|b| b.policy("e2e-forbid.cedar", FORBID_GPT41))
        .await
        .unwrap();
    let out = sdk::run(
        "anthropic_messages.py",
        &s.anthropic_base(),
        &s.token,
        &["message", "stream", "--model", "claude-opus-4-1"],
    )
    .await
    .unwrap();
    let message = &out["message"];
    assert_eq!(message["stop_reason"], "end_turn", "{out}");
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains("claude-opus-4-1 is reserved for humans"),
        "{out}"
    );
    assert_eq!(message["headers"]["x-warden-decision"], "deny");
    // `messages.stream()` and `get_final_message()`, the helper agents build on.
    let stream = &out["stream"];
    assert!(stream.get("error").is_none(), "no exception: {out}");
    assert_eq!(stream["stop_reason"], "end_turn", "{out}");
    assert!(
        stream["text"]
            .as_str()
            .unwrap()
            .contains("reserved for humans"),
        "{out}"
    );
    assert_eq!(stream["final_text"], stream["text"], "{out}");
    assert_eq!(stream["headers"]["x-warden-decision"], "deny");
    assert!(s.fake.requests().is_empty());

    let allowed = sdk::run(
        "anthropic_messages.py",
        &s.anthropic_base(),
        &s.token,
        &["message"],
    )
    .await
    .unwrap();
    assert_eq!(
        allowed["message"]["text"],
        json!(fake_llm::full_text()),
        "other models still pass: {allowed}"
    );
}

#[tokio::test]
async fn on_deny_http_error_answers_403_in_the_provider_error_shape() {
    let s = Stack::start_with(|b| {
        b.policy("e2e-forbid.cedar", FORBID_GPT41)
            .set("/routes/0/on_deny", json!("http_error"))
    })
    .await
    .unwrap();
    let response = s
        .post("/openai/chat/completions", &openai_chat("gpt-4.1", false))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-warden-decision"], "deny");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains(REASON),
        "{body}"
    );

    let out = sdk::run(
        "openai_chat.py",
        &s.openai_base(),
        &s.token,
        &["chat", "--model", "gpt-4.1"],
    )
    .await
    .unwrap();
    assert_eq!(out["chat"]["error"]["status"], 403, "{out}");
    assert_eq!(out["chat"]["error"]["class"], "PermissionDeniedError");
    assert!(s.fake.requests().is_empty());
}

#[tokio::test]
async fn without_a_permit_every_request_is_denied_by_default() {
    let s = Stack::start_with(|b| b.without_policy("e2e-permit-all.cedar"))
        .await
        .unwrap();
    let response = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-warden-decision"], "deny");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    let record = s
        .audit("decision", |r| r["decision"] == "deny")
        .await
        .unwrap();
    assert!(
        record["policies"].as_array().is_none_or(Vec::is_empty),
        "default deny names no policy: {record}"
    );
    assert!(s.fake.requests().is_empty());
}

#[tokio::test]
async fn refusal_finish_content_filter_brings_back_the_marking_and_the_openai_helpers_raise() {
    let s = Stack::start_with(|b| {
        b.policy("e2e-forbid.cedar", FORBID_GPT41)
            .set("/routes/0/refusal_finish", json!("content_filter"))
            .set("/routes/1/refusal_finish", json!("content_filter"))
    })
    .await
    .unwrap();
    let out = sdk::run(
        "openai_chat.py",
        &s.openai_base(),
        &s.token,
        &[
            "chat",
            "stream",
            "chat-stream-helper",
            "chat-parse",
            "responses",
            "--model",
            "gpt-4.1",
        ],
    )
    .await
    .unwrap();
    assert_eq!(out["chat"]["finish_reason"], "content_filter", "{out}");
    assert!(out["chat"]["content"].as_str().unwrap().contains(REASON));
    assert_eq!(out["chat"]["headers"]["x-warden-decision"], "deny");
    assert_eq!(out["stream"]["finish_reason"], "content_filter", "{out}");
    assert_eq!(out["responses"]["status"], "incomplete", "{out}");
    // What the default avoids: the helpers raise and the text never reaches the user.
    for mode in ["chat-stream-helper", "chat-parse"] {
        assert_eq!(
            out[mode]["error"]["class"], "ContentFilterFinishReasonError",
            "{mode}: {out}"
        );
    }

    let out = sdk::run(
        "anthropic_messages.py",
        &s.anthropic_base(),
        &s.token,
        &["message", "stream", "--model", "claude-opus-4-1"],
    )
    .await
    .unwrap();
    assert_eq!(out["message"]["stop_reason"], "refusal", "{out}");
    assert_eq!(out["stream"]["stop_reason"], "refusal", "{out}");
    assert!(s.fake.requests().is_empty());
}

const FORBID_DENIED_MODEL: &str = r#"
@id("e2e-forbid-denied-model")
@reason("denied-model is forbidden")
forbid (principal, action, resource == Model::"openai/denied-model");
"#;

#[tokio::test]
async fn model_names_cannot_slip_past_a_forbid_with_nul_bidi_or_look_alike_characters() {
    let s = Stack::start_with(|b| b.policy("e2e-forbid-denied.cedar", FORBID_DENIED_MODEL))
        .await
        .unwrap();
    for (sent, what) in [
        ("denied-model\u{0}", "NUL"),
        ("denied-model\u{202e}", "right-to-left override"),
        ("denied\u{2066}-model", "left-to-right isolate"),
        ("denied-\u{200b}model", "zero-width space"),
    ] {
        let response = s
            .post("/openai/chat/completions", &openai_chat(sent, false))
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{what}");
        assert_eq!(response.headers()["x-warden-error"], "invalid_identifier");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("\"model\" field is not a valid name"),
            "{what}: {message}"
        );
        assert!(
            !message.contains("denied"),
            "the value is not echoed: {message}"
        );
    }
    // Cyrillic е, Greek ο, fullwidth letters: judged as the name they imitate.
    for sent in [
        "d\u{0435}nied-model",
        "denied-m\u{03bf}del",
        "\u{ff44}\u{ff45}\u{ff4e}\u{ff49}\u{ff45}\u{ff44}-model",
    ] {
        let response = s
            .post("/openai/chat/completions", &openai_chat(sent, false))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{sent}");
        assert_eq!(response.headers()["x-warden-decision"], "deny", "{sent}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .contains("denied-model is forbidden"),
            "{body}"
        );
    }
    let record = s
        .audit("decision", |r| r["decision"] == "deny")
        .await
        .unwrap();
    assert_eq!(
        record["resource"], r#"Model::"openai/denied-model""#,
        "{record}"
    );
    let rejected = s
        .audit("rejected", |r| {
            r["reasons"].to_string().contains("not a valid name")
        })
        .await
        .unwrap();
    assert!(
        !rejected["reasons"].to_string().contains("denied"),
        "the record does not echo the value either: {rejected}"
    );
    assert!(s.fake.requests().is_empty(), "none reached the provider");

    let allowed = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert!(allowed.headers().get("x-warden-decision").is_none());
}
