//! Two ledgers (two replicas) on one store: spend on one is enforced by the other after a
//! tick; an outage keeps every delta and stores it once.

use std::time::Duration;

use super::super::tests::{agent, config, ledger, noon};
use super::*;
use crate::state::flaky::Flaky;

/// The day and month of `noon()`, as stored.
fn periods() -> (i64, i64) {
    (
        i64::from(super::super::index(Period::Day, noon())),
        i64::from(super::super::index(Period::Month, noon())),
    )
}

const TEN_K: &str = "limits: [{ scope: agent, name: '*', period: day, tokens: 10000 }]";
const PRICES: &str = "p: { m: { input: 1, output: 2 } }";

#[tokio::test]
async fn spend_on_one_replica_is_enforced_by_the_other_after_a_tick() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (ledger(), ledger());
    let config = config(TEN_K, PRICES);
    let bot = agent("bot", &["ci"]);
    a.charge(&config, &bot, ("p", "m"), (6000, 1000), noon());
    b.charge(&config, &bot, ("p", "m"), (3000, 0), noon());
    // Before a tick each knows its own spend only.
    assert_eq!(b.facts(&config, &bot, noon()).unwrap().tokens_left, 7000);
    a.sync(&*store, Some(&config), noon()).await.unwrap();
    b.sync(&*store, Some(&config), noon()).await.unwrap();
    let facts = b.facts(&config, &bot, noon()).unwrap();
    assert!(facts.exceeded, "{facts:?}");
    assert_eq!(facts.tokens_left, 0);
    // A sees B's spend after its next tick, and nothing is counted twice.
    a.sync(&*store, Some(&config), noon()).await.unwrap();
    let spent = a.spent(Scope::Agent, "bot", Period::Day, noon());
    assert_eq!(
        spent,
        Spent {
            input_tokens: 9000,
            output_tokens: 1000,
            micro_usd: 11_000
        }
    );
    assert_eq!(
        a.spent(Scope::Group, "ci", Period::Month, noon()).tokens(),
        10_000
    );
    // The gauges show the fleet's total, not the replica's.
    let gauge = a
        .spent_usd
        .with_label_values(&["agent", "bot", "day"])
        .get();
    assert!((gauge - 0.011).abs() < 1e-9, "{gauge}");
    // A restarted replica starts from what was stored.
    let restarted = ledger();
    restarted.sync(&*store, None, noon()).await.unwrap();
    assert_eq!(
        restarted.spent(Scope::Fleet, super::super::FLEET, Period::Day, noon()),
        spent
    );
}

#[tokio::test]
async fn an_outage_keeps_every_delta_and_stores_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let a = ledger();
    let config = config(TEN_K, PRICES);
    let bot = agent("bot", &[]);
    a.charge(&config, &bot, ("p", "m"), (100, 0), noon());
    store.set_down(true);
    assert!(a.sync(&*store, Some(&config), noon()).await.is_err());
    a.charge(&config, &bot, ("p", "m"), (50, 0), noon());
    assert!(a.sync(&*store, Some(&config), noon()).await.is_err());
    // Decisions go on with what this replica knows.
    assert_eq!(a.facts(&config, &bot, noon()).unwrap().tokens_left, 9850);
    let key = (
        Scope::Agent,
        Arc::from("bot"),
        Period::Day,
        super::super::index(Period::Day, noon()),
    );
    let (stored, unflushed, flushing) = a.spent.get(&key).unwrap().parts();
    assert_eq!(
        (stored.tokens(), unflushed.tokens(), flushing.tokens()),
        (0, 150, 0)
    );
    store.set_down(false);
    a.sync(&*store, Some(&config), noon()).await.unwrap();
    a.sync(&*store, Some(&config), noon()).await.unwrap();
    let (stored, unflushed, flushing) = a.spent.get(&key).unwrap().parts();
    assert_eq!(
        (stored.tokens(), unflushed.tokens(), flushing.tokens()),
        (150, 0, 0)
    );
    let (day, month) = periods();
    let rows = store.inner.spend(day, month).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.scope == "agent" && r.period == "day")
        .unwrap();
    assert_eq!(row.input_tokens, 150, "stored once");
}

#[tokio::test]
async fn stored_but_unread_spend_counts_as_stored_and_a_reset_reaches_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let a = ledger();
    let config = config(TEN_K, PRICES);
    let bot = agent("bot", &[]);
    a.charge(&config, &bot, ("p", "m"), (100, 0), noon());
    let deltas = a.take_unflushed();
    store.add_spend(deltas).await.unwrap();
    a.settle();
    assert_eq!(
        a.spent(Scope::Agent, "bot", Period::Day, noon()).tokens(),
        100
    );
    let (day, month) = periods();
    store
        .reset_spend(Some("agent".into()), Some("bot".into()), (day, month))
        .await
        .unwrap();
    a.sync(&*store, Some(&config), noon()).await.unwrap();
    assert_eq!(
        a.spent(Scope::Agent, "bot", Period::Day, noon()).tokens(),
        0
    );
    // Tomorrow's tick drops today's day spend and keeps the month's.
    let tomorrow = noon() + Duration::from_secs(86_400);
    a.charge(&config, &bot, ("p", "m"), (7, 0), noon());
    a.sync(&*store, Some(&config), tomorrow).await.unwrap();
    assert_eq!(
        a.spent(Scope::Agent, "bot", Period::Day, tomorrow).tokens(),
        0
    );
    assert_eq!(
        a.spent(Scope::Agent, "bot", Period::Month, tomorrow)
            .tokens(),
        7
    );
    let rows = store.inner.spend(day, month).await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.period == "day" && r.input_tokens == 7),
        "yesterday's last spend was stored, not dropped: {rows:?}"
    );
    assert_eq!(
        a.spent.len(),
        2,
        "and then forgotten here (agent and fleet, month)"
    );
}
