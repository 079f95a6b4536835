//! How fresh a replica's view of the fleet's spend is: when the totals were last read from the
//! state store, by how many replicas, and whether decisions rest on totals older than
//! `budgets.stale_after` (`warden_budget_stale`, logged when it starts and ends). What a
//! decision does then is `sync/stale.rs`'s.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::IntGauge;

use super::config::BudgetsConfig;
use crate::telemetry::metrics::Metrics;

/// How fresh this replica's view of the fleet's spend is.
pub(super) struct Freshness {
    /// This process among the replicas (random).
    pub(super) replica: String,
    /// Whether spend is shared through a store ([`Ledger::attach`]): only then can it be old.
    attached: AtomicBool,
    /// When the totals were last read, milliseconds since the Unix epoch.
    read_ms: AtomicI64,
    /// The replicas seen at that read (this one included).
    pub(super) replicas: AtomicU64,
    /// Whether this replica decides on old totals now (logged once per outage).
    stale: AtomicBool,
    /// `warden_budget_stale`.
    pub(super) gauge: IntGauge,
}

impl Freshness {
    pub(super) fn new(metrics: &Metrics) -> Freshness {
        let gauge = IntGauge::new(
            "warden_budget_stale",
            "1 while this replica decides budgets without a recent read of the fleet's spend \
             (past budgets.stale_after), else 0.",
        )
        .expect("static metric definition");
        metrics.register(vec![Box::new(gauge.clone())]);
        Freshness {
            replica: uuid::Uuid::now_v7().simple().to_string(),
            attached: AtomicBool::new(false),
            read_ms: AtomicI64::new(0),
            replicas: AtomicU64::new(1),
            stale: AtomicBool::new(false),
            gauge,
        }
    }

    /// Spend is shared from `now` on: the totals count as read then (the first read follows
    /// at once).
    pub(super) fn attached(&self, now: SystemTime) {
        self.read_ms.store(ms(now), Ordering::Relaxed);
        self.attached.store(true, Ordering::Relaxed);
    }

    /// The totals were read at `now`, with `replicas` replicas seen.
    pub(super) fn read(&self, now: SystemTime, replicas: u64) {
        self.read_ms.store(ms(now), Ordering::Relaxed);
        self.replicas.store(replicas.max(1), Ordering::Relaxed);
        if self.stale.swap(false, Ordering::Relaxed) {
            self.gauge.set(0);
            tracing::info!(
                "the fleet's budget spend was read from the state store again: budget decisions \
                 use the fleet's totals"
            );
        }
    }

    /// How long the totals have gone unread past `stale_after` at `now`, if they have and a
    /// budget is set.
    pub(super) fn stale_for(&self, config: &BudgetsConfig, now: SystemTime) -> Option<Duration> {
        if !self.attached.load(Ordering::Relaxed) || config.limits.is_empty() {
            return None;
        }
        let age = ms(now).saturating_sub(self.read_ms.load(Ordering::Relaxed));
        let age = Duration::from_millis(u64::try_from(age).unwrap_or(0));
        if age <= config.stale_after {
            return None;
        }
        if !self.stale.swap(true, Ordering::Relaxed) {
            self.gauge.set(1);
            tracing::warn!(
                stale_for_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                on_stale = config.on_stale.as_str(),
                replicas = self.replicas.load(Ordering::Relaxed),
                "the fleet's budget spend has not been read from the state store within \
                 budgets.stale_after: budget decisions follow budgets.on_stale until it answers"
            );
        }
        Some(age)
    }
}

/// Milliseconds since the Unix epoch at `t`.
pub(super) fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
