//! Gemini over raw HTTP through Warden: generateContent and streamGenerateContent (SSE),
//! provider key injected as `x-goog-api-key`, usage read from `usageMetadata`.

use serde_json::{Value, json};
use std::time::Duration;
use warden_e2e::fake_llm::{self, COMPLETION_TOKENS, FakeLlm, PROMPT_TOKENS};
use warden_e2e::sse;
use warden_e2e::stack::{AGENT, Stack};
use warden_e2e::warden::{GEMINI_KEY, WardenBuilder};

fn request() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}],
           "generationConfig": {"maxOutputTokens": 200}})
}

#[tokio::test]
async fn gemini_generate_content_passes_through_with_key_injected() {
    let s = Stack::start().await.unwrap();
    let response = s
        .post(
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            &request(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        json!(fake_llm::full_text()),
        "{body}"
    );
    assert_eq!(
        body["usageMetadata"]["promptTokenCount"],
        json!(PROMPT_TOKENS)
    );

    let forwarded = s.upstream_requests(1).await.pop().unwrap();
    assert_eq!(
        forwarded.path,
        "/v1beta/models/gemini-2.0-flash:generateContent"
    );
    assert_eq!(forwarded.header("x-goog-api-key"), Some(GEMINI_KEY));
    assert!(
        !forwarded.contains(&s.token),
        "the agent's token must never reach the provider"
    );
    assert!(
        forwarded.header("authorization").is_none(),
        "the agent's Authorization header is removed"
    );

    let decision = s
        .audit("decision", |r| r["route"] == "gemini")
        .await
        .unwrap();
    assert!(
        decision["resource"]
            .as_str()
            .unwrap()
            .contains("gemini-2.0-flash"),
        "{decision}"
    );
}

#[tokio::test]
async fn gemini_stream_generate_content_streams_sse_and_records_usage() {
    let s = Stack::start().await.unwrap();
    let response = s
        .post(
            "/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            &request(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let chunks = sse::read_chunks(response, Duration::from_secs(20))
        .await
        .unwrap();
    let events = sse::parse_events(&sse::text_of(&chunks));
    assert_eq!(events.len(), fake_llm::TEXT_CHUNKS.len());
    let text: String = events
        .iter()
        .filter_map(|e| {
            e.json()["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, fake_llm::full_text());
    assert!(
        chunks.len() >= 5,
        "events arrive as separate chunks, got {}",
        chunks.len()
    );

    let forwarded = s.upstream_requests(1).await.pop().unwrap();
    assert_eq!(
        forwarded.path, "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        "query kept"
    );
    let outcome = s
        .audit("outcome", |r| {
            r["route"] == "gemini" && r["outcome"]["output_tokens"].is_u64()
        })
        .await
        .unwrap();
    assert_eq!(outcome["outcome"]["input_tokens"], json!(PROMPT_TOKENS));
    assert_eq!(
        outcome["outcome"]["output_tokens"],
        json!(COMPLETION_TOKENS)
    );
}

/// At most 1000 output tokens.
const OUTPUT_CAP: &str = r#"
@id("e2e-output-cap")
@reason("at most 1000 output tokens")
forbid (principal, action == Action::"llm:chat", resource)
when { context has max_tokens && context.max_tokens > 1000 };
"#;

#[tokio::test]
async fn a_field_read_in_its_proto_spelling_reaches_policy_and_both_spellings_are_refused() {
    let s = Stack::start_with(|b| b.policy("output-cap.cedar", OUTPUT_CAP))
        .await
        .unwrap();
    let path = "/gemini/v1beta/models/gemini-2.0-flash:generateContent";
    let hi = json!([{"role": "user", "parts": [{"text": "hi"}]}]);
    // The proto field names Google reads as the camelCase ones: the cap is judged.
    let snake = json!({"contents": hi, "generation_config": {"max_output_tokens": 5000}});
    let response = s.post(path, &snake).await.unwrap();
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer.to_string().contains("at most 1000 output tokens"),
        "{answer}"
    );
    let decision = s
        .audit("decision", |r| r["route"] == "gemini")
        .await
        .unwrap();
    assert_eq!(decision["decision"], "deny", "{decision}");
    assert_eq!(
        decision["policies"],
        json!(["e2e-output-cap"]),
        "{decision}"
    );
    // Both spellings of one field in one object: which one the API keeps is not Warden's to
    // guess, so neither is sent.
    for body in [
        json!({"contents": hi, "generationConfig": {"maxOutputTokens": 10, "max_output_tokens": 100000}}),
        json!({"contents": hi, "generationConfig": {"maxOutputTokens": 10}, "generation_config": {"maxOutputTokens": 100000}}),
    ] {
        let response = s.post(path, &body).await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(response.headers()["x-warden-error"], "ambiguous_keys");
        let answer: Value = response.json().await.unwrap();
        assert!(
            answer.to_string().contains("two spellings of one field"),
            "{answer}"
        );
    }
    assert!(s.fake.requests().is_empty(), "nothing reached the model");
}

/// Content cached at the provider is judged by policy where the route lets it through.
const NO_CACHED_PRO: &str = r#"
@id("e2e-no-cached-pro")
@reason("the pro model is not run on cached content")
forbid (principal, action == Action::"llm:chat", resource == Model::"gemini/gemini-2.5-pro")
when { context has cached_content && context.cached_content };
"#;

#[tokio::test]
async fn a_request_naming_cached_content_is_refused_unless_its_route_allows_it_and_policy_sees_it()
{
    let fake = FakeLlm::start().await.unwrap();
    let warden = WardenBuilder::new(&fake)
        .policy("no-cached-pro.cedar", NO_CACHED_PRO)
        .set(
            "/routes/3",
            json!({"name": "cached-gemini", "prefix": "/cached-gemini", "connector": "gemini",
                   "upstream": fake.url(), "credential": {"env": "FAKE_GEMINI_KEY"},
                   "allow_cached_content": true}),
        )
        .start()
        .await
        .unwrap();
    let token = warden.token(AGENT).await.unwrap();
    let s = Stack {
        fake,
        warden,
        token,
    };
    let cached = json!({"cachedContent": "cachedContents/e2e-cache-1",
                        "contents": [{"role": "user", "parts": [{"text": "summarise it"}]}]});
    // By default: refused before the model, saying why and what to do.
    let path = "/gemini/v1beta/models/gemini-2.0-flash:generateContent";
    let response = s.post(path, &cached).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["x-warden-error"],
        "cached_content_refused"
    );
    let answer: Value = response.json().await.unwrap();
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("cachedContent"), "{answer}");
    assert!(message.contains("allow_cached_content: true"), "{answer}");
    assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT", "{answer}");
    assert!(s.fake.requests().is_empty(), "nothing reached the model");
    // A request naming none goes on as ever.
    let plain = s.post(path, &request()).await.unwrap();
    assert_eq!(plain.status(), 200);
    // Where the route allows it, it goes on, and policy sees `cached_content`.
    let allowed = s
        .post(
            "/cached-gemini/v1beta/models/gemini-2.0-flash:generateContent",
            &cached,
        )
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let forwarded = s.upstream_requests(2).await.pop().unwrap();
    assert!(
        forwarded.contains("cachedContents/e2e-cache-1"),
        "the cache is named upstream as sent"
    );
    let denied = s
        .post(
            "/cached-gemini/v1beta/models/gemini-2.5-pro:generateContent",
            &cached,
        )
        .await
        .unwrap();
    let answer: Value = denied.json().await.unwrap();
    assert!(
        answer.to_string().contains("not run on cached content"),
        "{answer}"
    );
    let decision = s
        .audit("decision", |r| {
            r["route"] == "cached-gemini" && r["decision"] == "deny"
        })
        .await
        .unwrap();
    assert_eq!(
        decision["policies"],
        json!(["e2e-no-cached-pro"]),
        "{decision}"
    );
}
