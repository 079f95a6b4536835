//! Two limiters (two replicas) on one store: a burst split across them is enforced for the
//! fleet once each has read the other's counts; an outage loses no count.

use super::super::tests::{config, subject};
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
        assert!(a.admit(&config, &bot).is_ok());
    }
    a.sync(&*store, now).await.unwrap();
    b.sync(&*store, now).await.unwrap();
    // B has never seen the agent: its new bucket starts with A's three.
    assert!(b.admit(&config, &bot).is_ok(), "the fourth of the burst");
    let refused = b
        .admit(&config, &bot)
        .expect_err("the burst is spent fleet-wide");
    assert_eq!(refused.value, "bot");
    // And A, once it has read B's, refuses too (its own bucket charged).
    b.sync(&*store, now).await.unwrap();
    a.sync(&*store, now).await.unwrap();
    assert!(a.admit(&config, &bot).is_err());
    // Another agent is not charged.
    assert!(a.admit(&config, &subject("other", &[])).is_ok());
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
    assert!(b.admit(&config, &bot).is_ok(), "B has a bucket of its own");
    store.set_down(true);
    for _ in 0..3 {
        assert!(a.admit(&config, &bot).is_ok());
    }
    assert!(a.sync(&*store, now).await.is_err());
    assert!(b.sync(&*store, now).await.is_err());
    assert!(
        b.admit(&config, &bot).is_ok(),
        "down: B goes on with its own counts"
    );
    store.set_down(false);
    a.sync(&*store, now).await.unwrap();
    b.sync(&*store, now).await.unwrap();
    assert!(
        b.admit(&config, &bot).is_err(),
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
        assert!(old.admit(&config, &bot).is_ok());
    }
    old.sync(&*store, now_ms()).await.unwrap();
    drop(old);
    let new = replica();
    new.sync(&*store, now_ms()).await.unwrap();
    assert!(new.admit(&config, &bot).is_ok());
}
