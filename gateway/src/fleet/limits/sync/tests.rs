//! Two limiters (two replicas) on one store: a burst split across them is enforced for the
//! fleet once each has read the other's counts; an outage loses no count.

use super::super::tests::{config, subject};
use super::super::{AgentCaps, Subject};
use super::*;
use crate::state::flaky::Flaky;
use crate::telemetry::metrics::Metrics;

const FOUR_THEN_SLOW: &str = "rules:\n  - scope: agent\n    rate: 0.001\n    burst: 4\n";

fn replica() -> Limiter {
    let limiter = Limiter::new(&Metrics::new());
    limiter.share();
    limiter
}

#[tokio::test]
async fn a_burst_split_across_replicas_is_the_fleets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    let config = config(FOUR_THEN_SLOW);
    let bot = subject("bot", &[]);
    let now = now_ms();
    // Both start: their first read is where they count from.
    a.sync(&*store, now).await.unwrap();
    b.sync(&*store, now).await.unwrap();
    for _ in 0..3 {
        assert!(a.admit(&config, AgentCaps::default(), &bot).is_ok());
    }
    a.sync(&*store, now).await.unwrap();
    b.sync(&*store, now).await.unwrap();
    // B has never seen the agent: its new bucket starts with A's three.
    assert!(
        b.admit(&config, AgentCaps::default(), &bot).is_ok(),
        "the fourth of the burst"
    );
    let refused = b
        .admit(&config, AgentCaps::default(), &bot)
        .expect_err("the burst is spent fleet-wide");
    assert_eq!(refused.value, "bot");
    // And A, once it has read B's, refuses too (its own bucket charged).
    b.sync(&*store, now).await.unwrap();
    a.sync(&*store, now).await.unwrap();
    assert!(a.admit(&config, AgentCaps::default(), &bot).is_err());
    // Another agent is not charged.
    assert!(
        a.admit(&config, AgentCaps::default(), &subject("other", &[]))
            .is_ok()
    );
}

#[tokio::test]
async fn counts_made_during_an_outage_reach_the_others_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (replica(), replica());
    let config = config(FOUR_THEN_SLOW);
    let bot = subject("bot", &[]);
    let now = now_ms();
    a.sync(&*store, now).await.unwrap();
    b.sync(&*store, now).await.unwrap();
    assert!(
        b.admit(&config, AgentCaps::default(), &bot).is_ok(),
        "B has a bucket of its own"
    );
    store.set_down(true);
    for _ in 0..3 {
        assert!(a.admit(&config, AgentCaps::default(), &bot).is_ok());
    }
    assert!(a.sync(&*store, now).await.is_err());
    assert!(b.sync(&*store, now).await.is_err());
    assert!(
        b.admit(&config, AgentCaps::default(), &bot).is_ok(),
        "down: B goes on with its own counts"
    );
    store.set_down(false);
    a.sync(&*store, now).await.unwrap();
    b.sync(&*store, now).await.unwrap();
    assert!(
        b.admit(&config, AgentCaps::default(), &bot).is_err(),
        "A's three, counted while the store was down, reached B"
    );
}

#[tokio::test]
async fn a_stopped_replicas_old_counts_are_not_charged_to_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let config = config(FOUR_THEN_SLOW);
    let bot = subject("bot", &[]);
    let old = replica();
    for _ in 0..4 {
        assert!(old.admit(&config, AgentCaps::default(), &bot).is_ok());
    }
    old.sync(&*store, now_ms()).await.unwrap();
    drop(old);
    let new = replica();
    new.sync(&*store, now_ms()).await.unwrap();
    assert!(new.admit(&config, AgentCaps::default(), &bot).is_ok());
}

#[tokio::test]
async fn made_up_model_names_write_one_shared_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let config = config("rules:\n  - scope: model\n    rate: 0.001\n    burst: 1000\n");
    let a = replica();
    let now = now_ms();
    a.sync(&*store, now).await.unwrap();
    for i in 0..500 {
        let name = format!("made-up-{i}");
        let asking = Subject {
            model: Some(&name),
            ..subject("bot", &[])
        };
        assert!(a.admit(&config, AgentCaps::default(), &asking).is_ok());
    }
    a.sync(&*store, now).await.unwrap();
    let rows = store.counts(now - STALE_MS).await.unwrap();
    let buckets: Vec<&str> = rows.iter().map(|r| r.bucket.as_str()).collect();
    assert_eq!(buckets, ["model|*|0.001|1000|other/bot"]);
    assert_eq!(rows[0].admitted, 500);
}
