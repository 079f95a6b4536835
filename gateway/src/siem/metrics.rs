//! Per-sink shipping metrics, labelled by sink name: lag (events and seconds), the age of
//! the oldest record not yet acknowledged, events sent, failed and dead-lettered, and the
//! time of the last acknowledged batch.

use prometheus::core::Collector;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};

/// The shipper's metrics.
#[derive(Clone)]
pub struct SiemMetrics {
    /// Durable records not yet acknowledged by the sink.
    pub lag_events: IntGaugeVec,
    /// Seconds since the last acknowledged record was written, while the sink is behind.
    pub lag_seconds: GaugeVec,
    /// Seconds since the oldest record the sink has not acknowledged was written.
    pub oldest_undelivered_seconds: GaugeVec,
    /// Events acknowledged by the destination.
    pub sent: IntCounterVec,
    /// Events in deliveries that failed and will be tried again.
    pub failed: IntCounterVec,
    /// Events the destination rejected for good, written to the dead-letter file.
    pub dead_lettered: IntCounterVec,
    /// Unix time of the last acknowledged batch.
    pub last_success: GaugeVec,
}

impl SiemMetrics {
    /// New, unregistered metrics.
    pub fn new() -> SiemMetrics {
        let opts = |name: &str, help: &str| Opts::new(name, help);
        SiemMetrics {
            lag_events: IntGaugeVec::new(
                opts(
                    "warden_siem_lag_events",
                    "Durable audit records the sink has not acknowledged",
                ),
                &["sink"],
            )
            .expect("static metric definition"),
            lag_seconds: GaugeVec::new(
                opts(
                    "warden_siem_lag_seconds",
                    "While behind: seconds since the last record the sink acknowledged was written (none yet: since the oldest one it has not)",
                ),
                &["sink"],
            )
            .expect("static metric definition"),
            oldest_undelivered_seconds: GaugeVec::new(
                opts(
                    "warden_siem_oldest_undelivered_age_seconds",
                    "Seconds since the oldest record the sink has not acknowledged was written",
                ),
                &["sink"],
            )
            .expect("static metric definition"),
            sent: IntCounterVec::new(
                opts(
                    "warden_siem_events_sent_total",
                    "Audit events the sink's destination acknowledged",
                ),
                &["sink"],
            )
            .expect("static metric definition"),
            failed: IntCounterVec::new(
                opts(
                    "warden_siem_events_failed_total",
                    "Audit events in deliveries that failed and are tried again",
                ),
                &["sink"],
            )
            .expect("static metric definition"),
            dead_lettered: IntCounterVec::new(
                opts(
                    "warden_siem_events_dead_lettered_total",
                    "Audit events the destination rejected for good, kept in the dead-letter file",
                ),
                &["sink"],
            )
            .expect("static metric definition"),
            last_success: GaugeVec::new(
                opts(
                    "warden_siem_last_success_timestamp_seconds",
                    "Unix time of the sink's last acknowledged batch",
                ),
                &["sink"],
            )
            .expect("static metric definition"),
        }
    }

    /// The collectors, to register with a registry.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.lag_events.clone()),
            Box::new(self.lag_seconds.clone()),
            Box::new(self.oldest_undelivered_seconds.clone()),
            Box::new(self.sent.clone()),
            Box::new(self.failed.clone()),
            Box::new(self.dead_lettered.clone()),
            Box::new(self.last_success.clone()),
        ]
    }
}

impl Default for SiemMetrics {
    fn default() -> Self {
        SiemMetrics::new()
    }
}
