//! Budgets when the fleet's totals are old. A replica's budget decisions rest on the totals it
//! last read from the state store plus its own spend since; while the store is away, the other
//! replicas' spend is unknown, and N replicas deciding on the last totals could each spend
//! the whole remaining budget. So past `budgets.stale_after` without a successful read, a
//! replica no longer trusts them: with `budgets.on_stale: refuse` (the default) every action a
//! budget bounds and a policy judges by its budget is refused (`budget_unavailable`, 503);
//! with `share`, the replica assumes that each of the N replicas seen at the last read spends
//! its even share of what was left then, and lets itself spend 1/N of it.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::action::{BudgetFacts, Principal};
use crate::fleet::budget::config::OnStale;
use crate::fleet::budget::{
    BudgetsConfig, Ledger, Period, Reservation, Scope, Spent, bounded, index,
};

/// Budget decisions were refused: the fleet's spend is too old to decide on.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the fleet's budget spend could not be read from the state store for {}s (budgets.stale_after: \
     {}s), and budget decisions fail closed (budgets.on_stale: refuse): retry when the store \
     answers; an operator can check the state store",
    .stale_for.as_secs(),
    .stale_after.as_secs_f64()
)]
pub struct BudgetUnknown {
    /// Since the last successful read.
    pub stale_for: Duration,
    /// `budgets.stale_after`.
    pub stale_after: Duration,
}

impl BudgetUnknown {
    /// The stable code of the refusal.
    pub const CODE: &str = "budget_unavailable";
}

impl Ledger {
    /// `principal`'s remaining budget at `now` for a decision (`context.budget`) of the call
    /// that holds `own` (the others' reservations counted as spent): the fleet's totals when
    /// they are fresh; past `budgets.stale_after`, a refusal or this replica's share, as
    /// `budgets.on_stale` says. `None` when no budget is configured.
    pub fn judge(
        &self,
        config: &BudgetsConfig,
        principal: &Principal,
        now: SystemTime,
        own: Option<&Reservation>,
    ) -> Result<Option<BudgetFacts>, BudgetUnknown> {
        let Some(stale_for) = self.fresh.stale_for(config, now) else {
            return Ok(self.facts_besides(config, principal, now, own));
        };
        let bounding = config
            .limits
            .iter()
            .any(|limit| bounded(limit, principal).next().is_some());
        match config.on_stale {
            _ if !bounding => Ok(self.facts_besides(config, principal, now, own)),
            OnStale::Refuse => Err(BudgetUnknown {
                stale_for,
                stale_after: config.stale_after,
            }),
            OnStale::Share => Ok(Some(self.share(config, principal, now, own))),
        }
    }

    /// `principal`'s remaining budget when the others' spend is unknown: of what each budget
    /// had left at the last read, 1/N is this replica's (N the replicas seen then), the rest
    /// counted as spent by the others; what this replica's calls in flight reserved (but
    /// `own`) counted as its own spend.
    fn share(
        &self,
        config: &BudgetsConfig,
        principal: &Principal,
        now: SystemTime,
        own: Option<&Reservation>,
    ) -> BudgetFacts {
        let replicas = self.fresh.replicas.load(Ordering::Relaxed).max(1);
        let mut facts = BudgetFacts::UNBOUNDED;
        for limit in &config.limits {
            for name in bounded(limit, principal) {
                let (read, mut mine) = self.split(limit.scope, name, limit.period, now);
                let account = (
                    limit.scope,
                    std::sync::Arc::clone(name),
                    limit.period,
                    index(limit.period, now),
                );
                mine.add(self.reserved.on(&account, own));
                let others = |limit: Option<u64>, read: u64| {
                    let left = limit.map_or(0, |l| l.saturating_sub(read));
                    left - left / replicas
                };
                let usd = limit.usd.map(|usd| (usd * 1e6).round() as u64);
                let assumed = Spent {
                    input_tokens: read
                        .tokens()
                        .saturating_add(others(limit.tokens, read.tokens()))
                        .saturating_add(mine.tokens()),
                    output_tokens: 0,
                    micro_usd: read
                        .micro_usd
                        .saturating_add(others(usd, read.micro_usd))
                        .saturating_add(mine.micro_usd),
                };
                facts.tighten(limit, assumed);
            }
        }
        facts
    }

    /// An account's spend: the fleet's total at the last read, and this replica's since.
    fn split(&self, scope: Scope, name: &str, period: Period, now: SystemTime) -> (Spent, Spent) {
        let key = (
            scope,
            std::sync::Arc::from(name),
            period,
            index(period, now),
        );
        self.spent
            .get(&key)
            .map(|e| {
                let mut own = e.unflushed;
                own.add(e.flushing);
                own.add(e.unread);
                (e.stored, own)
            })
            .unwrap_or_default()
    }
}
