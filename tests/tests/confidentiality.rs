//! What Warden writes down about a request never includes a secret, a token or the prompt:
//! not in the audit log, not in its own logs (at debug, with the access log on). Prompts reach
//! the audit log only when `audit.record_content` says so.

use serde_json::{Value, json};
use std::time::Duration;
use warden_e2e::stack::{Stack, anthropic_messages, openai_chat};
use warden_e2e::warden::{ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY, WardenBuilder};

/// Text that must never be written down unless content recording is on.
const PROMPT: &str = "PROMPT-CANARY-7f3a the quarterly numbers are in /srv/finance";
/// Part of the completion the fake upstream answers with.
const COMPLETION: &str = "answers in several chunks";
/// A credential an agent sends that Warden does not accept.
const FORGED: &str = "sk-agent-forged-canary-91c2";

const FORBID_41: &str = r#"
@id("e2e-forbid-gpt41")
@reason("gpt-4.1 is not for this fleet")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1");
"#;

fn with_prompt(mut body: Value) -> Value {
    body["messages"][0]["content"] = json!(PROMPT);
    body
}

fn verbose(b: WardenBuilder) -> WardenBuilder {
    b.set("/log/level", json!("debug"))
        .set("/log/access", json!(true))
        .policy("e2e-forbid-41.cedar", FORBID_41)
}

/// Sends every kind of request whose record or log line could carry a secret or the prompt:
/// allowed (whole and streamed), denied, malformed, bad credential, each provider's header.
async fn send_everything(s: &Stack) {
    let allowed = s
        .post(
            "/openai/chat/completions",
            &with_prompt(openai_chat("gpt-4o-mini", false)),
        )
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    allowed.text().await.unwrap();
    let streamed = s
        .post(
            "/openai/chat/completions",
            &with_prompt(openai_chat("gpt-4o-mini", true)),
        )
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    streamed.text().await.unwrap();
    let denied = s
        .post(
            "/openai/chat/completions",
            &with_prompt(openai_chat("gpt-4.1", false)),
        )
        .await
        .unwrap();
    assert_eq!(denied.headers()["x-warden-decision"], "deny");
    denied.text().await.unwrap();

    let http = s.warden.http();
    let malformed = http
        .post(s.warden.url("/openai/chat/completions"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"model": "gpt-4o-mini", "messages": "{PROMPT}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let mistyped = http
        .post(s.warden.url("/openai/chat/completions"))
        .bearer_auth(&s.token)
        .json(&json!({"model": PROMPT, "messages": [{"role": "user", "content": 7}], "max_tokens": PROMPT}))
        .send()
        .await
        .unwrap();
    assert_eq!(mistyped.status(), 400);
    for header in ["authorization", "x-api-key", "api-key"] {
        let value = if header == "authorization" {
            format!("Bearer {FORGED}")
        } else {
            FORGED.to_string()
        };
        let forged = http
            .post(s.warden.url("/openai/chat/completions"))
            .header(header, value)
            .json(&with_prompt(openai_chat("gpt-4o-mini", false)))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 401, "{header}");
    }
    let anthropic = http
        .post(s.warden.url("/anthropic/v1/messages"))
        .header("x-api-key", &s.token)
        .header("anthropic-version", "2023-06-01")
        .json(&{
            let mut b = anthropic_messages("claude-sonnet-4-5", false);
            b["messages"][0]["content"] = json!(PROMPT);
            b
        })
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 200);
    anthropic.text().await.unwrap();
    let gemini = http
        .post(
            s.warden
                .url("/gemini/v1beta/models/gemini-2.5-flash:generateContent"),
        )
        .header("x-goog-api-key", &s.token)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(gemini.status(), 200);
    gemini.text().await.unwrap();
    // Every request above has its outcome recorded before we look.
    s.warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "outcome" && r["route"] == "gemini"
        })
        .await
        .unwrap();
}

/// The raw text of every audit segment.
fn audit_text(s: &Stack) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(s.warden.audit_dir()).unwrap().flatten() {
        if let Ok(t) = std::fs::read_to_string(entry.path()) {
            text.push_str(&t);
        }
    }
    text
}

#[tokio::test]
async fn no_secret_token_or_prompt_reaches_the_audit_log_or_the_process_log() {
    let s = Stack::start_with(verbose).await.unwrap();
    send_everything(&s).await;

    let audit = audit_text(&s);
    let log = s.warden.output();
    assert!(warden_e2e::fake_llm::full_text().contains(COMPLETION));
    assert!(
        audit.contains("\"rejected\"") && audit.contains("\"deny\""),
        "the audit log holds the refusals it is checked for:\n{audit}"
    );
    assert!(
        log.contains("\"request_id\""),
        "the process log is on and verbose:\n{log}"
    );
    let secrets = [
        ("the agent's token", s.token.as_str()),
        // A JWT's signature alone identifies the token.
        (
            "the agent token's signature",
            s.token.rsplit('.').next().unwrap(),
        ),
        ("a forged agent credential", FORGED),
        ("the OpenAI provider key", OPENAI_KEY),
        ("the Anthropic provider key", ANTHROPIC_KEY),
        ("the Gemini provider key", GEMINI_KEY),
        ("the prompt", "PROMPT-CANARY-7f3a"),
        ("the completion", COMPLETION),
    ];
    for (what, secret) in secrets {
        assert!(
            !audit.contains(secret),
            "{what} is in the audit log:\n{audit}"
        );
        assert!(
            !log.contains(secret),
            "{what} is in the process log:\n{log}"
        );
    }
}

#[tokio::test]
async fn prompts_are_recorded_only_when_record_content_is_on() {
    let s = Stack::start_with(|b| verbose(b).set("/audit/record_content", json!(true)))
        .await
        .unwrap();
    send_everything(&s).await;
    let audit = audit_text(&s);
    assert!(
        audit.contains("PROMPT-CANARY-7f3a"),
        "record_content records the request body:\n{audit}"
    );
    for (what, secret) in [
        ("the agent's token", s.token.as_str()),
        ("the OpenAI provider key", OPENAI_KEY),
        ("a forged agent credential", FORGED),
    ] {
        assert!(
            !audit.contains(secret),
            "{what} is in the audit log even with record_content:\n{audit}"
        );
    }
}
