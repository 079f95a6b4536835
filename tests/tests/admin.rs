//! The admin listener: health, readiness and Prometheus metrics that count requests by
//! route, decision and status, tokens by agent, model and kind, and audit commits.

use std::time::Duration;
use warden_e2e::fake_llm::{COMPLETION_TOKENS, PROMPT_TOKENS};
use warden_e2e::stack::{AGENT, FORBID_GPT41, Stack, openai_chat};

/// The value of the sample whose line starts with `name{` and contains every label.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn health_readiness_and_metrics_count_requests_and_tokens() {
    let s = Stack::start_with(|b| b.policy("e2e-forbid.cedar", FORBID_GPT41))
        .await
        .unwrap();
    for path in ["/healthz", "/readyz"] {
        let response = s
            .warden
            .http()
            .get(s.warden.admin_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    for model in ["gpt-4o-mini", "gpt-4o-mini", "gpt-4.1"] {
        let response = s
            .post("/openai/chat/completions", &openai_chat(model, true))
            .await
            .unwrap();
        let _ = response.text().await.unwrap();
    }
    let response = s
        .warden
        .http()
        .post(s.warden.url("/openai/chat/completions"))
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Usage is counted when each stream ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s
        .warden
        .audit_records()
        .iter()
        .filter(|r| r["outcome"]["output_tokens"].is_u64())
        .count()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "two outcomes with usage: {:?}",
            s.warden.audit_records()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let metrics = s.warden.metrics().await.unwrap();
    let requests = "warden_requests_total";
    assert_eq!(
        sample(
            &metrics,
            requests,
            &["route=\"openai\"", "decision=\"allow\"", "status=\"200\""]
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            requests,
            &["route=\"openai\"", "decision=\"deny\"", "status=\"200\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, requests, &["status=\"401\""]).is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    let tokens = "warden_tokens_total";
    let agent = format!("agent=\"{AGENT}\"");
    let output = sample(
        &metrics,
        tokens,
        &[&agent, "model=\"gpt-4o-mini\"", "kind=\"output\""],
    );
    assert_eq!(output, Some(2.0 * COMPLETION_TOKENS as f64), "{metrics}");
    let input = sample(
        &metrics,
        tokens,
        &[&agent, "model=\"gpt-4o-mini\"", "kind=\"input\""],
    );
    assert_eq!(input, Some(2.0 * PROMPT_TOKENS as f64), "{metrics}");

    // The audit writer reports its commits: every record the log holds went through one
    // (the start record aside, written before the writer runs). Outcome records commit
    // shortly after their responses, and a record's bytes are in the file a moment before its
    // commit is counted: compare a scrape with what the file held just before it.
    let scalar = |metrics: &str, name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (metrics, commits) = loop {
        let on_disk = s.warden.audit_records().len() as f64;
        let metrics = s.warden.metrics().await.unwrap();
        let records = scalar(&metrics, "warden_audit_records_total").expect("records counted");
        let commits = scalar(&metrics, "warden_audit_commits_total").expect("commits counted");
        if records >= on_disk - 1.0 && commits >= 1.0 {
            break (metrics, commits);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "records {records} of {on_disk}, commits {commits}:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let scalar = |name: &str| scalar(&metrics, name);
    assert!(
        scalar("warden_audit_commit_duration_seconds_count").is_some_and(|n| n == commits),
        "{metrics}"
    );
    // Each of the three decisions waited for its record once (two allowed, one denied; the
    // refused credential never reached a decision), and waiting took time.
    assert_eq!(
        scalar("warden_audit_wait_seconds_count"),
        Some(3.0),
        "{metrics}"
    );
    assert!(
        scalar("warden_audit_wait_seconds_sum").is_some_and(|s| s > 0.0),
        "{metrics}"
    );
}
