//! The process under signals: SIGHUP reloads policies without dropping streams, an invalid
//! policy set never replaces a valid one, SIGTERM lets in-flight streams finish; and the
//! startup guard against an open listener without authentication.

use serde_json::{Value, json};
use std::time::Duration;
use warden_e2e::fake_llm::{self, FakeLlm};
use warden_e2e::sse;
use warden_e2e::stack::{Stack, openai_chat};
use warden_e2e::warden::{WardenBuilder, free_port};

const FORBID_GPT41: &str = r#"
@id("e2e-forbid-gpt41")
@reason("gpt-4.1 was withdrawn by the reload")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1");
"#;

const FORBID_MINI: &str = r#"
@id("e2e-forbid-mini")
@reason("gpt-4o-mini was withdrawn")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4o-mini");
"#;

/// `Some(finish_reason)` of a non-streamed chat with `model`.
async fn finish_reason(s: &Stack, model: &str) -> Option<String> {
    let response = s
        .post("/openai/chat/completions", &openai_chat(model, false))
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    body["choices"][0]["finish_reason"]
        .as_str()
        .map(str::to_owned)
}

/// Polls until a chat with `model` finishes with `want`, up to 10 s.
async fn wait_for_finish_reason(s: &Stack, model: &str, want: &str) -> bool {
    for _ in 0..100 {
        if finish_reason(s, model).await.as_deref() == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Starts a held stream and returns it after its first chunk arrived.
async fn start_held_stream(s: &Stack, model: &str) -> (reqwest::Response, String) {
    let mut response = s
        .post("/openai/chat/completions", &openai_chat(model, true))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    (response, String::from_utf8_lossy(&first).into_owned())
}

fn streamed_text(body: &str) -> String {
    sse::parse_events(body)
        .iter()
        .filter_map(|e| {
            e.json()["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn sighup_reload_changes_a_decision_without_dropping_an_in_flight_stream() {
    let s = Stack::start().await.unwrap();
    assert_eq!(finish_reason(&s, "gpt-4.1").await.as_deref(), Some("stop"));
    let gate = s.fake.hold_streams();
    let (stream, first) = start_held_stream(&s, "gpt-4.1").await;

    s.warden
        .write_policy("e2e-reload.cedar", FORBID_GPT41)
        .unwrap();
    s.warden.signal(libc::SIGHUP).unwrap();
    assert!(
        wait_for_finish_reason(&s, "gpt-4.1", "content_filter").await,
        "the reloaded forbid applies:\n{}",
        s.warden.output()
    );

    gate.release();
    let rest = sse::read_chunks(stream, Duration::from_secs(20))
        .await
        .unwrap();
    let body = first + &sse::text_of(&rest);
    assert_eq!(
        streamed_text(&body),
        fake_llm::full_text(),
        "the stream allowed before the reload completes"
    );
    assert!(body.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn invalid_policy_change_is_refused_and_the_old_set_keeps_working() {
    let s = Stack::start().await.unwrap();
    s.warden
        .write_policy("e2e-mini.cedar", FORBID_MINI)
        .unwrap();
    s.warden
        .write_policy(
            "e2e-broken.cedar",
            "permit (principal, action, resource) when { principal.nope ==",
        )
        .unwrap();
    s.warden.signal(libc::SIGHUP).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !s.warden.output().contains("e2e-broken.cedar") && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        s.warden.output().contains("e2e-broken.cedar"),
        "the refused reload names the bad file:\n{}",
        s.warden.output()
    );
    assert_eq!(
        finish_reason(&s, "gpt-4o-mini").await.as_deref(),
        Some("stop"),
        "nothing of the invalid set applies"
    );

    std::fs::remove_file(s.warden.setup.policy_dir.join("e2e-broken.cedar")).unwrap();
    s.warden.signal(libc::SIGHUP).unwrap();
    assert!(
        wait_for_finish_reason(&s, "gpt-4o-mini", "content_filter").await,
        "a valid set loads on the next reload"
    );
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish_then_exits() {
    let mut s = Stack::start().await.unwrap();
    let gate = s.fake.hold_streams();
    let (stream, first) = start_held_stream(&s, "gpt-4o-mini").await;

    s.warden.signal(libc::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    gate.release();
    let rest = sse::read_chunks(stream, Duration::from_secs(20))
        .await
        .unwrap();
    let body = first + &sse::text_of(&rest);
    assert_eq!(
        streamed_text(&body),
        fake_llm::full_text(),
        "the in-flight stream runs to its end"
    );
    assert!(body.ends_with("data: [DONE]\n\n"));

    let status = s.warden.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert!(
        status.success(),
        "graceful exit after SIGTERM: {status}\n{}",
        s.warden.output()
    );
    let refused = reqwest::Client::new()
        .get(s.warden.url("/openai/models"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "no longer listening after exit");
}

#[tokio::test]
async fn refuses_to_listen_on_a_non_loopback_address_without_required_identity() {
    let fake = FakeLlm::start().await.unwrap();
    let port = free_port().unwrap();
    let mut warden = WardenBuilder::new(&fake)
        .set("/identity/required", json!(false))
        .set("/listen/proxy", json!(format!("0.0.0.0:{port}")))
        .write()
        .unwrap()
        .spawn()
        .unwrap();
    let status = warden.wait_exit(Duration::from_secs(20)).await.unwrap();
    assert!(
        !status.success(),
        "must refuse to start:\n{}",
        warden.output()
    );
    let output = warden.output();
    assert!(
        output.contains("identity.required") || output.contains("loopback"),
        "the error says why:\n{output}"
    );
}

#[tokio::test]
async fn serves_anonymous_agents_on_loopback_when_identity_is_not_required() {
    let fake = FakeLlm::start().await.unwrap();
    let warden = WardenBuilder::new(&fake)
        .set("/identity/required", json!(false))
        .start()
        .await
        .unwrap();
    let response = warden
        .http()
        .post(warden.url("/openai/chat/completions"))
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record = warden
        .wait_for_audit(Duration::from_secs(10), |r| r["kind"] == "decision")
        .await
        .unwrap();
    assert_eq!(record["principal"]["id"], "anonymous");
}
