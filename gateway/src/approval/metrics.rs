//! The approval gate's metrics: how long held actions waited for a human, by how their wait
//! ended (`warden_approval_wait_seconds{outcome}`), and how many approvals are pending with
//! the age of the oldest (`warden_approvals_pending`, `warden_approval_oldest_pending_seconds`).
//!
//! A wait is observed where the held request ends, on the replica that held it: so an
//! approval decided on another replica's console, or from the command line, is counted too.
//! The pending gauges are read from the state store, which every replica shares: each replica
//! reports the same numbers (take `max` across replicas, not `sum`).

use std::sync::Arc;
use std::time::Duration;

use prometheus::{Gauge, HistogramOpts, HistogramVec, IntGauge};

use crate::state::approvals::{ApprovalFilter, ApprovalRecord, ApprovalRepository, VoteDecision};

/// Wait buckets in seconds, from a second (an approver at their desk) to a day.
const WAIT_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
    86400.0,
];

/// How often the pending gauges are read from the state store.
pub const PENDING_REFRESH: Duration = Duration::from_secs(5);

/// How a held request's wait for its approval ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Approved, and the request went on with it (each approval counts once: it is used once).
    Approved,
    /// An approver denied it.
    Denied,
    /// Its time ran out before it was decided (or used).
    Expired,
    /// The agent left while its request waited, the approval still undecided.
    Cancelled,
}

impl WaitOutcome {
    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitOutcome::Approved => "approved",
            WaitOutcome::Denied => "denied",
            WaitOutcome::Expired => "expired",
            WaitOutcome::Cancelled => "cancelled",
        }
    }
}

/// The approval metrics.
#[derive(Clone)]
pub struct ApprovalMetrics {
    /// `warden_approval_wait_seconds{outcome}`.
    pub wait_seconds: HistogramVec,
    /// `warden_approvals_pending`.
    pub pending: IntGauge,
    /// `warden_approval_oldest_pending_seconds`.
    pub oldest_pending_seconds: Gauge,
}

impl Default for ApprovalMetrics {
    fn default() -> Self {
        ApprovalMetrics::new()
    }
}

impl ApprovalMetrics {
    /// New, unregistered metrics.
    pub fn new() -> ApprovalMetrics {
        ApprovalMetrics {
            wait_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "warden_approval_wait_seconds",
                    "Time from an approval's request to its decision, observed where the held request ends, by outcome: approved, denied, expired, cancelled (the agent left first)",
                )
                .buckets(WAIT_BUCKETS.to_vec()),
                &["outcome"],
            )
            .expect("static metric definition"),
            pending: IntGauge::new(
                "warden_approvals_pending",
                "Approvals waiting for a decision (from the shared state store: the same on every replica)",
            )
            .expect("static metric definition"),
            oldest_pending_seconds: Gauge::new(
                "warden_approval_oldest_pending_seconds",
                "Age of the oldest approval waiting for a decision, 0 when none waits",
            )
            .expect("static metric definition"),
        }
    }

    /// The collectors, to register with Warden's registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.wait_seconds.clone()),
            Box::new(self.pending.clone()),
            Box::new(self.oldest_pending_seconds.clone()),
        ]
    }

    /// A held request's wait for `record` ended with `outcome` (at `now_ms`, for a cancelled
    /// one).
    pub fn waited(&self, record: &ApprovalRecord, outcome: WaitOutcome, now_ms: i64) {
        self.observe(
            outcome,
            decided_ms(record, outcome, now_ms).saturating_sub(record.created_ms),
        );
    }

    /// The agent left, at `now_ms`, a request waiting for the approval asked for at
    /// `created_ms`.
    pub fn left(&self, created_ms: i64, now_ms: i64) {
        self.observe(WaitOutcome::Cancelled, now_ms.saturating_sub(created_ms));
    }

    fn observe(&self, outcome: WaitOutcome, ms: i64) {
        self.wait_seconds
            .with_label_values(&[outcome.as_str()])
            .observe(ms.max(0) as f64 / 1000.0);
    }

    /// Reads the pending approvals from the store into the gauges.
    pub async fn refresh(
        &self,
        approvals: &dyn ApprovalRepository,
        now_ms: i64,
    ) -> Result<(), crate::state::StateError> {
        let pending = approvals.list(ApprovalFilter::Pending).await?;
        self.pending
            .set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        let oldest = pending.iter().map(|r| r.created_ms).min();
        self.oldest_pending_seconds
            .set(oldest.map_or(0.0, |created| {
                now_ms.saturating_sub(created).max(0) as f64 / 1000.0
            }));
        Ok(())
    }

    /// Keeps the pending gauges current, every [`PENDING_REFRESH`], while the process runs.
    pub fn keep_current(&self, approvals: Arc<dyn ApprovalRepository>) {
        let metrics = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PENDING_REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match metrics
                    .refresh(approvals.as_ref(), crate::state::pins::now_ms())
                    .await
                {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot count the pending approvals; warden_approvals_pending keeps its last value");
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

/// When `record` was decided, as `outcome` says: the vote that approved or denied it, its
/// expiry, or `now_ms` for a wait the agent left.
fn decided_ms(record: &ApprovalRecord, outcome: WaitOutcome, now_ms: i64) -> i64 {
    let vote = |decision: VoteDecision| {
        record
            .votes
            .iter()
            .rev()
            .find(|v| v.decision == decision)
            .map(|v| v.at_ms)
    };
    match outcome {
        WaitOutcome::Approved => vote(VoteDecision::Approve),
        WaitOutcome::Denied => vote(VoteDecision::Deny),
        WaitOutcome::Expired => Some(record.expires_ms),
        WaitOutcome::Cancelled => Some(now_ms),
    }
    .or(record.decided_ms)
    .unwrap_or(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::approvals::{ApprovalStatus, SecondFactor, Vote};

    fn record(votes: &[(VoteDecision, i64)]) -> ApprovalRecord {
        ApprovalRecord {
            id: "apr_1".into(),
            digest: "sha256:00".into(),
            principal: "Agent::\"ci-bot\"".into(),
            action: "llm:chat".into(),
            resource: "Model::\"openai/gpt-4o\"".into(),
            context: serde_json::json!({}),
            policy: "p".into(),
            reason: String::new(),
            approver_groups: Vec::new(),
            required: 2,
            created_ms: 10_000,
            expires_ms: 3_610_000,
            status: ApprovalStatus::Consumed,
            // Consuming rewrites it: the votes say when it was decided.
            decided_ms: Some(999_000),
            withdrawn: None,
            votes: votes
                .iter()
                .map(|&(decision, at_ms)| Vote {
                    approver: format!("approver-{at_ms}"),
                    names: Vec::new(),
                    decision,
                    factor: SecondFactor::Totp,
                    source: None,
                    at_ms,
                })
                .collect(),
        }
    }

    fn observed(m: &ApprovalMetrics, outcome: WaitOutcome) -> (u64, f64) {
        let h = m.wait_seconds.with_label_values(&[outcome.as_str()]);
        (h.get_sample_count(), h.get_sample_sum())
    }

    #[test]
    fn an_approved_wait_lasts_until_the_approval_that_decided_it() {
        let m = ApprovalMetrics::new();
        let two_person = record(&[
            (VoteDecision::Approve, 40_000),
            (VoteDecision::Approve, 70_000),
        ]);
        m.waited(&two_person, WaitOutcome::Approved, 500_000);
        assert_eq!(observed(&m, WaitOutcome::Approved), (1, 60.0));
        assert_eq!(observed(&m, WaitOutcome::Denied).0, 0);
    }

    #[test]
    fn denied_expired_and_cancelled_waits_end_at_their_own_moment() {
        let m = ApprovalMetrics::new();
        let denied = record(&[
            (VoteDecision::Approve, 20_000),
            (VoteDecision::Deny, 25_000),
        ]);
        m.waited(&denied, WaitOutcome::Denied, 500_000);
        assert_eq!(observed(&m, WaitOutcome::Denied), (1, 15.0));
        m.waited(&record(&[]), WaitOutcome::Expired, 9_000_000);
        assert_eq!(observed(&m, WaitOutcome::Expired), (1, 3600.0));
        m.left(10_000, 12_500);
        assert_eq!(observed(&m, WaitOutcome::Cancelled), (1, 2.5));
    }

    #[test]
    fn the_histogram_and_gauges_are_exported_under_their_names() {
        let m = ApprovalMetrics::new();
        let registry = prometheus::Registry::new();
        for c in m.collectors() {
            registry.register(c).unwrap();
        }
        m.left(10_000, 12_500);
        m.pending.set(3);
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )
        .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("warden_approval_wait_seconds_count{outcome=\"cancelled\"} 1"),
            "{text}"
        );
        assert!(text.contains("warden_approvals_pending 3"), "{text}");
        assert!(
            text.contains("warden_approval_oldest_pending_seconds 0"),
            "{text}"
        );
    }
}
