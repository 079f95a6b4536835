//! Two ledgers (two replicas) on one store: spend on one is enforced by the other after a
//! tick; an outage keeps every delta and stores it once.

use std::time::Duration;

use super::super::tests::{agent, config, ledger, noon};
use super::*;
use crate::audit::AuditLog;
use crate::audit::config::AuditConfig;
use crate::audit::read::Reader;
use crate::state::flaky::Flaky;
use crate::state::fleet::SpendReset;
use crate::state::quarantine::Actor;

fn reset(scope: Option<&str>, name: Option<&str>, by: &str) -> SpendReset {
    SpendReset {
        scope: scope.map(str::to_owned),
        name: name.map(str::to_owned),
        by: Actor::cli(by),
    }
}

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
    a.charge(&config, &bot, ("p", "m", None), (6000, 1000), noon());
    b.charge(&config, &bot, ("p", "m", None), (3000, 0), noon());
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
    a.charge(&config, &bot, ("p", "m", None), (100, 0), noon());
    store.set_down(true);
    assert!(a.sync(&*store, Some(&config), noon()).await.is_err());
    a.charge(&config, &bot, ("p", "m", None), (50, 0), noon());
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
    a.charge(&config, &bot, ("p", "m", None), (100, 0), noon());
    let deltas = a.take_unflushed();
    store.add_spend(deltas).await.unwrap();
    a.settle();
    assert_eq!(
        a.spent(Scope::Agent, "bot", Period::Day, noon()).tokens(),
        100
    );
    let (day, month) = periods();
    store
        .reset_spend(reset(Some("agent"), Some("bot"), "alice"), (day, month))
        .await
        .unwrap();
    a.sync(&*store, Some(&config), noon()).await.unwrap();
    assert_eq!(
        a.spent(Scope::Agent, "bot", Period::Day, noon()).tokens(),
        0
    );
    // Tomorrow's tick drops today's day spend and keeps the month's.
    let tomorrow = noon() + Duration::from_secs(86_400);
    a.charge(&config, &bot, ("p", "m", None), (7, 0), noon());
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

/// `budgets:` of `TEN_K`, deciding as `on_stale` says past three seconds without a read.
fn stale_config(on_stale: &str) -> BudgetsConfig {
    config(
        &format!("{TEN_K}\nsync_interval: 1s\nstale_after: 3s\non_stale: {on_stale}"),
        PRICES,
    )
}

fn at(seconds: u64) -> SystemTime {
    noon() + Duration::from_secs(seconds)
}

#[tokio::test]
async fn past_stale_after_without_a_read_budget_decisions_are_refused_until_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let a = ledger();
    let config = stale_config("refuse");
    let bot = agent("bot", &[]);
    a.fresh.attached(noon());
    a.sync(&*store, Some(&config), noon()).await.unwrap();
    store.set_down(true);
    assert!(a.sync(&*store, Some(&config), at(2)).await.is_err());
    let facts = a
        .judge(&config, &bot, at(2), None)
        .expect("within stale_after");
    assert_eq!(facts.unwrap().tokens_left, 10_000);
    assert_eq!(a.fresh.gauge.get(), 0);
    assert!(a.sync(&*store, Some(&config), at(4)).await.is_err());
    assert_eq!(
        a.fresh.gauge.get(),
        1,
        "stale is shown as soon as a tick fails past it"
    );
    let refused = a
        .judge(&config, &bot, at(4), None)
        .expect_err("fails closed");
    assert_eq!(refused.stale_for, Duration::from_secs(4));
    let message = refused.to_string();
    assert!(
        message.contains("budgets.stale_after") && message.contains("budgets.on_stale"),
        "{message}"
    );
    // An agent no budget bounds is not held back by budgets it does not have.
    let config_for_bot_only = super::super::tests::config(
        "limits: [{ scope: agent, name: bot, period: day, tokens: 10 }]\nstale_after: 3s",
        PRICES,
    );
    let free = a
        .judge(&config_for_bot_only, &agent("free", &[]), at(4), None)
        .expect("no budget bounds it");
    assert_eq!(free.unwrap().tokens_left, super::super::UNLIMITED);
    store.set_down(false);
    a.sync(&*store, Some(&config), at(5)).await.unwrap();
    assert!(a.judge(&config, &bot, at(5), None).is_ok(), "fresh again");
    assert_eq!(a.fresh.gauge.get(), 0);
}

#[tokio::test]
async fn with_on_stale_share_a_replica_spends_its_share_of_what_was_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b, c) = (ledger(), ledger(), ledger());
    let config = stale_config("share");
    let bot = agent("bot", &[]);
    a.charge(&config, &bot, ("p", "m", None), (1000, 0), noon());
    for replica in [&a, &b, &c] {
        replica.fresh.attached(noon());
        replica.sync(&*store, Some(&config), noon()).await.unwrap();
    }
    a.sync(&*store, Some(&config), noon()).await.unwrap();
    store.set_down(true);
    // Fresh: the fleet's 9000 left.
    let facts = a.judge(&config, &bot, at(1), None).unwrap().unwrap();
    assert_eq!(facts.tokens_left, 9000);
    // Stale: a third of it, this replica's spend since counted against it.
    let facts = a.judge(&config, &bot, at(4), None).unwrap().unwrap();
    assert_eq!((facts.tokens_left, facts.exceeded), (3000, false));
    a.charge(&config, &bot, ("p", "m", None), (2000, 0), at(4));
    assert!(a.sync(&*store, Some(&config), at(4)).await.is_err());
    let facts = a.judge(&config, &bot, at(5), None).unwrap().unwrap();
    assert_eq!((facts.tokens_left, facts.exceeded), (1000, false));
    // A call in flight on this replica spends its share too, for the calls judged after it.
    let reserved = a.reserve(&config, &bot, ("p", "m"), (400, 0), at(5));
    let facts = a.judge(&config, &bot, at(5), reserved.as_ref()).unwrap();
    assert_eq!(facts.unwrap().tokens_left, 1000);
    let facts = a.judge(&config, &bot, at(5), None).unwrap().unwrap();
    assert_eq!(facts.tokens_left, 600);
    drop(reserved);
    a.charge(&config, &bot, ("p", "m", None), (1000, 0), at(5));
    let facts = a.judge(&config, &bot, at(5), None).unwrap().unwrap();
    assert_eq!((facts.tokens_left, facts.exceeded), (0, true));
    assert_eq!(facts.used_ratio_percent, 100);
    // Back: the fleet's totals again (this replica's 4000 stored, 6000 left).
    store.set_down(false);
    a.sync(&*store, Some(&config), at(6)).await.unwrap();
    let facts = a.judge(&config, &bot, at(6), None).unwrap().unwrap();
    assert_eq!(facts.tokens_left, 6000);
}

#[tokio::test]
async fn stored_but_unread_spend_counts_as_this_replicas_own_when_stale() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let (a, b) = (ledger(), ledger());
    let config = stale_config("share");
    let bot = agent("bot", &[]);
    for replica in [&a, &b] {
        replica.fresh.attached(noon());
        replica.sync(&*store, Some(&config), noon()).await.unwrap();
    }
    a.sync(&*store, Some(&config), noon()).await.unwrap();
    a.charge(&config, &bot, ("p", "m", None), (1000, 0), noon());
    let deltas = a.take_unflushed();
    store.add_spend(deltas).await.unwrap();
    a.settle();
    store.set_down(true);
    // Of the 10 000 left at the last read, half is A's, and A spent 1000 of it since.
    let facts = a.judge(&config, &bot, at(4), None).unwrap().unwrap();
    assert_eq!(facts.tokens_left, 4000);
}

/// Every gateway audits each reset once, with who made it; not the resets made before it
/// started; and a read that fails audits nothing and loses nothing.
#[tokio::test]
async fn each_gateway_audits_each_reset_made_since_it_started_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Flaky::sqlite(dir.path()).await;
    let periods = periods();
    let before = store
        .reset_spend(reset(Some("agent"), Some("old"), "mallory"), periods)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (a, b) = (ledger(), ledger());
    let (dir_a, dir_b) = (dir.path().join("audit-a"), dir.path().join("audit-b"));
    let audit_a = AuditLog::open(&dir_a, &AuditConfig::default()).unwrap();
    let audit_b = AuditLog::open(&dir_b, &AuditConfig::default()).unwrap();
    assert_eq!(a.audit_resets(&*store, &audit_a).await.unwrap(), 0);
    let bot = store
        .reset_spend(reset(Some("agent"), Some("bot"), "alice"), periods)
        .await
        .unwrap();
    store.set_down(true);
    assert!(b.audit_resets(&*store, &audit_b).await.is_err());
    store.set_down(false);
    let all = store
        .reset_spend(reset(None, None, "bob"), periods)
        .await
        .unwrap();
    for _ in 0..2 {
        assert!(a.audit_resets(&*store, &audit_a).await.is_ok());
        assert!(b.audit_resets(&*store, &audit_b).await.is_ok());
    }
    audit_a.close().await.unwrap();
    audit_b.close().await.unwrap();
    for dir in [dir_a, dir_b] {
        let resets: Vec<serde_json::Value> = Reader::new(&dir)
            .next_batch()
            .unwrap()
            .into_iter()
            .filter(|r| r.value["kind"] == "system" && r.value["detail"]["event"] == "budget_reset")
            .map(|r| r.value)
            .collect();
        assert_eq!(resets.len(), 2, "{} of {resets:#?}", before.id);
        let (first, second) = (&resets[0], &resets[1]);
        assert_eq!(first["detail"]["reset"], bot.id);
        assert_eq!(first["detail"]["scope"], "agent");
        assert_eq!(first["detail"]["name"], "bot");
        assert_eq!(first["detail"]["all"], false);
        assert_eq!(
            first["detail"]["by"],
            serde_json::json!({"id": "alice", "issuer": "warden-cli"})
        );
        assert_eq!(first["detail"]["at_ms"], bot.at_ms);
        assert_eq!(first["detail"]["accounts"], bot.accounts);
        assert_eq!(first["principal"]["id"], "bot");
        assert_eq!(second["detail"]["reset"], all.id);
        assert_eq!(second["detail"]["scope"], serde_json::Value::Null);
        assert_eq!(second["detail"]["all"], true);
        assert_eq!(second["detail"]["by"]["id"], "bob");
    }
}
