//! `audit.durability` under a kill: Warden is killed with SIGKILL in the middle of concurrent
//! load, in each mode, and every request the upstream saw must have its decision record in the
//! log. The log must then verify: as it was left (where the only problem it may show is a
//! torn last line, a write the kill cut short, which no request waited for), and after the
//! next start, whose recovery sets such a tail aside.

use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::stack::openai_chat;
use warden_e2e::warden::{WardenBuilder, read_audit, run_bounded};

/// Tasks sending requests at once, each one after the other.
const TASKS: usize = 8;
/// Most requests a task sends.
const PER_TASK: usize = 150;
/// Warden is killed once the upstream has seen this many requests (or after `KILL_AFTER`).
const KILL_AT: usize = 200;
const KILL_AFTER: Duration = Duration::from_secs(5);

async fn every_request_the_upstream_saw_is_in_the_log_after_a_kill(durability: &str) {
    let upstream = FakeLlm::start().await.unwrap();
    let mut warden = WardenBuilder::new(&upstream)
        .set("/audit/durability", json!(durability))
        .start()
        .await
        .unwrap();
    let token = warden.token("kill-bot").await.unwrap();

    // Concurrent load, each request's model unique: the upstream sees it in the body, and
    // Warden records it as the decision's resource.
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = warden.url("/openai/chat/completions");
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (client, url, token, stop) =
                (client.clone(), url.clone(), token.clone(), stop.clone());
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let body = openai_chat(&format!("kill-{task}-{i}"), false);
                    let sent = client.post(&url).bearer_auth(&token).json(&body).send();
                    match sent.await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                        }
                        _ => break, // refused or cut off by the kill
                    }
                }
            })
        })
        .collect();
    upstream.wait_for_requests(KILL_AT, KILL_AFTER).await;
    warden.signal(libc::SIGKILL).unwrap();
    let status = warden.wait_exit(Duration::from_secs(10)).await.unwrap();
    assert!(!status.success(), "killed, not stopped: {status}");
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("a load task ended")
            .unwrap();
    }

    // What the upstream saw: the models of the bodies that reached it whole, and how many
    // did not (a kill between a request's head and its body).
    let mut seen = HashSet::new();
    let mut unreadable = 0;
    for request in upstream.requests() {
        match request.json()["model"].as_str() {
            Some(model) => {
                seen.insert(model.to_owned());
            }
            None => unreadable += 1,
        }
    }
    assert!(
        seen.len() >= 50,
        "only {} requests reached the upstream before the kill",
        seen.len()
    );
    let dir = warden.audit_dir();
    let decisions: Vec<String> = read_audit(&dir)
        .iter()
        .filter(|r| r["kind"] == "decision")
        .filter_map(|r| r["resource"].as_str().map(str::to_owned))
        .collect();
    let recorded: HashSet<&str> = decisions.iter().map(String::as_str).collect();
    let missing: Vec<&String> = seen
        .iter()
        .filter(|model| !recorded.contains(format!("Model::\"openai/{model}\"").as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{durability}: {} of {} requests the upstream saw have no decision record: {missing:?}",
        missing.len(),
        seen.len()
    );
    assert!(
        decisions.len() >= seen.len() + unreadable,
        "{durability}: {} decision records for {} forwarded requests",
        decisions.len(),
        seen.len() + unreadable
    );

    // The log as the kill left it.
    let verify = |dir: std::path::PathBuf, warden: &warden_e2e::warden::Warden| {
        let mut cmd = warden.setup.command();
        cmd.args(["audit", "verify"]).arg(dir);
        run_bounded(cmd, Duration::from_secs(30))
    };
    let as_left = verify(dir.clone(), &warden).await.unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&as_left.stdout),
        String::from_utf8_lossy(&as_left.stderr)
    );
    assert!(
        as_left.status.success() || report.contains("the last line is incomplete"),
        "{durability}: the killed log shows more than a torn last line: {report}"
    );

    // The next start recovers it (setting a torn tail aside), and a stop leaves a log that
    // verifies.
    let setup = warden.stop_and_take_setup().await;
    let mut restarted = setup.spawn().unwrap();
    restarted.wait_ready(Duration::from_secs(30)).await.unwrap();
    restarted.signal(libc::SIGTERM).unwrap();
    restarted.wait_exit(Duration::from_secs(15)).await.unwrap();
    let after = verify(dir.clone(), &restarted).await.unwrap();
    assert!(
        after.status.success(),
        "{durability}: the log does not verify after the restart: {}",
        String::from_utf8_lossy(&after.stderr)
    );
    let torn_noted = read_audit(&dir)
        .iter()
        .any(|r: &Value| r["detail"]["event"] == "audit_torn_tail_set_aside");
    assert_eq!(
        torn_noted,
        !as_left.status.success(),
        "{durability}: a torn tail is set aside (and noted) exactly when there was one"
    );
}

#[tokio::test]
async fn disk_durability_keeps_every_forwarded_request_through_a_kill() {
    every_request_the_upstream_saw_is_in_the_log_after_a_kill("disk").await;
}

#[tokio::test]
async fn process_durability_keeps_every_forwarded_request_through_a_kill() {
    every_request_the_upstream_saw_is_in_the_log_after_a_kill("process").await;
}
