//! Reservations: what the LLM calls in flight may still cost. Usage is known only when a
//! response ends, so without them every call an agent starts while a budget has $1 left is
//! judged on that same $1. Before an LLM call a budget bounds is judged, its worst-case cost is
//! reserved on every account a budget bounds it by (`Ledger::reserve`); the calls judged
//! after it see that reservation as spent (`context.budget`, `exceeded` included), until its
//! response ends, however it ends: then the real (or estimated) usage is charged and the
//! [`Reservation`], dropped, gives its amount back — exactly once, being owned by the request.
//!
//! The worst case ([`worst_case`]): input, the request's input ceiling where it has one
//! (`plausible.rs`: no answer can be charged more), else Warden's input estimate; output, the
//! request's output limit times the choices it asks for, or
//! `budgets.reserve.default_output_tokens` times those choices when it sets none, each choice
//! at most `budgets.reserve.max_output_tokens` (one call asking for 10^9 tokens must not make
//! its group and the fleet look spent to every other agent while it is in flight: its spend is
//! charged from its usage, or left unanswered from its whole output limit, all the same); no
//! output for embeddings. Priced by the model asked for, as a
//! charge is.
//!
//! A call held for a human's approval holds its reservation on its agent's own budgets only
//! while it waits ([`Reservation::hold_on_agent_only`]); approved, it reserves on its groups'
//! and the fleet's again (`Ledger::widen`) and is judged again on them (`proxy/stages.rs`,
//! `budget_once_approved`).
//!
//! A reservation counts against its accounts in whatever period is current while its call is
//! in flight, not only the period it was made in: a call is charged in the period its
//! response ends in, so one in flight when a day or month ends counts against the new period
//! too (else an agent could start calls worth its whole day budget just before midnight and as
//! many again just after, all charged to the new day).
//!
//! Reservations are this replica's, in memory: they are not shared through the state store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use prometheus::{Gauge, IntGauge};

use super::config::ReserveConfig;
use super::config::Scope;
use super::plausible::Ceiling;
use super::spent::{Account, Spent};
use crate::protocol::LlmRequest;
use crate::telemetry::metrics::Metrics;

/// What every call in flight on this replica has reserved, by account.
pub(super) struct Reserved {
    by_account: DashMap<Account, Spent>,
    /// Every reservation once (not per account): millionths of a dollar and tokens.
    micro_usd: AtomicU64,
    tokens: AtomicU64,
    /// `warden_budget_reserved_usd`.
    usd_gauge: Gauge,
    /// `warden_budget_reserved_tokens`.
    tokens_gauge: IntGauge,
}

impl Reserved {
    pub(super) fn new(metrics: &Metrics) -> Reserved {
        let usd_gauge = Gauge::new(
            "warden_budget_reserved_usd",
            "US dollars the LLM calls in flight on this replica have reserved against budgets \
             (their worst-case cost, given back when each response ends).",
        )
        .expect("static metric definition");
        let tokens_gauge = IntGauge::new(
            "warden_budget_reserved_tokens",
            "Tokens the LLM calls in flight on this replica have reserved against budgets.",
        )
        .expect("static metric definition");
        metrics.register(vec![
            Box::new(usd_gauge.clone()),
            Box::new(tokens_gauge.clone()),
        ]);
        Reserved {
            by_account: DashMap::new(),
            micro_usd: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            usd_gauge,
            tokens_gauge,
        }
    }

    /// What the calls in flight reserved on `account`, but `own`'s: whatever period they
    /// were reserved in, since each is charged in the period it ends in.
    pub(super) fn on(&self, account: &Account, own: Option<&Reservation>) -> Spent {
        let key = in_flight(account);
        let mut reserved = self.by_account.get(&key).map(|r| *r).unwrap_or_default();
        if let Some(own) = own.filter(|own| own.accounts.iter().any(|a| in_flight(a) == key)) {
            reserved.sub(own.amount);
        }
        reserved
    }

    fn totals(&self, amount: Spent, add: bool) {
        let (micro, tokens) = if add {
            (
                self.micro_usd
                    .fetch_add(amount.micro_usd, Ordering::Relaxed)
                    .saturating_add(amount.micro_usd),
                self.tokens
                    .fetch_add(amount.tokens(), Ordering::Relaxed)
                    .saturating_add(amount.tokens()),
            )
        } else {
            (
                self.micro_usd
                    .fetch_sub(amount.micro_usd, Ordering::Relaxed)
                    .saturating_sub(amount.micro_usd),
                self.tokens
                    .fetch_sub(amount.tokens(), Ordering::Relaxed)
                    .saturating_sub(amount.tokens()),
            )
        };
        self.usd_gauge.set(micro as f64 / 1e6);
        self.tokens_gauge
            .set(i64::try_from(tokens).unwrap_or(i64::MAX));
    }
}

/// One LLM call's worst-case cost, reserved on the accounts that bound its agent until it is
/// dropped (when its response ends, however it ends).
#[derive(Debug)]
pub struct Reservation {
    reserved: Arc<Reserved>,
    accounts: Vec<Account>,
    amount: Spent,
    /// Held for an approval: reserved on its agent's own budgets only
    /// ([`Reservation::hold_on_agent_only`]) until `Ledger::widen`.
    narrowed: bool,
}

impl std::fmt::Debug for Reserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reserved")
            .field("accounts", &self.by_account.len())
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// What it reserves.
    pub fn amount(&self) -> Spent {
        self.amount
    }

    /// Whether it is held on its agent's own budgets only, awaiting an approval.
    pub fn narrowed(&self) -> bool {
        self.narrowed
    }

    /// The call waits for a human's approval (minutes, maybe): it gives back what it reserved
    /// on its groups' and the fleet's budgets, so that the agents it shares them with are not
    /// judged on a call that may never go, and keeps what it reserved on its agent's own.
    /// Once approved it reserves on them again (`Ledger::widen`).
    pub fn hold_on_agent_only(&mut self) {
        if self.narrowed {
            return;
        }
        let (own, shared): (Vec<Account>, Vec<Account>) = std::mem::take(&mut self.accounts)
            .into_iter()
            .partition(|account| account.0 == Scope::Agent);
        for account in &shared {
            self.reserved.give_back(account, self.amount);
        }
        if own.is_empty() {
            self.reserved.totals(self.amount, false);
        }
        self.accounts = own;
        self.narrowed = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        for account in &self.accounts {
            self.reserved.give_back(account, self.amount);
        }
        if !self.accounts.is_empty() {
            self.reserved.totals(self.amount, false);
        }
    }
}

/// The input and output tokens a call reserves for `request`'s answer (its input `ceiling`,
/// when it has one, else its input estimate; its output limit, else the default output times
/// its choices, each choice at most the cap of `reserve`: `estimate::most_output`); `None` for
/// calls that cost nothing (model lists, token counts).
pub fn worst_case(
    request: &LlmRequest,
    ceiling: Option<&Ceiling>,
    reserve: &ReserveConfig,
) -> Option<(u64, u64)> {
    let output = super::estimate::most_output(request, reserve)?;
    let input = ceiling
        .and_then(Ceiling::input)
        .unwrap_or(0)
        .max(request.input_tokens);
    Some((input, output))
}

impl Reserved {
    /// Reserves `amount` on each of `accounts` until the reservation is dropped.
    pub(super) fn reserve(self: &Arc<Self>, accounts: Vec<Account>, amount: Spent) -> Reservation {
        for account in &accounts {
            self.take(account, amount);
        }
        self.totals(amount, true);
        Reservation {
            reserved: Arc::clone(self),
            accounts,
            amount,
            narrowed: false,
        }
    }

    /// Reserves `reservation`'s amount again on those of `accounts` (all that bound its agent
    /// now) it does not hold, after [`Reservation::hold_on_agent_only`] (the call was
    /// approved), and gives back those it holds that no longer bound it (a period ended while
    /// it waited).
    pub(super) fn widen(&self, reservation: &mut Reservation, accounts: Vec<Account>) {
        if !reservation.narrowed {
            return;
        }
        reservation.narrowed = false;
        let amount = reservation.amount;
        let held = std::mem::take(&mut reservation.accounts);
        let mut now: Vec<Account> = Vec::with_capacity(accounts.len());
        // The new ones first, then the old ones back: never a moment when neither counts.
        for account in accounts {
            if now.contains(&account) {
                continue;
            }
            if !held.contains(&account) {
                self.take(&account, amount);
            }
            now.push(account);
        }
        for account in held.iter().filter(|account| !now.contains(account)) {
            self.give_back(account, amount);
        }
        match (held.is_empty(), now.is_empty()) {
            (true, false) => self.totals(amount, true),
            (false, true) => self.totals(amount, false),
            _ => {}
        }
        reservation.accounts = now;
    }

    /// Adds `amount` to what is reserved on `account`.
    fn take(&self, account: &Account, amount: Spent) {
        self.by_account
            .entry(in_flight(account))
            .or_default()
            .add(amount);
    }

    /// Takes `amount` off what is reserved on `account`, forgetting the account once nothing
    /// is.
    fn give_back(&self, account: &Account, amount: Spent) {
        let account = &in_flight(account);
        let empty = match self.by_account.get_mut(account) {
            Some(mut reserved) => {
                reserved.sub(amount);
                reserved.is_zero()
            }
            None => false,
        };
        if empty {
            self.by_account
                .remove_if(account, |_, reserved| reserved.is_zero());
        }
    }
}

/// The key a reservation on `account` is counted under: its account in every period (the
/// period's index left out), since a call is charged in the period it ends in.
fn in_flight(account: &Account) -> Account {
    (account.0, Arc::clone(&account.1), account.2, 0)
}

#[cfg(test)]
mod tests;
