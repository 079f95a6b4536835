//! The test components themselves, without Warden: the official SDKs parse what the fake
//! upstream sends, the fake streams chunk by chunk, and the IdP issues real JWT access tokens.
//! If these fail, the e2e tests' verdicts on Warden mean nothing.

use serde_json::{Value, json};
use std::time::Duration;
use warden_e2e::fake_llm::{
    self, COMPLETION_TOKENS, Failure, FakeLlm, PROMPT_TOKENS, RequiredKeys,
};
use warden_e2e::idp::{self, ALPHA, BETA, Forgery, Idp};
use warden_e2e::{sdk, sse};

#[tokio::test]
async fn openai_sdk_parses_fake_chat_stream_tools_embeddings_models_and_responses() {
    let fake = FakeLlm::start().await.unwrap();
    let base = format!("{}/v1", fake.url());
    let modes = [
        "chat",
        "stream",
        "tools-stream",
        "models",
        "responses-stream",
    ];
    let out = sdk::run("openai_chat.py", &base, "k", &modes)
        .await
        .unwrap();

    let chat = &out["chat"];
    assert_eq!(chat["content"], json!(fake_llm::full_text()));
    assert_eq!(chat["finish_reason"], "stop");
    assert_eq!(chat["usage"]["prompt_tokens"], json!(PROMPT_TOKENS));

    let stream = &out["stream"];
    assert_eq!(stream["content"], json!(fake_llm::full_text()));
    assert_eq!(
        stream["usage"]["completion_tokens"],
        json!(COMPLETION_TOKENS)
    );
    assert!(stream["chunks"].as_u64().unwrap() >= 10, "{stream}");

    let tools = &out["tools-stream"];
    assert_eq!(tools["finish_reason"], "tool_calls");
    assert_eq!(tools["tool_calls"][0]["name"], "get_weather");
    assert_eq!(
        tools["tool_calls"][0]["arguments"],
        json!({"location": "Paris", "unit": "celsius"})
    );
    assert!(
        tools["argument_fragments"].as_u64().unwrap() >= 4,
        "{tools}"
    );

    assert!(
        out["models"]["ids"]
            .as_array()
            .unwrap()
            .contains(&json!("gpt-4o-mini"))
    );

    let responses = &out["responses-stream"];
    assert_eq!(responses["text"], json!(fake_llm::full_text()));
    assert_eq!(responses["status"], "completed");

    let emb = sdk::run(
        "openai_chat.py",
        &base,
        "k",
        &["embeddings", "--model", "text-embedding-3-small"],
    )
    .await
    .unwrap();
    let emb = &emb["embeddings"];
    assert_eq!(emb["count"], 2);
    assert_eq!(emb["dimensions"], 8);
    assert!(
        (emb["first"][1].as_f64().unwrap() - 0.02).abs() < 1e-6,
        "base64 floats decode: {emb}"
    );
}

#[tokio::test]
async fn anthropic_sdk_parses_fake_messages_stream_and_tool_use() {
    let fake = FakeLlm::start().await.unwrap();
    fake.require_keys(RequiredKeys {
        anthropic: Some("provider-key".into()),
        ..Default::default()
    });
    let out = sdk::run(
        "anthropic_messages.py",
        &fake.url(),
        "provider-key",
        &["message", "stream", "tools-stream"],
    )
    .await
    .unwrap();

    assert_eq!(out["message"]["text"], json!(fake_llm::full_text()));
    assert_eq!(out["message"]["stop_reason"], "end_turn");

    let stream = &out["stream"];
    assert_eq!(stream["text"], json!(fake_llm::full_text()));
    assert_eq!(
        stream["usage"],
        json!({"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS})
    );

    let tools = &out["tools-stream"];
    assert_eq!(tools["stop_reason"], "tool_use");
    assert_eq!(
        tools["tool_uses"][0]["input"],
        json!({"location": "Paris", "unit": "celsius"})
    );
    assert!(tools["input_json_deltas"].as_u64().unwrap() >= 4, "{tools}");

    let wrong = sdk::run(
        "anthropic_messages.py",
        &fake.url(),
        "not-the-key",
        &["message"],
    )
    .await
    .unwrap();
    assert_eq!(wrong["message"]["error"]["status"], 401);
    assert_eq!(wrong["message"]["error"]["class"], "AuthenticationError");
}

#[tokio::test]
async fn fake_upstream_sends_stream_chunks_separately_and_holds_them_at_the_gate() {
    let fake = FakeLlm::start().await.unwrap();
    let gate = fake.hold_streams();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", fake.url()))
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let mut response = response;
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    // Held: nothing more arrives while the gate is closed.
    let more = tokio::time::timeout(Duration::from_millis(300), async {
        let mut seen = Vec::new();
        while let Ok(Some(c)) = response.chunk().await {
            seen.push(c);
        }
        seen
    })
    .await;
    assert!(
        more.is_err() || more.as_ref().is_ok_and(|s| s.len() <= 1),
        "stream was not held"
    );
    gate.release();
    let rest = sse::read_chunks(response, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        rest.len() >= 8,
        "chunks arrive one by one, got {}",
        rest.len()
    );
    assert!(sse::text_of(&rest).ends_with("data: [DONE]\n\n"));
    assert_eq!(fake.streams_completed(), 1);
}

#[tokio::test]
async fn fake_upstream_answers_gemini_sse_with_crlf_and_usage_metadata() {
    let fake = FakeLlm::start().await.unwrap();
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            fake.url()
        ))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    assert!(body.contains("\r\n\r\n"));
    let events = sse::parse_events(&body);
    assert_eq!(events.len(), fake_llm::TEXT_CHUNKS.len());
    let last = events.last().unwrap().json();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(
        last["usageMetadata"]["candidatesTokenCount"],
        json!(COMPLETION_TOKENS)
    );
}

#[tokio::test]
async fn fake_upstream_replays_provider_error_shapes() {
    let fake = FakeLlm::start().await.unwrap();
    fake.fail_with(Failure::rate_limited());
    let client = reqwest::Client::new();
    let openai = client
        .post(format!("{}/v1/chat/completions", fake.url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(openai.status(), 429);
    assert_eq!(openai.headers()["retry-after"], "7");
    let body: Value = openai.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let anthropic = client
        .post(format!("{}/v1/messages", fake.url()))
        .header("anthropic-version", "2023-06-01")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(fake.requests().len(), 2);
}

/// The fake proposes a tool until the conversation carries a result, wherever that result is
/// (OpenClaw adds a user message after it), and answers in text when told not to propose.
#[tokio::test]
async fn fake_upstream_stops_proposing_tools_once_answered_or_when_told() {
    let fake = FakeLlm::start().await.unwrap();
    let client = reqwest::Client::new();
    let tools = json!([{"type": "function", "function": {"name": "read", "parameters": {}}}]);
    let chat = |messages: Value| {
        let body = json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools});
        let request = client
            .post(format!("{}/v1/chat/completions", fake.url()))
            .json(&body);
        async move {
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            answer["choices"][0]["finish_reason"].clone()
        }
    };
    let ask = json!({"role": "user", "content": "Read the notes"});
    assert_eq!(chat(json!([ask])).await, "tool_calls");
    let answered = json!([
        ask,
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call1", "type": "function",
            "function": {"name": "read", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call1", "content": "notes"},
        {"role": "user", "content": "internal context the agent adds"}
    ]);
    assert_eq!(chat(answered).await, "stop");

    let messages = |content: Value| {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "tools": [{"name": "read",
            "input_schema": {"type": "object"}}], "messages": content})
    };
    let anthropic = |body: Value| {
        let request = client
            .post(format!("{}/v1/messages", fake.url()))
            .header("anthropic-version", "2023-06-01")
            .json(&body);
        async move {
            let answer: Value = request.send().await.unwrap().json().await.unwrap();
            answer["stop_reason"].clone()
        }
    };
    let ask = json!({"role": "user", "content": "Read the notes"});
    assert_eq!(anthropic(messages(json!([ask]))).await, "tool_use");
    let answered = json!([
        ask,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read",
            "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
            "content": "notes"}]},
        {"role": "user", "content": "internal context the agent adds"}
    ]);
    assert_eq!(anthropic(messages(answered)).await, "end_turn");

    fake.propose_tools(false);
    assert_eq!(chat(json!([ask])).await, "stop");
    assert_eq!(anthropic(messages(json!([ask]))).await, "end_turn");
    assert!(
        fake.last_request().unwrap().json()["tools"].is_array(),
        "the recorded request keeps its tools"
    );
}

#[tokio::test]
async fn idp_issues_rs256_jwt_access_tokens_with_agent_claims_and_rotates_keys() {
    let idp = Idp::start().await.unwrap();
    let token = idp.token(BETA).await.unwrap();
    let header = idp::jwt_header(&token).unwrap();
    let claims = idp::jwt_claims(&token).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], "warden");
    assert_eq!(claims["sub"], "agent-beta");
    assert_eq!(claims["fleet"], "payments");
    assert_eq!(claims["groups"], json!(["payments", "pci"]));

    let short = idp.token_for(ALPHA, idp::RESOURCE_SHORT).await.unwrap();
    let c = idp::jwt_claims(&short).unwrap();
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 1);
    let other = idp.token_for(ALPHA, idp::RESOURCE_OTHER).await.unwrap();
    assert_eq!(idp::jwt_claims(&other).unwrap()["aud"], "other-api");

    let jwks: Value = reqwest::get(format!("{}/jwks", idp.issuer()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "JWKS must not leak the private key"
    );

    let kid = idp.rotate(true).await.unwrap();
    let rotated = idp.token(ALPHA).await.unwrap();
    assert_eq!(idp::jwt_header(&rotated).unwrap()["kid"], json!(kid));
    let jwks: Value = reqwest::get(format!("{}/jwks", idp.issuer()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    let none = idp.forge(Forgery::AlgNone, ALPHA).await.unwrap();
    assert_eq!(idp::jwt_header(&none).unwrap()["alg"], "none");
    assert!(none.ends_with('.'));
    let hs = idp.forge(Forgery::Hs256WithPublicKey, ALPHA).await.unwrap();
    assert_eq!(idp::jwt_header(&hs).unwrap()["alg"], "HS256");
    let unknown = idp.forge(Forgery::UnpublishedKey, ALPHA).await.unwrap();
    let unknown_kid = idp::jwt_header(&unknown).unwrap()["kid"].clone();
    assert!(
        !jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == unknown_kid)
    );
}

/// The browser harness the console tests drive (`tests/browser/drive.mjs` through
/// `warden_e2e::browser`): a real headless Chromium loads a page, types, clicks, reads text,
/// writes a screenshot, reports a page's failure with its console, and a command that never
/// ends is cut at its bound while the browser goes on working.
#[tokio::test]
async fn headless_chromium_types_clicks_reads_and_takes_screenshots() {
    use std::convert::Infallible;
    use std::sync::Arc;
    use warden_e2e::browser::Browser;

    const PAGE: &str = r#"<!doctype html><html><head><title>harness</title></head><body>
<label>Name <input id="name"></label><button id="go">Greet</button><p id="out"></p>
<script>
document.getElementById('go').addEventListener('click', () => {
  document.getElementById('out').textContent = 'hello ' + document.getElementById('name').value;
});
</script></body></html>"#;
    async fn page(
        _req: http::Request<hyper::body::Incoming>,
        _state: Arc<()>,
    ) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, Infallible> {
        Ok(http::Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                PAGE.as_bytes(),
            )))
            .unwrap())
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    let server = tokio::spawn(warden_e2e::serve::accept_loop(listener, Arc::new(()), page));

    let mut browser = Browser::launch("harness").await.unwrap();
    assert!(!browser.version.is_empty());
    assert_eq!(browser.goto(&url).await.unwrap(), Some(200));
    assert_eq!(browser.eval("document.title").await.unwrap(), "harness");
    assert_eq!(
        browser.eval("window.isSecureContext").await.unwrap(),
        true,
        "http://localhost is a secure context (WebAuthn needs one)"
    );
    browser.fill("#name", "Alice").await.unwrap();
    browser.click("#go").await.unwrap();
    browser.wait_for("#out:not(:empty)").await.unwrap();
    assert_eq!(browser.text("#out").await.unwrap(), "hello Alice");
    assert_eq!(browser.url().await.unwrap(), url);

    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("page.png");
    browser.screenshot(&shot).await.unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 800));

    let failed = browser
        .eval("console.error('about to fail'); Promise.reject(new Error('boom'))")
        .await
        .unwrap_err()
        .to_string();
    assert!(failed.contains("boom"), "{failed}");
    let stuck = browser
        .command(json!({"cmd": "eval", "expression": "new Promise(() => {})", "timeout_ms": 500}))
        .await
        .unwrap_err()
        .to_string();
    assert!(stuck.contains("took longer than 500 ms"), "{stuck}");
    assert_eq!(browser.eval("1 + 1").await.unwrap(), 2);
    browser.close().await.unwrap();
    server.abort();
}
