//! The circuit breaker: an upstream that fails repeatedly is opened and its requests answered
//! at once with a clear 503 in the protocol's shape, without calling it; after its cool-down a
//! probe that succeeds closes it again; metrics and logs show each transition.

use std::time::Duration;

use serde_json::json;
use warden_e2e::breaker::{assert_one_round_trip, state};
use warden_e2e::fake_llm::{Failure, FakeLlm};
use warden_e2e::stack::chat;
use warden_e2e::warden::WardenBuilder;

#[tokio::test]
async fn a_failing_upstream_is_opened_answered_fast_and_closed_again_by_a_probe() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .set(
            "/upstream/breakers",
            json!({"openai": {"failures": 3, "open_for": "1s", "probes": 1}}),
        )
        .start()
        .await
        .unwrap();
    let token = w.token("agent-1").await.unwrap();
    assert_eq!(chat(&w, &token).await.0, 200);
    let before = upstream.requests().len();

    upstream.fail_with(Failure::status(http::StatusCode::SERVICE_UNAVAILABLE));
    for _ in 0..3 {
        assert_eq!(chat(&w, &token).await.0, 503, "the upstream's own failure");
    }
    assert_eq!(upstream.requests().len(), before + 3);

    // Open: answered by Warden at once, the upstream not called.
    let (status, body) = chat(&w, &token).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "upstream_circuit_open", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("route openai") && message.contains("3 consecutive failures"),
        "{message}"
    );
    assert_eq!(upstream.requests().len(), before + 3, "no call while open");
    let metrics = w.metrics().await.unwrap();
    assert_eq!(state(&metrics, "openai"), Some(2.0), "open is 2: {metrics}");

    // After the cool-down, a probe to the recovered upstream closes it.
    upstream.clear_failure();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(chat(&w, &token).await.0, 200, "the probe");
    assert_eq!(chat(&w, &token).await.0, 200, "closed again");
    let metrics = w.metrics().await.unwrap();
    assert_eq!(state(&metrics, "openai"), Some(0.0), "{metrics}");
    assert_one_round_trip(&metrics, &w.output(), "openai");
}
