//! Prometheus metrics served on the admin listener at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Latency buckets in seconds, from 100 µs to 60 s (LLM calls are long).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];
/// Policy evaluation buckets in seconds, from 1 µs to 10 ms.
const POLICY_BUCKETS: &[f64] = &[
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.001, 0.01,
];

/// Audit wait buckets in seconds, from 50 µs (a fast disk) to 1 s (a stalled one).
const AUDIT_WAIT_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// Every metric Warden exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route, decision and response status.
    pub requests: IntCounterVec,
    /// Whole request latency by route (to response headers).
    pub request_seconds: HistogramVec,
    /// Upstream latency to response headers by route.
    pub upstream_seconds: HistogramVec,
    /// Cedar evaluation time.
    pub policy_seconds: Histogram,
    /// Time a decision record took to become durable before its request went on.
    pub audit_wait_seconds: Histogram,
    /// Provider-reported tokens by agent, model and kind (`input`/`output`).
    pub tokens: IntCounterVec,
    /// Authentication failures by reason code.
    pub auth_failures: IntCounterVec,
    /// Audit appends that failed.
    pub audit_failures: IntCounter,
    /// Configuration and policy reloads by result.
    pub reloads: IntCounterVec,
    /// Requests in flight.
    pub in_flight: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "warden_requests_total",
                "Requests by route, decision and status",
            ),
            &["route", "decision", "status"],
        )
        .expect("static metric definition");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "warden_request_duration_seconds",
                "Time from request to response headers",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("static metric definition");
        let upstream_seconds = HistogramVec::new(
            HistogramOpts::new(
                "warden_upstream_duration_seconds",
                "Upstream time to response headers",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("static metric definition");
        let policy_seconds = Histogram::with_opts(
            HistogramOpts::new("warden_policy_duration_seconds", "Cedar evaluation time")
                .buckets(POLICY_BUCKETS.to_vec()),
        )
        .expect("static metric definition");
        let audit_wait_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "warden_audit_wait_seconds",
                "Time a decision record took to become durable before its request went on",
            )
            .buckets(AUDIT_WAIT_BUCKETS.to_vec()),
        )
        .expect("static metric definition");
        let tokens = IntCounterVec::new(
            Opts::new(
                "warden_tokens_total",
                "Provider-reported tokens by agent, model and kind",
            ),
            &["agent", "model", "kind"],
        )
        .expect("static metric definition");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "warden_auth_failures_total",
                "Rejected agent credentials by reason",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let audit_failures = IntCounter::new(
            "warden_audit_failures_total",
            "Audit records that could not be written",
        )
        .expect("static metric definition");
        let reloads = IntCounterVec::new(
            Opts::new(
                "warden_reloads_total",
                "Configuration and policy reloads by result",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let in_flight = IntGauge::new("warden_requests_in_flight", "Requests in flight")
            .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(upstream_seconds.clone()),
            Box::new(policy_seconds.clone()),
            Box::new(audit_wait_seconds.clone()),
            Box::new(tokens.clone()),
            Box::new(auth_failures.clone()),
            Box::new(audit_failures.clone()),
            Box::new(reloads.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            request_seconds,
            upstream_seconds,
            policy_seconds,
            audit_wait_seconds,
            tokens,
            auth_failures,
            audit_failures,
            reloads,
            in_flight,
        }
    }

    /// Adds collectors made elsewhere (the audit writer's commit counters).
    pub fn register(&self, collectors: Vec<Box<dyn prometheus::core::Collector>>) {
        for c in collectors {
            if let Err(e) = self.registry.register(c) {
                tracing::error!(error = %e, "cannot register a metric");
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail on I/O; a failure would mean a broken metric family.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_request_counters_with_labels() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["openai", "allow", "200"])
            .inc();
        m.tokens
            .with_label_values(&["ci-bot", "gpt-4o", "output"])
            .inc_by(42);
        let text = m.render();
        assert!(
            text.contains(
                r#"warden_requests_total{decision="allow",route="openai",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"warden_tokens_total{agent="ci-bot",kind="output",model="gpt-4o"} 42"#),
            "{text}"
        );
    }
}
