//! Fleet counters, on both backends: spend adds up across replicas, counts are per replica,
//! labels and session counts expire, replicas seen lately are counted.

use super::Backend;
use crate::state::fleet::{
    DenyWindow, RESETS_KEPT_MS, RateCount, SessionCount, SessionLabel, SpendReset, SpendRow,
};
use crate::state::pins::now_ms;
use crate::state::quarantine::Actor;

on_both_backends!(
    spend_from_every_replica_adds_up_per_account_and_period,
    spend_past_what_a_count_holds_stays_at_the_most_it_holds,
    each_replica_publishes_its_own_counts_and_stale_ones_go,
    session_labels_are_read_by_every_replica_until_they_expire,
    each_replica_replaces_its_own_session_counts_and_reads_the_others,
    replicas_seen_lately_are_counted_and_the_others_forgotten,
    each_replica_replaces_its_own_denies_and_reads_the_others_until_they_expire,
    a_reset_is_recorded_with_the_wipe_and_read_back_in_order,
);

fn reset(scope: Option<&str>, name: Option<&str>, by: &str) -> SpendReset {
    SpendReset {
        scope: scope.map(str::to_owned),
        name: name.map(str::to_owned),
        by: Actor::cli(by),
    }
}

/// The spend is not wiped without its record: who, what, when, how many accounts; every
/// replica reads the records after the last it read, in the order they were made, and
/// records past [`RESETS_KEPT_MS`] go with the next reset.
async fn a_reset_is_recorded_with_the_wipe_and_read_back_in_order(backend: Backend) {
    let cli = backend.open().await.fleet();
    let gateway = backend.open().await.fleet();
    assert!(gateway.spend_resets(0).await.unwrap().is_empty());
    cli.add_spend(vec![
        spend("agent", "bot", "day", 100, 10),
        spend("agent", "bot", "month", 7, 10),
        spend("agent", "other", "day", 100, 10),
        spend("group", "ci", "day", 100, 10),
        spend("fleet", "*", "day", 100, 10),
    ])
    .await
    .unwrap();
    let before = now_ms();
    let one = cli
        .reset_spend(reset(Some("agent"), Some("bot"), "alice"), (100, 7))
        .await
        .unwrap();
    assert_eq!(one.accounts, 1);
    assert_eq!(one.reset, reset(Some("agent"), Some("bot"), "alice"));
    assert!(one.at_ms >= before && one.at_ms <= now_ms(), "{one:?}");
    let scope = cli
        .reset_spend(reset(Some("agent"), None, "bob"), (100, 7))
        .await
        .unwrap();
    assert_eq!(scope.accounts, 1, "only `other` had spend left");
    let all = cli
        .reset_spend(reset(None, None, "carol"), (100, 7))
        .await
        .unwrap();
    assert_eq!(all.accounts, 2, "the group and the fleet");
    assert!(gateway.spend(100, 7).await.unwrap().is_empty());
    let read = gateway.spend_resets(0).await.unwrap();
    assert_eq!(read, [one.clone(), scope.clone(), all.clone()]);
    assert!(one.id < scope.id && scope.id < all.id, "{read:?}");
    assert_eq!(
        gateway.spend_resets(scope.id).await.unwrap(),
        std::slice::from_ref(&all),
        "only those after the last read"
    );
    assert!(gateway.spend_resets(all.id).await.unwrap().is_empty());
    // The first record made long ago: it goes with the next reset.
    backend
        .execute(&format!(
            "UPDATE budget_resets SET reset_at_ms = 0 WHERE id = {}",
            one.id
        ))
        .await;
    cli.add_spend(vec![spend("agent", "bot", "day", 100, 3)])
        .await
        .unwrap();
    let later = cli
        .reset_spend(reset(Some("agent"), Some("bot"), "dave"), (100, 7))
        .await
        .unwrap();
    assert_eq!(later.accounts, 1);
    let kept: Vec<i64> = gateway
        .spend_resets(0)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        kept,
        [scope.id, all.id, later.id],
        "a record older than {RESETS_KEPT_MS} ms went with the next reset"
    );
}

fn spend(scope: &str, name: &str, period: &str, index: i64, tokens: i64) -> SpendRow {
    SpendRow {
        scope: scope.into(),
        name: name.into(),
        period: period.into(),
        index,
        input_tokens: tokens,
        output_tokens: tokens / 2,
        micro_usd: tokens * 10,
    }
}

async fn spend_from_every_replica_adds_up_per_account_and_period(backend: Backend) {
    let a = backend.open().await.fleet();
    let b = backend.open().await.fleet();
    a.add_spend(vec![
        spend("agent", "bot", "day", 100, 10),
        spend("agent", "bot", "month", 7, 10),
        spend("agent", "bot", "day", 99, 1000),
    ])
    .await
    .unwrap();
    b.add_spend(vec![spend("agent", "bot", "day", 100, 4)])
        .await
        .unwrap();
    b.add_spend(vec![spend("fleet", "*", "day", 100, 4)])
        .await
        .unwrap();
    let rows = a.spend(100, 7).await.unwrap();
    assert_eq!(
        rows,
        [
            SpendRow {
                input_tokens: 14,
                output_tokens: 7,
                micro_usd: 140,
                ..spend("agent", "bot", "day", 100, 0)
            },
            spend("agent", "bot", "month", 7, 10),
            spend("fleet", "*", "day", 100, 4),
        ],
        "yesterday (day 99) is not today's"
    );
    assert_eq!(
        b.reset_spend(reset(Some("agent"), Some("bot"), "alice"), (100, 7))
            .await
            .unwrap()
            .accounts,
        1,
        "one account, of two periods"
    );
    assert_eq!(a.spend(100, 7).await.unwrap().len(), 1, "the fleet's stays");
    assert!(
        a.spend(99, 7).await.unwrap().is_empty(),
        "past periods went"
    );
}

/// A hostile upstream reports usage no count holds: the account stays at the largest count,
/// and later flushes to it still succeed.
async fn spend_past_what_a_count_holds_stays_at_the_most_it_holds(backend: Backend) {
    let a = backend.open().await.fleet();
    let b = backend.open().await.fleet();
    a.add_spend(vec![spend("fleet", "*", "day", 100, 10)])
        .await
        .unwrap();
    let beyond = SpendRow {
        input_tokens: i64::MAX,
        output_tokens: i64::MAX / 2,
        micro_usd: i64::MAX,
        ..spend("fleet", "*", "day", 100, 0)
    };
    b.add_spend(vec![beyond]).await.unwrap();
    a.add_spend(vec![spend("fleet", "*", "day", 100, 4)])
        .await
        .unwrap();
    let rows = a.spend(100, 7).await.unwrap();
    assert_eq!(
        rows,
        [SpendRow {
            input_tokens: i64::MAX,
            output_tokens: i64::MAX / 2 + 7,
            micro_usd: i64::MAX,
            ..spend("fleet", "*", "day", 100, 0)
        }]
    );
}

fn count(replica: &str, bucket: &str, admitted: i64, updated_ms: i64) -> RateCount {
    RateCount {
        replica: replica.into(),
        bucket: bucket.into(),
        admitted,
        interval_ns: 1_000_000_000,
        updated_ms,
    }
}

async fn each_replica_publishes_its_own_counts_and_stale_ones_go(backend: Backend) {
    let (a, b) = (backend.open().await.fleet(), backend.open().await.fleet());
    let now = now_ms();
    a.publish_counts(vec![count("a", "agent|bot", 3, now)])
        .await
        .unwrap();
    a.publish_counts(vec![count("a", "agent|bot", 5, now)])
        .await
        .unwrap();
    b.publish_counts(vec![
        count("b", "agent|bot", 2, now),
        count("gone", "agent|bot", 9, now - 600_000),
    ])
    .await
    .unwrap();
    let mut counts = b.counts(now - 60_000).await.unwrap();
    counts.sort_by(|x, y| x.replica.cmp(&y.replica));
    assert_eq!(
        counts,
        [
            count("a", "agent|bot", 5, now),
            count("b", "agent|bot", 2, now)
        ]
    );
    assert_eq!(
        a.counts(0).await.unwrap().len(),
        2,
        "the stale one was removed"
    );
}

async fn session_labels_are_read_by_every_replica_until_they_expire(backend: Backend) {
    let (a, b) = (backend.open().await.fleet(), backend.open().await.fleet());
    let now = now_ms();
    let label = |session: &str, label: &str, expires_ms| SessionLabel {
        session: session.into(),
        label: label.into(),
        owner: format!("{session}-agent"),
        expires_ms,
        updated_ms: 0,
    };
    a.add_labels(vec![
        label("s1", "private", now + 60_000),
        label("s2", "private", now - 1),
    ])
    .await
    .unwrap();
    a.add_labels(vec![label("s1", "private", now + 1000)])
        .await
        .unwrap();
    let read = b.labels(now - 5000).await.unwrap();
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(
        (&*read[0].session, &*read[0].label, &*read[0].owner),
        ("s1", "private", "s1-agent")
    );
    assert_eq!(read[0].expires_ms, now + 60_000, "the later expiry is kept");
    assert!(read[0].updated_ms >= now);
    assert!(b.labels(now + 60_000).await.unwrap().is_empty());
}

async fn each_replica_replaces_its_own_session_counts_and_reads_the_others(backend: Backend) {
    let (a, b) = (backend.open().await.fleet(), backend.open().await.fleet());
    let now = now_ms();
    let count = |replica: &str, session: &str, actions, expires_ms| SessionCount {
        replica: replica.into(),
        session: session.into(),
        owner: format!("{session}-agent"),
        actions,
        keys: format!("v00000000000000ab={actions}"),
        expires_ms,
        updated_ms: 0,
    };
    a.publish_session_counts(vec![count("a", "s1", 1, now + 60_000)])
        .await
        .unwrap();
    a.publish_session_counts(vec![
        count("a", "s1", 3, now + 60_000),
        count("a", "gone", 9, now - 1),
    ])
    .await
    .unwrap();
    b.publish_session_counts(vec![count("b", "s1", 2, now + 60_000)])
        .await
        .unwrap();
    let read = b.session_counts("b".into(), now - 5000).await.unwrap();
    assert_eq!(
        read.len(),
        1,
        "its own and the expired are left out: {read:?}"
    );
    assert_eq!(
        (&*read[0].replica, &*read[0].session, read[0].actions),
        ("a", "s1", 3),
        "replaced, not added"
    );
    assert_eq!(read[0].keys, "v00000000000000ab=3");
    assert_eq!(read[0].owner, "s1-agent");
    assert!(read[0].updated_ms >= now);
    let from_a = a.session_counts("a".into(), now - 5000).await.unwrap();
    assert_eq!(from_a.len(), 1);
    assert_eq!(from_a[0].replica, "b");
    assert!(
        a.session_counts("a".into(), now + 60_000)
            .await
            .unwrap()
            .is_empty(),
        "nothing stored since"
    );
}

async fn replicas_seen_lately_are_counted_and_the_others_forgotten(backend: Backend) {
    let (a, b) = (backend.open().await.fleet(), backend.open().await.fleet());
    let now = now_ms();
    assert_eq!(a.seen("old".into(), now - 60_000, 0).await.unwrap(), 1);
    assert_eq!(a.seen("a".into(), now, now - 10_000).await.unwrap(), 1);
    assert_eq!(b.seen("b".into(), now, now - 10_000).await.unwrap(), 2);
    assert_eq!(
        a.seen("a".into(), now + 1, now - 10_000).await.unwrap(),
        2,
        "seen again, still one"
    );
}

async fn each_replica_replaces_its_own_denies_and_reads_the_others_until_they_expire(
    backend: Backend,
) {
    let a = backend.open().await.fleet();
    let b = backend.open().await.fleet();
    let now = now_ms();
    let window = |replica: &str, agent: &str, at_ms: Vec<i64>, expires_ms: i64| DenyWindow {
        replica: replica.into(),
        agent: agent.into(),
        at_ms,
        fired_ms: 0,
        expires_ms,
    };
    a.publish_denies(vec![
        window("ra", "bot", vec![now - 2, now - 1], now + 60_000),
        window("ra", "old", vec![now - 90_000], now - 30_000),
    ])
    .await
    .unwrap();
    b.publish_denies(vec![window("rb", "bot", vec![now], now + 60_000)])
        .await
        .unwrap();
    assert_eq!(
        b.denies("rb".into()).await.unwrap(),
        [window("ra", "bot", vec![now - 2, now - 1], now + 60_000)],
        "the others' denies, the expired ones gone"
    );
    // Replaced: the trigger fired on replica a, which counts none of them any more; when it
    // fired is kept for the others to read until it leaves the window.
    let fired = DenyWindow {
        fired_ms: now,
        ..window("ra", "bot", vec![], now + 60_000)
    };
    a.publish_denies(vec![fired.clone()]).await.unwrap();
    assert_eq!(b.denies("rb".into()).await.unwrap(), [fired]);
    a.publish_denies(vec![window("ra", "bot", vec![], now)])
        .await
        .unwrap();
    assert!(b.denies("rb".into()).await.unwrap().is_empty());
    assert_eq!(
        a.denies("ra".into()).await.unwrap(),
        [window("rb", "bot", vec![now], now + 60_000)]
    );
}
