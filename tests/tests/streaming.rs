//! Warden streams: each upstream chunk reaches the agent as it comes, before the upstream has
//! finished, for every provider; a stream the agent drops mid-way gives its place in flight
//! (`limits.max_in_flight_per_agent`) back.

use serde_json::json;
use std::time::Duration;
use warden_e2e::fake_llm::{self, FakeLlm};
use warden_e2e::sse;
use warden_e2e::stack::{Stack, anthropic_messages, openai_chat};

/// Reads the first body chunk within 5 s.
async fn first_chunk(response: &mut reqwest::Response) -> String {
    let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("the first chunk must reach the agent while the upstream is still held")
        .unwrap()
        .expect("stream ended before its first chunk");
    String::from_utf8_lossy(&chunk).into_owned()
}

#[tokio::test]
async fn openai_first_chunk_reaches_agent_before_upstream_finishes() {
    let s = Stack::start().await.unwrap();
    let gate = s.fake.hold_streams();
    let mut response = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", true),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = first_chunk(&mut response).await;
    assert!(first.contains("chat.completion.chunk"), "{first}");
    assert_eq!(
        s.fake.streams_completed(),
        0,
        "the upstream is still held: Warden did not wait for the end"
    );

    gate.release();
    let rest = sse::read_chunks(response, Duration::from_secs(20))
        .await
        .unwrap();
    let body = first + &sse::text_of(&rest);
    let events = sse::parse_events(&body);
    assert_eq!(sse::chat_text(&events), fake_llm::full_text());
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    assert_eq!(s.fake.streams_completed(), 1);
}

#[tokio::test]
async fn anthropic_first_event_reaches_agent_before_upstream_finishes() {
    let s = Stack::start().await.unwrap();
    let gate = s.fake.hold_streams();
    let mut response = s
        .warden
        .http()
        .post(s.warden.url("/anthropic/v1/messages"))
        .header("x-api-key", &s.token)
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_messages("claude-sonnet-4-5", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = first_chunk(&mut response).await;
    assert!(first.contains("message_start"), "{first}");
    assert_eq!(s.fake.streams_completed(), 0);

    gate.release();
    let rest = sse::read_chunks(response, Duration::from_secs(20))
        .await
        .unwrap();
    let events = sse::parse_events(&(first + &sse::text_of(&rest)));
    assert_eq!(
        events.last().and_then(|e| e.name.clone()).as_deref(),
        Some("message_stop")
    );
    let text: String = events
        .iter()
        .filter_map(|e| e.json()["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, fake_llm::full_text());
}

#[tokio::test]
async fn stream_chunks_arrive_spread_over_time_not_in_one_burst() {
    let s = Stack::start().await.unwrap();
    s.fake.set_chunk_delay(Duration::from_millis(150));
    let response = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", true),
        )
        .await
        .unwrap();
    let chunks = sse::read_chunks(response, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        chunks.len() >= 8,
        "expected separate chunks, got {}",
        chunks.len()
    );
    let spread = chunks.last().unwrap().at.duration_since(chunks[0].at);
    // 12+ events 150 ms apart upstream: a buffering proxy would deliver them within a few ms.
    assert!(
        spread >= Duration::from_millis(1200),
        "all chunks arrived within {spread:?}: buffered"
    );
}

#[tokio::test]
async fn gemini_stream_first_event_reaches_agent_before_upstream_finishes() {
    let fake = FakeLlm::start().await.unwrap();
    let warden = warden_e2e::warden::WardenBuilder::new(&fake)
        .start()
        .await
        .unwrap();
    let token = warden.token("gemini-agent").await.unwrap();
    let gate = fake.hold_streams();
    let mut response = warden
        .http()
        .post(warden.url("/gemini/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"))
        .header("x-goog-api-key", &token)
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = first_chunk(&mut response).await;
    assert!(first.contains("candidates"), "{first}");
    assert_eq!(fake.streams_completed(), 0);
    gate.release();
    let rest = sse::read_chunks(response, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        sse::parse_events(&(first + &sse::text_of(&rest))).len(),
        fake_llm::TEXT_CHUNKS.len()
    );
}

/// `s`'s agent sends a non-streamed chat until it is not refused for concurrency, within 20 s;
/// its status then.
async fn admitted_again(s: &Stack) -> u16 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = s
            .post(
                "/openai/chat/completions",
                &openai_chat("gpt-4o-mini", false),
            )
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if !(status == 429 && body.contains("concurrency_limited")) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped stream's place in flight never came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_stream_dropped_mid_way_gives_its_place_in_flight_back() {
    let s = Stack::start_with(|b| b.set("/limits/max_in_flight_per_agent", json!(1)))
        .await
        .unwrap();
    let gate = s.fake.hold_streams();
    let mut response = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", true),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    first_chunk(&mut response).await;
    // The stream holds the agent's one place: another request is refused meanwhile.
    let refused = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let body = refused.text().await.unwrap();
    assert!(body.contains("concurrency_limited"), "{body}");
    // The agent goes away mid-stream, the upstream still held: the place comes back.
    drop(response);
    assert_eq!(admitted_again(&s).await, 200);
    assert_eq!(
        s.fake.streams_completed(),
        0,
        "the dropped stream never ended"
    );
    gate.release();
}
