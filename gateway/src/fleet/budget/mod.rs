//! Token and cost budgets per agent, group and fleet, per calendar day and month (UTC).
//!
//! Every LLM response's usage (streams included, counted when the response ends) is charged
//! to its agent, each of the agent's groups and the fleet, in tokens and in dollars priced by
//! the price table ([`prices`]). Before the decision, an agent's remaining budget — the
//! tightest of the `budgets.limits` that apply to it — is put in `context.budget` for policy
//! to deny, downgrade or hold past a threshold. The decision reads spend from memory and never
//! waits for it; every `budgets.sync_interval` each replica adds what it charged to the state
//! store and reads back every replica's totals ([`sync`]), so that all enforce the same
//! remaining budget and a restart keeps what was spent. A response whose usage cannot be read
//! is charged an estimate ([`estimate`]). While an LLM call is in flight its worst-case cost is
//! reserved, and counted as spent by the calls judged meanwhile on this replica ([`reserve`]).

pub mod config;
pub mod estimate;
mod freshness;
pub mod plausible;
pub mod prices;
pub mod reserve;
mod resets_seen;
mod spent;
pub mod sync;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::{Arc, LazyLock};

use dashmap::DashMap;
use prometheus::{Gauge, GaugeVec, Opts};

use crate::action::{BudgetFacts, Principal};
use crate::telemetry::metrics::Metrics;
pub use config::{BudgetLimit, BudgetsConfig, OnStale, Period, Scope};
pub use prices::BudgetError;
pub use reserve::Reservation;
use spent::Account;
pub use spent::Spent;

/// The fleet's name in the spend table.
pub const FLEET: &str = "*";

/// [`FLEET`], shared: looking an account up takes no allocation.
static FLEET_NAME: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(FLEET));

/// One account's spend as this replica knows it: the fleet's total at the last sync, what this
/// replica charged since and has not stored yet, what it is storing now, and what it stored
/// but has not read back in the fleet's total yet.
#[derive(Debug, Clone, Default)]
struct Entry {
    stored: Spent,
    unflushed: Spent,
    flushing: Spent,
    unread: Spent,
    /// Its gauges, once exported (stale after a reset: see `Gauges::made_at`).
    gauges: Option<Gauges>,
}

/// One account's series of `warden_budget_spent_usd` and `warden_budget_remaining_ratio`
/// (the latter once a budget bounds the account).
#[derive(Debug, Clone)]
struct Gauges {
    /// [`Ledger::resets`] when they were made: older ones were reset away.
    made_at: u64,
    spent_usd: Gauge,
    remaining: Option<Gauge>,
}

impl Entry {
    fn total(&self) -> Spent {
        let mut total = self.stored;
        total.add(self.unflushed);
        total.add(self.flushing);
        total.add(self.unread);
        total
    }
}

/// Accounts past which spend is not exported as metrics (a gauge cannot be summed into an
/// `other` label); it is still counted.
const METRIC_ACCOUNTS_MAX: usize = 4096;

/// Characters of an agent's or group's name kept in a metric label.
const LABEL_MAX: usize = 64;

/// The spend of every agent, group and the fleet, in the current day and month.
pub struct Ledger {
    spent: DashMap<Account, Entry>,
    /// The day spend was last charged on: past periods are dropped when it changes.
    day: AtomicU64,
    /// `warden_budget_spent_usd{scope,name,period}`.
    spent_usd: GaugeVec,
    /// `warden_budget_remaining_ratio{scope,name,period}`.
    remaining: GaugeVec,
    /// How fresh the fleet's totals are ([`sync`]).
    fresh: freshness::Freshness,
    /// How many times the gauges were reset (a new day): an entry's gauges made before the
    /// last reset are made again.
    resets: AtomicU64,
    /// What the LLM calls in flight on this replica reserved ([`reserve`]).
    reserved: Arc<reserve::Reserved>,
    /// Which operators' resets of spend this gateway audited (`sync/resets.rs`).
    reset_records: resets_seen::Seen,
}

impl Ledger {
    /// An empty ledger, its gauges registered with `metrics`.
    pub fn new(metrics: &Metrics) -> Ledger {
        let gauge = |name: &str, help: &str| {
            GaugeVec::new(Opts::new(name, help), &["scope", "name", "period"])
                .expect("static metric definition")
        };
        let spent_usd = gauge(
            "warden_budget_spent_usd",
            "US dollars spent in the current day or month, by agent, group or the fleet (name `*`).",
        );
        let remaining = gauge(
            "warden_budget_remaining_ratio",
            "What is left of the tightest budget on an agent, group or the fleet, 0 to 1, by period.",
        );
        metrics.register(vec![
            Box::new(spent_usd.clone()),
            Box::new(remaining.clone()),
        ]);
        Ledger {
            spent: DashMap::new(),
            day: AtomicU64::new(0),
            spent_usd,
            remaining,
            fresh: freshness::Freshness::new(metrics),
            resets: AtomicU64::new(0),
            reserved: Arc::new(reserve::Reserved::new(metrics)),
            reset_records: resets_seen::Seen::new(SystemTime::now()),
        }
    }

    /// Charges `principal` (its groups and the fleet) with `input` and `output` tokens of
    /// `provider`'s `model` (the one the request asked for, which policy judged), priced by
    /// `config`'s price table, at `now`; when the answer names another model that costs more
    /// (`answered`), by that one: an upstream cannot make tokens free by naming a model the
    /// table does not price, nor cheaper by naming a cheaper one.
    pub fn charge(
        &self,
        config: &BudgetsConfig,
        principal: &Principal,
        (provider, model, answered): (&str, &str, Option<&str>),
        (input, output): (u64, u64),
        now: SystemTime,
    ) {
        let prices = &config.table;
        if input.saturating_add(output) == 0 {
            return;
        }
        let micro_usd = std::iter::once(model)
            .chain(answered)
            .filter_map(|model| prices.cost_micro_usd(provider, model, input, output))
            .max()
            .unwrap_or_else(|| {
                tracing::debug!(
                    provider,
                    model,
                    "no price for the model: its tokens cost $0 in budgets"
                );
                0
            });
        self.roll_over(now);
        let charged = Spent {
            input_tokens: input,
            output_tokens: output,
            micro_usd,
        };
        let names = std::iter::once((Scope::Agent, &principal.id))
            .chain(principal.groups.iter().map(|g| (Scope::Group, g)))
            .chain(std::iter::once((Scope::Fleet, &*FLEET_NAME)));
        for (scope, name) in names {
            for period in Period::ALL {
                let account = (scope, Arc::clone(name), period, index(period, now));
                let mut entry = self.spent.entry(account.clone()).or_default();
                entry.unflushed.add(charged);
                let (spent, gauges) = (entry.total(), entry.gauges.clone());
                drop(entry);
                self.export(config, &account, spent, gauges);
            }
        }
    }

    /// Drops the spend of past periods when the day changed since the last call (what is
    /// not stored yet stays until it is).
    fn roll_over(&self, now: SystemTime) {
        let day = days(now);
        if self.day.swap(day, Ordering::Relaxed) != day {
            let (d, m) = (index(Period::Day, now), index(Period::Month, now));
            self.spent.retain(|(_, _, period, i), entry| {
                let current = match period {
                    Period::Day => *i == d,
                    Period::Month => *i == m,
                };
                current || !entry.unflushed.is_zero() || !entry.flushing.is_zero()
            });
            // Counted before and after: gauges made while the reset runs are made again.
            self.resets.fetch_add(1, Ordering::Relaxed);
            self.spent_usd.reset();
            self.remaining.reset();
            self.resets.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets the account's gauges: its spend, and what is left of the tightest budget on it.
    /// `gauges`: the account's, when exported before (else they are made, and kept in its
    /// entry, while the accounts are fewer than [`METRIC_ACCOUNTS_MAX`]).
    fn export(
        &self,
        config: &BudgetsConfig,
        account: &Account,
        spent: Spent,
        gauges: Option<Gauges>,
    ) {
        let (scope, name, period) = (account.0, &*account.1, account.2);
        let mut facts = BudgetFacts::UNBOUNDED;
        let on_account = |l: &&BudgetLimit| {
            l.scope == scope
                && l.period == period
                && (scope == Scope::Fleet
                    || l.name.as_deref().is_some_and(|n| n == "*" || n == name))
        };
        let mut bounded = false;
        for limit in config.limits.iter().filter(on_account) {
            facts.tighten(limit, spent);
            bounded = true;
        }
        let resets = self.resets.load(Ordering::Relaxed);
        let gauges = match gauges {
            Some(gauges)
                if gauges.made_at == resets && (gauges.remaining.is_some() || !bounded) =>
            {
                gauges
            }
            cached => {
                if cached.is_none() && self.spent.len() > METRIC_ACCOUNTS_MAX {
                    return;
                }
                let label = crate::text::bounded(name, LABEL_MAX);
                let labels = [scope.as_str(), &*label, period.as_str()];
                let made = Gauges {
                    made_at: resets,
                    spent_usd: self.spent_usd.with_label_values(&labels),
                    remaining: bounded.then(|| self.remaining.with_label_values(&labels)),
                };
                if let Some(mut entry) = self.spent.get_mut(account) {
                    entry.gauges = Some(made.clone());
                }
                made
            }
        };
        gauges.spent_usd.set(spent.micro_usd as f64 / 1e6);
        if let (true, Some(remaining)) = (bounded, &gauges.remaining) {
            let left = 1.0 - (facts.used_ratio_percent.min(100) as f64 / 100.0);
            remaining.set(left);
        }
    }

    /// What `scope`'s `name` spent in the `period` holding `now`.
    pub fn spent(&self, scope: Scope, name: &str, period: Period, now: SystemTime) -> Spent {
        self.spent_of(scope, &Arc::from(name), period, now)
    }

    /// [`Ledger::spent`], for a name already shared.
    fn spent_of(&self, scope: Scope, name: &Arc<str>, period: Period, now: SystemTime) -> Spent {
        self.spent
            .get(&(scope, Arc::clone(name), period, index(period, now)))
            .map(|e| e.total())
            .unwrap_or_default()
    }

    /// `principal`'s remaining budget at `now` (`context.budget`): each figure from the
    /// tightest budget that bounds it, what the calls in flight reserved counted as spent;
    /// `None` when no budget is configured.
    pub fn facts(
        &self,
        config: &BudgetsConfig,
        principal: &Principal,
        now: SystemTime,
    ) -> Option<BudgetFacts> {
        self.facts_besides(config, principal, now, None)
    }

    /// [`Ledger::facts`] for the call that holds `own`: the other calls' reservations count as
    /// spent, its own does not.
    fn facts_besides(
        &self,
        config: &BudgetsConfig,
        principal: &Principal,
        now: SystemTime,
        own: Option<&Reservation>,
    ) -> Option<BudgetFacts> {
        if config.limits.is_empty() {
            return None;
        }
        let mut facts = BudgetFacts::UNBOUNDED;
        for (limit, account) in bounding(config, principal, now) {
            let mut spent = self
                .spent
                .get(&account)
                .map(|e| e.total())
                .unwrap_or_default();
            spent.add(self.reserved.on(&account, own));
            facts.tighten(limit, spent);
        }
        Some(facts)
    }

    /// Every account with spend in the current periods: scope, name, period, spend.
    pub fn accounts(&self, now: SystemTime) -> Vec<(Scope, Arc<str>, Period, Spent)> {
        let current = |p: Period, i: u32| index(p, now) == i;
        let mut accounts: Vec<_> = self
            .spent
            .iter()
            .filter(|e| current(e.key().2, e.key().3))
            .map(|e| {
                (
                    e.key().0,
                    Arc::clone(&e.key().1),
                    e.key().2,
                    e.value().total(),
                )
            })
            .collect();
        accounts.sort_by(|a, b| {
            (a.0.as_str(), &a.1, a.2.as_str()).cmp(&(b.0.as_str(), &b.1, b.2.as_str()))
        });
        accounts
    }

    /// Reserves `input` and `output` tokens of `provider`'s `model` (priced as a charge would
    /// price them, by the model asked for) on every account a budget of `config` bounds
    /// `principal` by, in the periods holding `now`; `None` when no budget bounds it.
    pub fn reserve(
        &self,
        config: &BudgetsConfig,
        principal: &Principal,
        (provider, model): (&str, &str),
        (input, output): (u64, u64),
        now: SystemTime,
    ) -> Option<Reservation> {
        let mut accounts: Vec<Account> = Vec::new();
        for (_, account) in bounding(config, principal, now) {
            if !accounts.contains(&account) {
                accounts.push(account);
            }
        }
        if accounts.is_empty() {
            return None;
        }
        let amount = Spent {
            input_tokens: input,
            output_tokens: output,
            micro_usd: config
                .table
                .cost_micro_usd(provider, model, input, output)
                .unwrap_or(0),
        };
        Some(self.reserved.reserve(accounts, amount))
    }

    /// An approved call reserves again, on every account a budget of `config` bounds
    /// `principal` by in the periods holding `now`, what it gave back while it waited
    /// ([`Reservation::hold_on_agent_only`]); `false` (nothing done) when it was not held so.
    /// Any scope: a wait that crossed a period's end (a day budget's midnight) moves its
    /// agent's own reservation to the new period's account too, and gives back the old one's.
    pub fn widen(
        &self,
        reservation: &mut Reservation,
        config: &BudgetsConfig,
        principal: &Principal,
        now: SystemTime,
    ) -> bool {
        if !reservation.narrowed() {
            return false;
        }
        let accounts = bounding(config, principal, now)
            .map(|(_, account)| account)
            .collect();
        self.reserved.widen(reservation, accounts);
        true
    }
}

/// Each budget of `config` that bounds `principal`, with the account it bounds in the period
/// holding `now`.
fn bounding<'a>(
    config: &'a BudgetsConfig,
    principal: &'a Principal,
    now: SystemTime,
) -> impl Iterator<Item = (&'a BudgetLimit, Account)> + 'a {
    config.limits.iter().flat_map(move |limit| {
        bounded(limit, principal).map(move |name| {
            let account = (
                limit.scope,
                Arc::clone(name),
                limit.period,
                index(limit.period, now),
            );
            (limit, account)
        })
    })
}

/// The names whose spend `limit` bounds for `principal`: its id, its groups, or the fleet.
fn bounded<'a>(
    limit: &'a BudgetLimit,
    principal: &'a Principal,
) -> impl Iterator<Item = &'a Arc<str>> + 'a {
    let matches = |name: &str| limit.name.as_deref().is_some_and(|n| n == "*" || n == name);
    let agent = (limit.scope == Scope::Agent).then_some(&principal.id);
    let groups = principal
        .groups
        .iter()
        .filter(move |_| limit.scope == Scope::Group);
    let fleet = (limit.scope == Scope::Fleet).then_some(&*FLEET_NAME);
    agent
        .into_iter()
        .chain(groups)
        .filter(move |name| matches(name))
        .chain(fleet)
}

impl BudgetFacts {
    /// Facts no budget bounds.
    pub const UNBOUNDED: BudgetFacts = BudgetFacts {
        tokens_left: UNLIMITED,
        cost_left_micro_usd: UNLIMITED,
        used_ratio_percent: 0,
        exceeded: false,
    };

    /// Takes in `limit`, with `spent` against it.
    fn tighten(&mut self, limit: &BudgetLimit, spent: Spent) {
        if let Some(tokens) = limit.tokens {
            let used = spent.tokens();
            self.tokens_left = self.tokens_left.min(tokens.saturating_sub(used));
            self.used_ratio_percent = self.used_ratio_percent.max(percent(used, tokens));
            self.exceeded |= used >= tokens;
        }
        if let Some(usd) = limit.usd {
            let micro = (usd * 1e6).round() as u64;
            self.cost_left_micro_usd = self
                .cost_left_micro_usd
                .min(micro.saturating_sub(spent.micro_usd));
            self.used_ratio_percent = self.used_ratio_percent.max(percent(spent.micro_usd, micro));
            self.exceeded |= spent.micro_usd >= micro;
        }
    }
}

/// A figure no budget bounds (Cedar's largest `Long`).
pub const UNLIMITED: u64 = i64::MAX as u64;

/// `used` of `limit`, in whole percent.
fn percent(used: u64, limit: u64) -> u64 {
    (u128::from(used) * 100 / u128::from(limit.max(1))).min(u128::from(UNLIMITED)) as u64
}

/// Days since 1970-01-01 (UTC) at `t`.
fn days(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) / 86_400
}

/// Which day or month `t` falls in: days since 1970, or `year * 12 + month - 1`.
pub fn index(period: Period, t: SystemTime) -> u32 {
    let days = days(t);
    match period {
        Period::Day => days as u32,
        Period::Month => {
            let (year, month) = year_month(days as i64);
            (year * 12 + month - 1) as u32
        }
    }
}

/// The civil year and month (1-12) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn year_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    pub(super) fn agent(id: &str, groups: &[&str]) -> Principal {
        Principal {
            id: Arc::from(id),
            groups: groups.iter().map(|g| Arc::from(*g)).collect(),
            ..Principal::anonymous()
        }
    }

    /// `budgets:` as `yaml` says, with the price table `prices`.
    pub(super) fn config(yaml: &str, prices: &str) -> BudgetsConfig {
        let mut config: BudgetsConfig = serde_saphyr::from_str(yaml).expect("config");
        assert_eq!(config.validate(), []);
        config.table = Arc::new(prices::Prices::parse(prices, "test").expect("prices"));
        config
    }

    pub(super) fn ledger() -> Ledger {
        Ledger::new(&Metrics::new())
    }

    // 2026-12-04T12:00:00Z.
    pub(super) fn noon() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_385_600)
    }

    #[test]
    fn months_are_calendar_months() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(days(noon()) as i64), (2026, 12));
        // 2024-02-29 is day 19782.
        assert_eq!(year_month(19_782), (2024, 2));
        assert_eq!(year_month(19_783), (2024, 3));
    }

    #[test]
    fn tokens_are_priced_by_the_model_asked_for_or_the_dearer_model_the_answer_names() {
        let config = config(
            "limits: [{ scope: agent, name: a, period: day, usd: 1 }]",
            "openai: { gpt-4o: { input: 2, output: 10 }, gpt-4o-mini: { input: 1, output: 1 } }",
        );
        let a = agent("a", &[]);
        let cost = |answered: Option<&str>| {
            let ledger = ledger();
            ledger.charge(
                &config,
                &a,
                ("openai", "gpt-4o", answered),
                (1000, 100),
                noon(),
            );
            ledger
                .spent(Scope::Agent, "a", Period::Day, noon())
                .micro_usd
        };
        // An answer naming a model the table does not price, or a cheaper one, costs what the
        // model asked for costs.
        assert_eq!(cost(None), 3000);
        assert_eq!(cost(Some("free-model-9000")), 3000);
        assert_eq!(cost(Some("gpt-4o-mini")), 3000);
        // An answer from a dearer model than the one asked for costs what that one costs.
        let ledger = ledger();
        ledger.charge(
            &config,
            &a,
            ("openai", "gpt-4o-mini", Some("gpt-4o-2024-08-06")),
            (1000, 100),
            noon(),
        );
        assert_eq!(
            ledger
                .spent(Scope::Agent, "a", Period::Day, noon())
                .micro_usd,
            3000
        );
    }

    #[test]
    fn spend_is_charged_to_the_agent_its_groups_and_the_fleet() {
        let ledger = ledger();
        let config = config(
            "limits: [{ scope: group, name: research, period: month, usd: 1 }]",
            "openai: { gpt-4o: { input: 2, output: 10 } }",
        );
        let a = agent("a", &["research"]);
        let gpt4o = ("openai", "gpt-4o", None);
        ledger.charge(&config, &a, gpt4o, (1000, 100), noon());
        ledger.charge(&config, &agent("b", &[]), gpt4o, (10, 0), noon());
        let spent = ledger.spent(Scope::Agent, "a", Period::Day, noon());
        assert_eq!(
            spent,
            Spent {
                input_tokens: 1000,
                output_tokens: 100,
                micro_usd: 3000
            }
        );
        assert_eq!(
            ledger
                .spent(Scope::Group, "research", Period::Month, noon())
                .tokens(),
            1100
        );
        assert_eq!(
            ledger
                .spent(Scope::Fleet, FLEET, Period::Day, noon())
                .tokens(),
            1110
        );
        let tomorrow = noon() + Duration::from_secs(86_400);
        assert_eq!(
            ledger
                .spent(Scope::Agent, "a", Period::Day, tomorrow)
                .tokens(),
            0
        );
        assert_eq!(
            ledger
                .spent(Scope::Agent, "a", Period::Month, tomorrow)
                .tokens(),
            1100
        );
        // The gauges: dollars spent, and what is left of the group's $1 a month.
        let spent = ledger
            .spent_usd
            .with_label_values(&["agent", "a", "day"])
            .get();
        assert!((spent - 0.003).abs() < 1e-9, "{spent}");
        let left = ledger
            .remaining
            .with_label_values(&["group", "research", "month"])
            .get();
        assert_eq!(left, 1.0, "0.3% used rounds down to 0%");
    }

    /// The series exported as spend goes on: each charge moves its account's gauges (kept
    /// between charges), a bounded account alone has a remaining ratio, and after a new day's
    /// reset the month's accounts, kept, are exported again.
    #[test]
    fn gauges_follow_every_charge_and_survive_a_new_day() {
        let metrics = Metrics::new();
        let ledger = Ledger::new(&metrics);
        let config = config(
            "limits: [{ scope: agent, name: a, period: day, usd: 1 }]",
            "openai: { gpt-4o: { input: 100, output: 100 } }",
        );
        let series = |metrics: &Metrics| {
            let text = metrics.render();
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| {
                    l.starts_with("warden_budget_spent") || l.starts_with("warden_budget_rem")
                })
                .map(str::to_owned)
                .collect();
            lines.sort();
            lines
        };
        let a = agent("a", &[]);
        let gpt4o = ("openai", "gpt-4o", None);
        ledger.charge(&config, &a, gpt4o, (1000, 0), noon());
        ledger.charge(&config, &a, gpt4o, (1000, 0), noon());
        assert_eq!(
            series(&metrics),
            [
                r#"warden_budget_remaining_ratio{name="a",period="day",scope="agent"} 0.8"#,
                r#"warden_budget_spent_usd{name="*",period="day",scope="fleet"} 0.2"#,
                r#"warden_budget_spent_usd{name="*",period="month",scope="fleet"} 0.2"#,
                r#"warden_budget_spent_usd{name="a",period="day",scope="agent"} 0.2"#,
                r#"warden_budget_spent_usd{name="a",period="month",scope="agent"} 0.2"#,
            ]
        );
        let tomorrow = noon() + Duration::from_secs(86_400);
        ledger.charge(&config, &a, gpt4o, (1000, 0), tomorrow);
        ledger.charge(&config, &a, gpt4o, (1000, 0), tomorrow);
        ledger.charge(&config, &a, gpt4o, (1000, 0), tomorrow);
        assert_eq!(
            series(&metrics),
            [
                r#"warden_budget_remaining_ratio{name="a",period="day",scope="agent"} 0.7"#,
                r#"warden_budget_spent_usd{name="*",period="day",scope="fleet"} 0.3"#,
                r#"warden_budget_spent_usd{name="*",period="month",scope="fleet"} 0.5"#,
                r#"warden_budget_spent_usd{name="a",period="day",scope="agent"} 0.3"#,
                r#"warden_budget_spent_usd{name="a",period="month",scope="agent"} 0.5"#,
            ]
        );
    }

    #[test]
    fn the_tightest_budget_sets_each_figure_and_exhaustion_shows() {
        let ledger = ledger();
        let config = config(
            "limits:\n\
             - { scope: agent, name: '*', period: day, tokens: 1000 }\n\
             - { scope: group, name: research, period: month, tokens: 5000, usd: 1 }\n\
             - { scope: agent, name: someone-else, period: day, tokens: 1 }\n",
            "p: { m: { input: 1, output: 1 } }",
        );
        let a = agent("a", &["research"]);
        let fresh = ledger.facts(&config, &a, noon()).expect("budgets set");
        assert_eq!(
            fresh,
            BudgetFacts {
                tokens_left: 1000,
                cost_left_micro_usd: 1_000_000,
                used_ratio_percent: 0,
                exceeded: false
            }
        );
        ledger.charge(&config, &a, ("p", "m", None), (600, 150), noon());
        let used = ledger.facts(&config, &a, noon()).expect("facts");
        assert_eq!((used.tokens_left, used.used_ratio_percent), (250, 75));
        assert_eq!(used.cost_left_micro_usd, 1_000_000 - 750);
        assert!(!used.exceeded);
        ledger.charge(&config, &a, ("p", "m", None), (200, 50), noon());
        let spent = ledger.facts(&config, &a, noon()).expect("facts");
        assert_eq!((spent.tokens_left, spent.exceeded), (0, true));
        assert_eq!(spent.used_ratio_percent, 100);
        // Another agent of no group has its own day budget.
        let b = ledger
            .facts(&config, &agent("b", &[]), noon())
            .expect("facts");
        assert_eq!((b.tokens_left, b.cost_left_micro_usd), (1000, UNLIMITED));
    }

    #[test]
    fn no_budget_no_facts() {
        let ledger = ledger();
        assert_eq!(
            ledger.facts(&BudgetsConfig::default(), &agent("a", &[]), noon()),
            None
        );
    }
}
