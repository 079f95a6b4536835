//! Prometheus metrics served on the admin listener at `/metrics`.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Most distinct agents the token counters name; later agents are counted as `other`.
pub const AGENT_LABELS_MAX: usize = 1000;
/// Most distinct models the token counters name; later models are counted as `other`.
pub const MODEL_LABELS_MAX: usize = 200;
/// Longest label value kept; a longer one is counted as `other`.
const LABEL_VALUE_MAX: usize = 64;

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
    /// `warden_policy_info{version}`: 1 for the policy set in effect.
    pub policy_info: IntGaugeVec,
    /// `warden_policy_bundle_signed_timestamp_seconds`: when the bundle in effect was signed.
    pub policy_bundle_signed: IntGauge,
    /// `warden_shadow_differences_total{policy}`: requests the shadow set decides otherwise.
    pub shadow_differences: IntCounterVec,
    /// `warden_policy_decisions_total{policy, decision}`: decisions by determining policy
    /// (`<default>` for a default deny).
    pub policy_decisions: IntCounterVec,
    /// Trace spans by what became of them (`exported`, `dropped`: the export queue was full,
    /// `failed`: their export failed).
    pub trace_spans: IntCounterVec,
    /// Egress connections (`connect`) and plain-HTTP requests (`request`) by result.
    pub egress: IntCounterVec,
    /// Egress tunnels by how they ended (`closed`, or the code that cut them).
    pub egress_tunnels: IntCounterVec,
    /// Bytes egress tunnels carried, by direction (`up`: to the destination, `down`: back).
    pub egress_bytes: IntCounterVec,
    /// Tool calls models proposed, by tool (a catalogue name or `other`) and outcome
    /// (`allowed`, `denied`, `held`).
    pub proposed_calls: IntCounterVec,
    agents: Arc<LabelSet>,
    models: Arc<LabelSet>,
}

/// What one request did, as the request metrics count it: filled on the request path and
/// counted once, when its response starts.
#[derive(Debug, Clone, Copy)]
pub struct RequestMetrics<'a> {
    /// The route's configured name, or `none`.
    pub route: &'a str,
    /// `allow`, `deny`, `approval_required`, or `none` before a decision.
    pub decision: &'static str,
    /// The response status.
    pub status: http::StatusCode,
    /// Time to the response headers.
    pub seconds: f64,
    /// The reason an agent credential was refused, if it was.
    pub auth_failure: Option<&'static str>,
    /// Time Cedar took, if the request was judged.
    pub policy_seconds: Option<f64>,
    /// Time the decision record took to become durable, if one was written.
    pub audit_wait_seconds: Option<f64>,
    /// The decision record could not be written.
    pub audit_failed: bool,
    /// Time to the upstream's response headers, if the request was forwarded.
    pub upstream_seconds: Option<f64>,
}

/// A bounded set of label values: the first `max` distinct values seen are used as they are,
/// later ones (and any too long to be a name) become `other`, so no request can grow the
/// number of series without bound.
struct LabelSet {
    max: usize,
    known: RwLock<HashSet<Arc<str>>>,
}

impl LabelSet {
    fn new(max: usize) -> LabelSet {
        LabelSet {
            max,
            known: RwLock::new(HashSet::new()),
        }
    }

    /// The label for `value`, which takes a free place in the set if it has none yet.
    fn label(&self, value: &str) -> Arc<str> {
        if let Some(known) = self.known_label(value) {
            return known;
        }
        if !Self::nameable(value) {
            return Arc::from("other");
        }
        let mut known = self.known.write().unwrap_or_else(|p| p.into_inner());
        if let Some(hit) = known.get(value) {
            return Arc::clone(hit);
        }
        if known.len() >= self.max {
            return Arc::from("other");
        }
        let label: Arc<str> = Arc::from(value);
        known.insert(Arc::clone(&label));
        label
    }

    /// The label `value` already has, if it has one (it takes no place in the set).
    fn known_label(&self, value: &str) -> Option<Arc<str>> {
        if !Self::nameable(value) {
            return None;
        }
        self.known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(value)
            .cloned()
    }

    /// Whether `value` can be a label at all: not empty, short, no control characters.
    fn nameable(value: &str) -> bool {
        !value.is_empty() && value.len() <= LABEL_VALUE_MAX && !value.chars().any(char::is_control)
    }
}

/// The model names an upstream has answered (those `warden_tokens_total` names, a bounded set),
/// for what must not key anything by every name an agent sends (`rate_limits` model rules).
#[derive(Clone)]
pub struct KnownModels(Arc<LabelSet>);

impl KnownModels {
    /// Whether an upstream has answered `model` (it has a place among the named models).
    pub fn knows(&self, model: &str) -> bool {
        self.0.known_label(model).is_some()
    }
}

impl Metrics {
    /// The models an upstream has answered, as they are learnt.
    pub fn known_models(&self) -> KnownModels {
        KnownModels(Arc::clone(&self.models))
    }

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
        let policy_info = IntGaugeVec::new(
            Opts::new(
                "warden_policy_info",
                "The policy set in effect: 1 for its version (content digest)",
            ),
            &["version"],
        )
        .expect("static metric definition");
        let policy_bundle_signed = IntGauge::new(
            "warden_policy_bundle_signed_timestamp_seconds",
            "When the policy bundle in effect was signed (Unix seconds; 0 when its manifest \
             does not say, or the set is not a verified bundle)",
        )
        .expect("static metric definition");
        let policy_decisions = IntCounterVec::new(
            Opts::new(
                "warden_policy_decisions_total",
                "Decisions by determining policy (<default> when nothing permits) and decision: allow, deny, approval_required",
            ),
            &["policy", "decision"],
        )
        .expect("static metric definition");
        let shadow_differences = IntCounterVec::new(
            Opts::new(
                "warden_shadow_differences_total",
                "Decisions the shadow policy set would have made otherwise, by the policy that made the difference",
            ),
            &["policy"],
        )
        .expect("static metric definition");
        let trace_spans = IntCounterVec::new(
            Opts::new(
                "warden_trace_spans_total",
                "Trace spans by result: exported, dropped (export queue full), failed (export failed)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let egress = IntCounterVec::new(
            Opts::new(
                "warden_egress_total",
                "Egress connections (connect) and plain-HTTP requests (request) by result: allowed, denied, unauthenticated, refused, failed",
            ),
            &["kind", "result"],
        )
        .expect("static metric definition");
        let egress_tunnels = IntCounterVec::new(
            Opts::new(
                "warden_egress_tunnels_total",
                "Egress tunnels by how they ended: closed, or the code that cut them (egress_sni_mismatch, ...)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let egress_bytes = IntCounterVec::new(
            Opts::new(
                "warden_egress_bytes_total",
                "Bytes egress tunnels carried: up (to the destination), down (back to the agent)",
            ),
            &["direction"],
        )
        .expect("static metric definition");
        let proposed_calls = IntCounterVec::new(
            Opts::new(
                "warden_proposed_calls_total",
                "Tool calls models proposed, judged before the agent got them, by tool and outcome (allowed, denied, held)",
            ),
            &["tool", "outcome"],
        )
        .expect("static metric definition");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "warden_build_info",
                "1, labelled with the version and the commit (git's short hash, -dirty when built from changed sources, unknown without git) of the running binary",
            ),
            &["version", "commit"],
        )
        .expect("static metric definition");
        build_info
            .with_label_values(&[crate::build_info::VERSION, crate::build_info::COMMIT])
            .set(1);
        for c in [
            Box::new(build_info) as Box<dyn prometheus::core::Collector>,
            Box::new(requests.clone()),
            Box::new(proposed_calls.clone()),
            Box::new(egress.clone()),
            Box::new(egress_tunnels.clone()),
            Box::new(egress_bytes.clone()),
            Box::new(request_seconds.clone()),
            Box::new(upstream_seconds.clone()),
            Box::new(policy_seconds.clone()),
            Box::new(audit_wait_seconds.clone()),
            Box::new(tokens.clone()),
            Box::new(auth_failures.clone()),
            Box::new(audit_failures.clone()),
            Box::new(reloads.clone()),
            Box::new(in_flight.clone()),
            Box::new(policy_info.clone()),
            Box::new(policy_bundle_signed.clone()),
            Box::new(shadow_differences.clone()),
            Box::new(policy_decisions.clone()),
            Box::new(trace_spans.clone()),
        ]
        .into_iter()
        .chain(crate::vault::metrics::VAULT.collectors())
        .chain([
            Box::new(crate::inspect::FINDINGS.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(crate::mcp::SERVER_REQUESTS_REFUSED.clone()),
            Box::new(crate::mcp::SERVER_REQUESTS_DENIED.clone()),
            Box::new(crate::mcp::sandbox::SANDBOXED.clone()),
            Box::new(crate::mcp::sandbox::PARTIAL.clone()),
            Box::new(crate::inspect::stream::HELD.clone()),
        ]) {
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
            policy_info,
            policy_bundle_signed,
            shadow_differences,
            policy_decisions,
            trace_spans,
            egress,
            egress_tunnels,
            egress_bytes,
            proposed_calls,
            agents: Arc::new(LabelSet::new(AGENT_LABELS_MAX)),
            models: Arc::new(LabelSet::new(MODEL_LABELS_MAX)),
        }
    }

    /// The policy set of `version`, its bundle signed `signed`, is in effect (at start and
    /// after each reload).
    pub fn policy_loaded(&self, version: &str, signed: Option<std::time::SystemTime>) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[version]).set(1);
        let seconds = signed
            .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.policy_bundle_signed.set(seconds);
    }

    /// Counts a decision under each policy that determined it.
    pub fn decided(&self, decision: &str, policies: &[Arc<str>]) {
        if policies.is_empty() {
            self.policy_decisions
                .with_label_values(&["<default>", decision])
                .inc();
        }
        for policy in policies {
            self.policy_decisions
                .with_label_values(&[&**policy, decision])
                .inc();
        }
    }

    /// Counts one request, in every metric it touched.
    pub fn request(&self, m: &RequestMetrics<'_>) {
        self.requests
            .with_label_values(&[m.route, m.decision, m.status.as_str()])
            .inc();
        self.request_seconds
            .with_label_values(&[m.route])
            .observe(m.seconds);
        if let Some(code) = m.auth_failure {
            self.auth_failures.with_label_values(&[code]).inc();
        }
        if let Some(secs) = m.policy_seconds {
            self.policy_seconds.observe(secs);
        }
        if let Some(secs) = m.audit_wait_seconds {
            self.audit_wait_seconds.observe(secs);
        }
        if m.audit_failed {
            self.audit_failures.inc();
        }
        if let Some(secs) = m.upstream_seconds {
            self.upstream_seconds
                .with_label_values(&[m.route])
                .observe(secs);
        }
    }

    /// Counts the tokens a response reported, by agent and model (each from a bounded set of
    /// label values). A model takes a place among the named ones only once an upstream
    /// `answered` it (a success that reported its usage): names an upstream refused or never
    /// heard of are counted as `other` and never crowd out the models agents really use.
    pub fn tokens(
        &self,
        agent: &str,
        model: &str,
        (input, output): (Option<u64>, Option<u64>),
        answered: bool,
    ) {
        if input.is_none() && output.is_none() {
            return;
        }
        let agent = self.agents.label(agent);
        let model = if answered {
            self.models.label(model)
        } else {
            self.models
                .known_label(model)
                .unwrap_or_else(|| Arc::from("other"))
        };
        for (kind, n) in [("input", input), ("output", output)] {
            if let Some(n) = n {
                self.tokens
                    .with_label_values(&[&*agent, &*model, kind])
                    .inc_by(n);
            }
        }
    }

    /// Counts one egress connection or request (`kind`) and what became of it.
    pub fn egress(&self, kind: &str, result: &str) {
        self.egress.with_label_values(&[kind, result]).inc();
    }

    /// Counts one egress tunnel that ended with `result`, having carried `up` and `down`
    /// bytes.
    pub fn tunnel_closed(&self, result: &str, up: u64, down: u64) {
        self.egress_tunnels.with_label_values(&[result]).inc();
        self.egress_bytes.with_label_values(&["up"]).inc_by(up);
        self.egress_bytes.with_label_values(&["down"]).inc_by(down);
    }

    /// Counts one proposed tool call to `tool` (a bounded label) and its `outcome`.
    pub fn proposed_call(&self, tool: &str, outcome: &str) {
        self.proposed_calls
            .with_label_values(&[tool, outcome])
            .inc();
    }

    /// The counters the trace export updates.
    pub fn span_counters(&self) -> crate::telemetry::trace::SpanCounters {
        crate::telemetry::trace::SpanCounters {
            exported: self.trace_spans.with_label_values(&["exported"]),
            dropped: self.trace_spans.with_label_values(&["dropped"]),
            failed: self.trace_spans.with_label_values(&["failed"]),
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
    fn the_running_build_is_exported_with_its_version_and_commit() {
        let text = Metrics::new().render();
        let line = format!(
            "warden_build_info{{commit=\"{}\",version=\"{}\"}} 1",
            crate::build_info::COMMIT,
            crate::build_info::VERSION
        );
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }

    #[test]
    fn token_labels_come_from_a_bounded_set() {
        let m = Metrics::new();
        let huge = "m".repeat(100 * 1024);
        m.tokens("ci-bot", &huge, (Some(1), None), true);
        m.tokens("ci-bot", "bad\nname", (Some(1), None), true);
        for i in 0..MODEL_LABELS_MAX + 50 {
            m.tokens("ci-bot", &format!("model-{i}"), (Some(1), None), true);
        }
        let text = m.render();
        assert!(
            !text.contains(&huge[..100]),
            "a long model name is never a label"
        );
        assert!(text.contains(r#"model="other""#), "{text}");
        let series = text
            .lines()
            .filter(|l| l.starts_with("warden_tokens_total{"))
            .count();
        assert_eq!(series, MODEL_LABELS_MAX + 1, "the named models and `other`");
        assert!(
            text.lines().all(|l| l.len() < 300),
            "no line grows with the input"
        );
    }

    #[test]
    fn models_an_upstream_never_answered_take_no_label() {
        let m = Metrics::new();
        // One agent sends made-up models the upstream refuses (its input estimated).
        for i in 0..MODEL_LABELS_MAX + 50 {
            m.tokens("prober", &format!("card-{i}"), (Some(1), None), false);
        }
        // The models other agents really use still get their names.
        m.tokens("ci-bot", "gpt-4o", (Some(10), Some(5)), true);
        m.tokens("ci-bot", "gpt-4o", (Some(1), None), false);
        let text = m.render();
        assert!(!text.contains("card-"), "{text}");
        assert!(
            text.contains(r#"warden_tokens_total{agent="ci-bot",kind="input",model="gpt-4o"} 11"#),
            "{text}"
        );
        assert!(
            text.contains(r#"warden_tokens_total{agent="prober",kind="input",model="other"}"#),
            "{text}"
        );
    }

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
