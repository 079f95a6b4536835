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
//! `budgets.reserve.default_output_tokens` times those choices when it sets none; no output for
//! embeddings. Priced
//! by the model asked for, as a charge is.
//!
//! Reservations are this replica's, in memory: they are not shared through the state store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use prometheus::{Gauge, IntGauge};

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

    /// What the calls in flight reserved on `account`, but `own`'s.
    pub(super) fn on(&self, account: &Account, own: Option<&Reservation>) -> Spent {
        let mut reserved = self.by_account.get(account).map(|r| *r).unwrap_or_default();
        if let Some(own) = own.filter(|own| own.accounts.contains(account)) {
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
}

impl Drop for Reservation {
    fn drop(&mut self) {
        for account in &self.accounts {
            let empty = match self.reserved.by_account.get_mut(account) {
                Some(mut reserved) => {
                    reserved.sub(self.amount);
                    reserved.is_zero()
                }
                None => false,
            };
            if empty {
                self.reserved
                    .by_account
                    .remove_if(account, |_, reserved| reserved.is_zero());
            }
        }
        self.reserved.totals(self.amount, false);
    }
}

/// The most input and output tokens an answer to `request` can be charged (its input
/// `ceiling`, when it has one, else its input estimate; its output limit, else
/// `default_output`, times its choices: `estimate::most_output`); `None` for calls that cost
/// nothing (model lists, token counts).
pub fn worst_case(
    request: &LlmRequest,
    ceiling: Option<&Ceiling>,
    default_output: u64,
) -> Option<(u64, u64)> {
    let output = super::estimate::most_output(request, default_output)?;
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
            self.by_account
                .entry(account.clone())
                .or_default()
                .add(amount);
        }
        self.totals(amount, true);
        Reservation {
            reserved: Arc::clone(self),
            accounts,
            amount,
        }
    }
}

#[cfg(test)]
mod tests;
