//! Spend shared through the state store. Charging stays in memory; every
//! `budgets.sync_interval` a replica adds what it charged since its last tick to the stored
//! totals (one transaction) and reads back every account's total, which every replica then
//! enforces. Between two ticks a replica sees its own new spend at once and another's at most
//! two intervals after it was charged (that replica's next tick stores it, this one's next
//! tick after that reads it): a budget can be overshot by at most what the other replicas spend
//! in two intervals each (plus what they have in flight, and the response in flight when it
//! ran out, as on one replica).
//!
//! When the store fails, nothing charged is lost: the deltas are kept and added at the next
//! tick that succeeds, and decisions go on with the last totals read plus this replica's own
//! spend. A delta whose commit is not confirmed (the connection dropped after it) is sent
//! again, so an outage can count spend twice, never drop it. Past `budgets.stale_after` without
//! a read, the totals are no longer trusted: decisions follow `budgets.on_stale` ([`stale`]).
//!
//! Each tick also audits the resets operators made of the spend it reads ([`resets`]).

mod resets;
mod stale;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Account, BudgetsConfig, Entry, Ledger, METRIC_ACCOUNTS_MAX, Period, Scope, Spent};
use crate::audit::AuditLog;
use crate::fleet::tick;
use crate::state::StateError;
use crate::state::fleet::{FleetRepository, SpendRow};

pub use stale::BudgetUnknown;

/// Accounts read from the store kept at most (those this replica charged are always kept).
const STORED_ACCOUNTS_MAX: usize = 100_000;

impl Ledger {
    /// Shares spend through `store`: a [`Ledger::sync`] every `every`, with the budgets
    /// `config` gives (for the gauges), and then [`Ledger::audit_resets`] in `audit`; it stops
    /// when the ledger is dropped.
    pub fn attach(
        self: &Arc<Self>,
        store: Arc<dyn FleetRepository>,
        every: Duration,
        audit: AuditLog,
        config: impl Fn() -> Option<BudgetsConfig> + Send + Sync + 'static,
    ) {
        let config = Arc::new(config);
        let now = SystemTime::now();
        self.fresh.attached(now);
        self.reset_records.started(now);
        tick::spawn(Arc::downgrade(self), every, "budgets", move |ledger| {
            let (store, config, audit) = (Arc::clone(&store), Arc::clone(&config), audit.clone());
            Box::pin(async move {
                let config = config();
                let synced = ledger
                    .sync(&*store, config.as_ref(), SystemTime::now())
                    .await;
                // Audited even when the spend could not be shared, and the other way round.
                let audited = ledger.audit_resets(&*store, &audit).await;
                synced.and(audited.map(|_| ()))
            })
        });
    }

    /// One tick at `now`: adds what this replica charged since the last to the store, then
    /// takes every account's total from it, and counts the replicas seen. On failure what was
    /// not stored is kept for the next tick.
    pub async fn sync(
        &self,
        store: &dyn FleetRepository,
        config: Option<&BudgetsConfig>,
        now: SystemTime,
    ) -> Result<(), StateError> {
        let result = self.exchange(store, config, now).await;
        if result.is_err()
            && let Some(config) = config
        {
            // Logged as soon as it is so, not at the next decision.
            self.fresh.stale_for(config, now);
        }
        result
    }

    async fn exchange(
        &self,
        store: &dyn FleetRepository,
        config: Option<&BudgetsConfig>,
        now: SystemTime,
    ) -> Result<(), StateError> {
        self.roll_over(now);
        let deltas = self.take_unflushed();
        if !deltas.is_empty()
            && let Err(error) = store.add_spend(deltas).await
        {
            self.unflush();
            return Err(error);
        }
        let (day, month) = (
            super::index(Period::Day, now),
            super::index(Period::Month, now),
        );
        match store.spend(i64::from(day), i64::from(month)).await {
            Ok(rows) => self.merge(rows, (day, month)),
            Err(error) => {
                self.settle();
                return Err(error);
            }
        }
        let stale_after = config.map_or(Duration::from_secs(3), |c| c.stale_after);
        let at = super::freshness::ms(now);
        let window = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
        let replicas = store
            .seen(self.fresh.replica.clone(), at, at.saturating_sub(window))
            .await?;
        self.fresh.read(now, replicas);
        if let Some(config) = config
            && self.spent.len() <= METRIC_ACCOUNTS_MAX
        {
            for (scope, name, period, spent) in self.accounts(now) {
                let account = (scope, name, period, super::index(period, now));
                let gauges = self.spent.get(&account).and_then(|e| e.gauges.clone());
                self.export(config, &account, spent, gauges);
            }
        }
        Ok(())
    }

    /// Moves what was charged since the last tick to "being stored"; the rows to add.
    fn take_unflushed(&self) -> Vec<SpendRow> {
        let mut rows = Vec::new();
        for mut entry in self.spent.iter_mut() {
            let unflushed = std::mem::take(&mut entry.unflushed);
            if unflushed.is_zero() {
                continue;
            }
            entry.flushing.add(unflushed);
            let (scope, name, period, index) = entry.key();
            rows.push(SpendRow {
                scope: scope.as_str().to_owned(),
                name: name.to_string(),
                period: period.as_str().to_owned(),
                index: i64::from(*index),
                input_tokens: clamp(unflushed.input_tokens),
                output_tokens: clamp(unflushed.output_tokens),
                micro_usd: clamp(unflushed.micro_usd),
            });
        }
        // One order on every replica: two replicas adding to the same rows at once take their
        // locks in the same order (no deadlock on PostgreSQL).
        rows.sort_unstable_by(|a, b| {
            (&a.scope, &a.name, &a.period, a.index).cmp(&(&b.scope, &b.name, &b.period, b.index))
        });
        rows
    }

    /// The store refused the deltas: they are charged again, to be stored next time.
    fn unflush(&self) {
        for mut entry in self.spent.iter_mut() {
            let flushing = std::mem::take(&mut entry.flushing);
            entry.unflushed.add(flushing);
        }
    }

    /// The deltas are stored but the totals could not be read: they count as stored, not yet
    /// read back.
    fn settle(&self) {
        for mut entry in self.spent.iter_mut() {
            let flushing = std::mem::take(&mut entry.flushing);
            entry.unread.add(flushing);
        }
    }

    /// Takes the store's totals of the current day and month (which hold what this replica
    /// just stored).
    fn merge(&self, rows: Vec<SpendRow>, (day, month): (u32, u32)) {
        let mut totals: HashMap<Account, Spent> = HashMap::with_capacity(rows.len());
        for row in rows {
            let (Some(scope), Some(period)) = (
                Scope::from_stored(&row.scope),
                Period::from_stored(&row.period),
            ) else {
                tracing::warn!(
                    scope = row.scope,
                    period = row.period,
                    "the state store holds spend of an unknown scope or period; ignored"
                );
                continue;
            };
            let Ok(index) = u32::try_from(row.index) else {
                continue;
            };
            totals.insert(
                (scope, Arc::from(row.name), period, index),
                Spent {
                    input_tokens: unclamp(row.input_tokens),
                    output_tokens: unclamp(row.output_tokens),
                    micro_usd: unclamp(row.micro_usd),
                },
            );
        }
        let current = |period: Period, index: u32| match period {
            Period::Day => index == day,
            Period::Month => index == month,
        };
        let mut past = Vec::new();
        for mut entry in self.spent.iter_mut() {
            let (_, _, period, index) = entry.key();
            if !current(*period, *index) {
                // A past period's last spend, now stored: forgotten once nothing is pending.
                entry.flushing = Spent::default();
                entry.unread = Spent::default();
                if entry.unflushed.is_zero() {
                    past.push(entry.key().clone());
                }
                continue;
            }
            let stored = totals.remove(entry.key()).unwrap_or_default();
            entry.stored = stored;
            entry.flushing = Spent::default();
            entry.unread = Spent::default();
        }
        for key in past {
            self.spent.remove_if(&key, |_, e| e.unflushed.is_zero());
        }
        for (account, stored) in totals {
            if self.spent.len() >= STORED_ACCOUNTS_MAX {
                break;
            }
            self.spent.entry(account).or_default().stored = stored;
        }
    }
}

/// A count as the store keeps it (a signed 64-bit integer).
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unclamp(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Entry {
    #[cfg(test)]
    fn parts(&self) -> (Spent, Spent, Spent) {
        let mut stored = self.stored;
        stored.add(self.unread);
        (stored, self.unflushed, self.flushing)
    }
}

#[cfg(test)]
mod tests;
