//! Quarantine metrics: how many are in force, how many were put in force by which trigger, how
//! long a quarantine took to take effect on this replica.

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

/// The quarantine metrics of one process.
#[derive(Clone)]
pub struct QuarantineMetrics {
    /// `warden_quarantined_agents`: quarantines in force (agents and groups).
    pub agents: IntGauge,
    /// `warden_quarantines_total{trigger}`: quarantines that took effect here.
    pub total: IntCounterVec,
    /// `warden_quarantine_effect_seconds`: from the command to its effect on this replica.
    pub effect_seconds: Histogram,
}

impl QuarantineMetrics {
    /// New, unregistered metrics.
    pub fn new() -> QuarantineMetrics {
        QuarantineMetrics {
            agents: IntGauge::new(
                "warden_quarantined_agents",
                "Quarantines in force on this replica (agents and groups)",
            )
            .expect("static metric definition"),
            total: IntCounterVec::new(
                Opts::new(
                    "warden_quarantines_total",
                    "Quarantines that took effect on this replica, by trigger",
                ),
                &["trigger"],
            )
            .expect("static metric definition"),
            effect_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "warden_quarantine_effect_seconds",
                    "Time from a quarantine command to its effect on this replica",
                )
                .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            )
            .expect("static metric definition"),
        }
    }

    /// Every metric, for the registry.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.agents.clone()),
            Box::new(self.total.clone()),
            Box::new(self.effect_seconds.clone()),
        ]
    }
}

impl Default for QuarantineMetrics {
    fn default() -> Self {
        QuarantineMetrics::new()
    }
}

/// The `trigger` label: one of a bounded set.
pub(super) fn trigger_label(trigger: &str) -> &'static str {
    match trigger {
        "manual" => "manual",
        "canary" => "canary",
        "denies" => "denies",
        "policy" => "policy",
        _ => "other",
    }
}
