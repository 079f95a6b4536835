//! Rate and concurrency limits per agent, group, route, model and tool (`rate_limits:`).
//!
//! Rates are paced with GCRA (the generic cell rate algorithm, a token bucket kept as one
//! timestamp per bucket): a rule of `rate` r and `burst` b admits b requests at once after a
//! quiet spell, then one every 1/r seconds, and tells a refused request exactly when the next
//! one would be admitted. Concurrency counts requests in flight: a [`Permit`] is held until the
//! response (a stream included) ends. Counts are exact on one replica; with several, each
//! publishes its rate counts through the state store on a tick and charges the others' to its
//! own buckets ([`sync`]; the bound this allows is in docs/fleet.md). Concurrency is counted
//! per replica.
//!
//! Whatever the rules, every agent has a cap of its own on requests in flight and on egress
//! tunnels ([`AgentCaps`]), counted the same way as a concurrency rule, so no agent can hold
//! every place of the gateway. And a `model` rule matching `*` counts the models an upstream
//! has answered by name and every other name in one `other` bucket, so made-up model names
//! grow neither the buckets nor the state store's table. A `tool` rule matching `*` does the
//! same for MCP tools: those some server listed ([`Limiter::learn_tool`]) by name, every other
//! name an agent calls as `other`.

pub mod config;
mod sharing;
pub mod sync;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use prometheus::{IntCounterVec, Opts};

use crate::action::{Action, Resource};
use crate::telemetry::metrics::{KnownModels, Metrics};
pub use config::{LimitAnswer, RateLimitsConfig, RateRule, Scope};

/// Buckets kept before those at rest (full again, so equal to no bucket) are dropped.
const BUCKETS_MAX: usize = 65_536;

/// The model a `model` rule matching `*` counts a name no upstream has answered yet as.
pub const OTHER_MODEL: &str = "other";

/// The tool a `tool` rule matching `*` counts an MCP tool no server has listed as.
pub const OTHER_TOOL: &str = "other";

/// MCP tools (server and name) listed by servers that are counted by name; later ones are
/// counted as [`OTHER_TOOL`].
const TOOLS_MAX: usize = 4096;

/// Caps every agent has, rules or not: requests in flight (`limits.max_in_flight_per_agent`)
/// and, for an egress `CONNECT`, tunnels open (`egress.max_tunnels_per_agent`). `None`: no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentCaps {
    /// Requests the agent may have in flight at once (held for approval, streaming, or a
    /// tunnel open included).
    pub in_flight: Option<u32>,
    /// Tunnels the agent may have open at once; set for a `CONNECT` only.
    pub tunnels: Option<u32>,
}

/// The limits' counts, shared by every request for the life of the process (rules come from
/// the current configuration on each request, so a reload keeps the counts of unchanged rules).
pub struct Limiter {
    epoch: Instant,
    hasher: RandomState,
    /// Per rate bucket: its theoretical arrival time and what it admitted.
    buckets: DashMap<u64, Bucket>,
    /// Per concurrency bucket: requests in flight.
    inflight: Arc<DashMap<u64, u32>>,
    /// `warden_rate_limited_total{scope}`.
    limited: IntCounterVec,
    /// The models an upstream has answered: the model names buckets are kept for.
    models: KnownModels,
    /// The MCP tools (hashes of server and name) servers have listed: the tool names buckets
    /// are kept for, at most [`TOOLS_MAX`].
    tools: DashMap<u64, ()>,
    /// Set once counts are shared with other replicas ([`Limiter::attach`]).
    sharing: OnceLock<sharing::Sharing>,
}

/// One rate bucket.
#[derive(Debug)]
struct Bucket {
    /// Its theoretical arrival time (GCRA), nanoseconds since the limiter's epoch.
    tat: u64,
    /// Requests it admitted, in all (published to the other replicas).
    admitted: u64,
    /// Nanoseconds between requests at its rate.
    interval: u64,
    /// Its name among the replicas (its rule and value), when counts are shared.
    name: Option<Arc<str>>,
}

/// What the rules count a request by.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub agent: &'a str,
    pub groups: &'a [Arc<str>],
    pub route: &'a str,
    /// An LLM call's model.
    pub model: Option<&'a str>,
    /// Whether the configuration names the model (the price table in force, or a loaded
    /// policy's `Model::"<provider>/<model>"`): counted by its name before any upstream has
    /// answered it.
    pub model_configured: bool,
    /// An MCP tool (server, tool) or a REST operation (API, operation).
    pub tool: Option<(&'a str, &'a str)>,
    /// `tool` is an MCP tool, whose name the agent chose (a REST operation's comes from
    /// configuration): counted by name only once a server listed it.
    pub mcp_tool: bool,
}

impl<'a> Subject<'a> {
    /// What `action` is counted by.
    pub fn of(action: &'a Action) -> Subject<'a> {
        let (model, tool) = match &action.resource {
            Resource::Model { name, .. } => (Some(name.as_str()), None),
            Resource::Tool { server, name } => (None, Some((&**server, name.as_str()))),
            Resource::Operation { api, name, .. } => (None, Some((&**api, &**name))),
            _ => (None, None),
        };
        Subject {
            agent: &action.principal.id,
            groups: &action.principal.groups,
            route: &action.context.route,
            model,
            model_configured: false,
            tool,
            mcp_tool: matches!(action.resource, Resource::Tool { .. }),
        }
    }

    /// Calls `each` with every value of `scope` this request has.
    fn values(
        &self,
        scope: Scope,
        mut each: impl FnMut(Value<'a>) -> Result<(), Limited>,
    ) -> Result<(), Limited> {
        match scope {
            Scope::Agent => each(Value::One(self.agent)),
            Scope::Group => self.groups.iter().try_for_each(|g| each(Value::One(g))),
            Scope::Route => each(Value::One(self.route)),
            Scope::Model => self.model.map_or(Ok(()), |m| each(Value::One(m))),
            Scope::Tool => self.tool.map_or(Ok(()), |(a, b)| each(Value::Pair(a, b))),
        }
    }
}

/// A value a request is counted by: one name, or two joined by `/` (never built unless a
/// refusal names it).
#[derive(Debug, Clone, Copy, Hash)]
enum Value<'a> {
    One(&'a str),
    Pair(&'a str, &'a str),
}

impl Value<'_> {
    /// Whether a rule's `match` selects it.
    fn matched_by(self, pattern: &str) -> bool {
        match self {
            _ if pattern == config::ANY => true,
            Value::One(v) => v == pattern,
            Value::Pair(a, b) => pattern
                .strip_prefix(a)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| rest == b),
        }
    }

    fn text(self) -> String {
        match self {
            Value::One(v) => v.to_owned(),
            Value::Pair(a, b) => format!("{a}/{b}"),
        }
    }
}

/// A request over a limit: which rule, for whom, and when to retry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Limited {
    /// The rule's scope.
    pub scope: Scope,
    /// The agent, group, route, model or tool it was counted by.
    pub value: String,
    /// The rule's index in `rate_limits.rules`; `None` for an agent's own cap ([`AgentCaps`]).
    pub rule: Option<usize>,
    /// Which limit.
    pub kind: LimitKind,
    /// When a retry would be admitted (for concurrency, a guess: when requests end is not
    /// known).
    pub retry_after: Duration,
    /// How it is answered.
    pub answer: LimitAnswer,
}

/// Which limit a request went over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitKind {
    /// `rate` requests per second, bursts of `burst`.
    Rate { rate: f64, burst: u32 },
    /// `max` requests in flight.
    Concurrency { max: u32 },
    /// `max` requests of one agent in flight (`limits.max_in_flight_per_agent`).
    AgentInFlight { max: u32 },
    /// `max` egress tunnels of one agent open (`egress.max_tunnels_per_agent`).
    AgentTunnels { max: u32 },
}

impl Limited {
    /// Seconds for `retry-after`: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }

    /// `warden_rate_limited_total`'s `scope`: the rule's, `concurrency`, or an agent's own
    /// cap (`agent_in_flight`, `agent_tunnels`).
    pub fn metric_scope(&self) -> &'static str {
        match self.kind {
            LimitKind::Rate { .. } => self.scope.as_str(),
            LimitKind::Concurrency { .. } => "concurrency",
            LimitKind::AgentInFlight { .. } => "agent_in_flight",
            LimitKind::AgentTunnels { .. } => "agent_tunnels",
        }
    }

    /// Warden's stable code.
    pub fn code(&self) -> &'static str {
        match self.kind {
            LimitKind::Rate { .. } => "rate_limited",
            LimitKind::Concurrency { .. }
            | LimitKind::AgentInFlight { .. }
            | LimitKind::AgentTunnels { .. } => "concurrency_limited",
        }
    }

    fn describe(&self) -> String {
        let (scope, value) = (self.scope.as_str(), &self.value);
        let rule = self.rule.unwrap_or_default();
        match self.kind {
            LimitKind::Rate { rate, burst } => format!(
                "rate limit reached: {scope} {value:?} may send {rate} requests per second \
                 (bursts of {burst}); retry after {} s (rate_limits.rules[{rule}])",
                self.retry_after_secs()
            ),
            LimitKind::Concurrency { max } => format!(
                "concurrency limit reached: {scope} {value:?} may have {max} requests in flight; \
                 retry when one ends (rate_limits.rules[{rule}])"
            ),
            LimitKind::AgentInFlight { max } => format!(
                "too many requests in flight: agent {value:?} may have {max} at once, held for \
                 approval and streaming included; retry when one ends \
                 (limits.max_in_flight_per_agent)"
            ),
            LimitKind::AgentTunnels { max } => format!(
                "too many egress tunnels: agent {value:?} may have {max} open at once; retry \
                 when one closes (egress.max_tunnels_per_agent)"
            ),
        }
    }
}

/// Requests in flight that a request holds a place among, released when it is dropped (when
/// the response, a stream included, ends).
#[derive(Debug)]
pub struct Permit {
    inflight: Arc<DashMap<u64, u32>>,
    keys: Vec<u64>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        for key in &self.keys {
            release(&self.inflight, *key);
        }
    }
}

fn release(inflight: &DashMap<u64, u32>, key: u64) {
    let empty = match inflight.get_mut(&key) {
        Some(mut n) => {
            *n = n.saturating_sub(1);
            *n == 0
        }
        None => false,
    };
    if empty {
        inflight.remove_if(&key, |_, n| *n == 0);
    }
}

/// A rate bucket charged for this request, to give back if a later rule refuses it.
struct Charged {
    key: u64,
    interval: u64,
}

impl Limiter {
    /// No counts yet; `warden_rate_limited_total` registered with `metrics`.
    pub fn new(metrics: &Metrics) -> Limiter {
        let limited = IntCounterVec::new(
            Opts::new(
                "warden_rate_limited_total",
                "Requests refused by a rate or concurrency limit, by the limit's scope (agent, group, route, model, tool, or concurrency).",
            ),
            &["scope"],
        )
        .expect("valid metric");
        metrics.register(vec![Box::new(limited.clone())]);
        Limiter {
            epoch: Instant::now(),
            hasher: RandomState::new(),
            buckets: DashMap::new(),
            inflight: Arc::new(DashMap::new()),
            limited,
            models: metrics.known_models(),
            tools: DashMap::new(),
            sharing: OnceLock::new(),
        }
    }

    /// Admits `subject` under its agent's `caps` and every rule of `config` that matches it
    /// (a place in flight held by the permit, when a cap or rule limits concurrency), or says
    /// which limit it is over.
    pub fn admit(
        &self,
        config: &RateLimitsConfig,
        caps: AgentCaps,
        subject: &Subject<'_>,
    ) -> Result<Option<Permit>, Limited> {
        let mut permit: Option<Permit> = None;
        let hold = |permit: &mut Option<Permit>, key: u64| {
            permit
                .get_or_insert_with(|| Permit {
                    inflight: Arc::clone(&self.inflight),
                    keys: Vec::new(),
                })
                .keys
                .push(key);
        };
        let capped = [
            (
                b'a',
                caps.in_flight
                    .map(|max| (max, LimitKind::AgentInFlight { max })),
            ),
            (
                b't',
                caps.tunnels
                    .map(|max| (max, LimitKind::AgentTunnels { max })),
            ),
        ];
        for (cap, limit) in capped {
            let Some((max, kind)) = limit else { continue };
            let key = self.hasher.hash_one((cap, subject.agent));
            if !self.enter(key, max) {
                // Places already taken are given back as `permit` drops.
                return Err(self.refuse(Limited {
                    scope: Scope::Agent,
                    value: subject.agent.to_owned(),
                    rule: None,
                    kind,
                    retry_after: Duration::from_secs(1),
                    answer: config.answer,
                }));
            }
            hold(&mut permit, key);
        }
        if config.rules.is_empty() {
            return Ok(permit);
        }
        let now = self.now();
        let mut charged: Vec<Charged> = Vec::new();
        let result = config.rules.iter().enumerate().try_for_each(|(i, rule)| {
            subject.values(rule.scope, |value| {
                if !value.matched_by(&rule.matches) {
                    return Ok(());
                }
                let value = self.counted(rule, value, subject);
                let refused = |kind, retry_after| Limited {
                    scope: rule.scope,
                    value: value.text(),
                    rule: Some(i),
                    kind,
                    retry_after,
                    answer: config.answer,
                };
                if let Some(max) = rule.concurrency {
                    let key = self.key(b'c', rule, value);
                    if !self.enter(key, max) {
                        return Err(refused(
                            LimitKind::Concurrency { max },
                            Duration::from_secs(1),
                        ));
                    }
                    hold(&mut permit, key);
                }
                if let Some(rate) = rule.rate {
                    let burst = rule.burst();
                    let key = self.key(b'r', rule, value);
                    let interval = ((1e9 / rate) as u64).max(1);
                    let name = || shared_name(rule, rate, burst, value);
                    match self.charge(key, now, (interval, burst), name) {
                        Ok(()) => charged.push(Charged { key, interval }),
                        Err(wait) => {
                            return Err(refused(
                                LimitKind::Rate { rate, burst },
                                Duration::from_nanos(wait),
                            ));
                        }
                    }
                }
                Ok(())
            })
        });
        match result {
            Ok(()) => Ok(permit),
            Err(limited) => {
                for c in charged {
                    if let Some(mut bucket) = self.buckets.get_mut(&c.key) {
                        bucket.tat = bucket.tat.saturating_sub(c.interval);
                        bucket.admitted = bucket.admitted.saturating_sub(1);
                    }
                }
                Err(self.refuse(limited))
            }
        }
    }

    /// Counts `limited` in `warden_rate_limited_total`.
    fn refuse(&self, limited: Limited) -> Limited {
        self.limited
            .with_label_values(&[limited.metric_scope()])
            .inc();
        limited
    }

    /// What `rule` counts `value` by: a model name neither configured nor answered by an
    /// upstream yet is counted as [`OTHER_MODEL`] of its agent (`other/<agent>`) by a rule
    /// matching `*` (a rule naming the model counts it by its name), so the buckets, and the
    /// rows shared with other replicas, are bounded by the models known and the agents,
    /// whatever names agents send, and one agent's made-up names spend only its own bucket.
    /// Likewise an MCP tool no server has listed is counted as [`OTHER_TOOL`] of its agent.
    fn counted<'a>(&self, rule: &RateRule, value: Value<'a>, subject: &Subject<'a>) -> Value<'a> {
        if rule.matches != config::ANY {
            return value;
        }
        match value {
            Value::One(model)
                if rule.scope == Scope::Model
                    && !subject.model_configured
                    && !self.models.knows(model) =>
            {
                Value::Pair(OTHER_MODEL, subject.agent)
            }
            Value::Pair(server, tool)
                if rule.scope == Scope::Tool
                    && subject.mcp_tool
                    && !self.tools.contains_key(&self.tool_key(server, tool)) =>
            {
                Value::Pair(OTHER_TOOL, subject.agent)
            }
            _ => value,
        }
    }

    /// Learns that MCP server `server` has a tool `tool` (it listed it): a `tool` rule
    /// matching `*` counts it by its name from now on. The first [`TOOLS_MAX`] tools learnt
    /// are kept; a server listing more cannot grow the set (its later tools count as
    /// [`OTHER_TOOL`]).
    pub fn learn_tool(&self, server: &str, tool: &str) {
        let key = self.tool_key(server, tool);
        if self.tools.len() < TOOLS_MAX || self.tools.contains_key(&key) {
            self.tools.insert(key, ());
        }
    }

    fn tool_key(&self, server: &str, tool: &str) -> u64 {
        self.hasher.hash_one((b'T', server, tool))
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The bucket of `rule` for `value` (`kind`: rate or concurrency).
    fn key(&self, kind: u8, rule: &RateRule, value: Value<'_>) -> u64 {
        self.hasher.hash_one((
            kind,
            rule.scope,
            &rule.matches,
            rule.rate.map(f64::to_bits),
            rule.burst,
            rule.concurrency,
            value,
        ))
    }

    /// GCRA: charges one request to bucket `key` (`interval` ns apart, `burst` at once), or
    /// returns how many nanoseconds until it would be admitted. `name` names a new bucket
    /// among the replicas (called only when counts are shared).
    fn charge(
        &self,
        key: u64,
        now: u64,
        (interval, burst): (u64, u32),
        name: impl FnOnce() -> Arc<str>,
    ) -> Result<(), u64> {
        let tolerance = interval.saturating_mul(u64::from(burst - 1));
        if self.buckets.len() >= BUCKETS_MAX && !self.buckets.contains_key(&key) {
            self.buckets.retain(|_, b| b.tat > now);
        }
        let mut bucket = self
            .buckets
            .entry(key)
            .or_insert_with(|| self.new_bucket(now, interval, name));
        let start = bucket.tat.max(now);
        let ahead = start - now;
        if ahead > tolerance {
            return Err(ahead - tolerance);
        }
        bucket.tat = start + interval;
        bucket.admitted += 1;
        Ok(())
    }

    /// A bucket at rest, or, when counts are shared, charged with what other replicas
    /// admitted in it before this one had it.
    fn new_bucket(&self, now: u64, interval: u64, name: impl FnOnce() -> Arc<str>) -> Bucket {
        let mut bucket = Bucket {
            tat: now,
            admitted: 0,
            interval,
            name: None,
        };
        if let Some(sharing) = self.sharing.get() {
            let name = name();
            if let Some((_, owed)) = sharing.owed.remove(&name) {
                bucket.tat = owed.max(now);
            }
            bucket.name = Some(name);
        }
        bucket
    }

    /// Takes a place in flight in bucket `key`, if fewer than `max` are taken.
    fn enter(&self, key: u64, max: u32) -> bool {
        let mut n = self.inflight.entry(key).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }
}

/// A rate bucket's name among the replicas: the rule (scope, match, rate, burst) and the value
/// counted, as text every replica builds alike.
fn shared_name(rule: &RateRule, rate: f64, burst: u32, value: Value<'_>) -> Arc<str> {
    Arc::from(format!(
        "{}|{}|{rate}|{burst}|{}",
        rule.scope.as_str(),
        rule.matches,
        value.text()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn config(yaml: &str) -> RateLimitsConfig {
        serde_saphyr::from_str(yaml).expect("parses")
    }

    pub(super) fn subject<'a>(agent: &'a str, groups: &'a [Arc<str>]) -> Subject<'a> {
        Subject {
            agent,
            groups,
            route: "openai",
            model: Some("gpt-4o"),
            model_configured: false,
            tool: None,
            mcp_tool: false,
        }
    }

    #[test]
    fn admits_a_burst_then_paces_and_says_when_to_retry() {
        let limiter = Limiter::new(&Metrics::new());
        let config = config("rules:\n  - scope: agent\n    rate: 1\n    burst: 3\n");
        let s = subject("ci-bot", &[]);
        for _ in 0..3 {
            assert!(limiter.admit(&config, AgentCaps::default(), &s).is_ok());
        }
        let refused = limiter
            .admit(&config, AgentCaps::default(), &s)
            .expect_err("over the burst");
        assert_eq!(
            (refused.code(), refused.metric_scope()),
            ("rate_limited", "agent")
        );
        assert_eq!(refused.value, "ci-bot");
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert_eq!(refused.retry_after_secs(), 1);
        // Another agent has its own bucket.
        assert!(
            limiter
                .admit(&config, AgentCaps::default(), &subject("other", &[]))
                .is_ok()
        );
        assert_eq!(limiter.limited.with_label_values(&["agent"]).get(), 1);
    }

    #[test]
    fn a_named_match_limits_that_value_only_and_groups_share_a_bucket() {
        let limiter = Limiter::new(&Metrics::new());
        let config =
            config("rules:\n  - scope: group\n    match: batch\n    rate: 0.001\n    burst: 2\n");
        let batch: [Arc<str>; 1] = [Arc::from("batch")];
        assert!(
            limiter
                .admit(&config, AgentCaps::default(), &subject("a", &batch))
                .is_ok()
        );
        assert!(
            limiter
                .admit(&config, AgentCaps::default(), &subject("b", &batch))
                .is_ok()
        );
        let refused = limiter
            .admit(&config, AgentCaps::default(), &subject("c", &batch))
            .expect_err("group spent");
        assert_eq!(
            (refused.scope, refused.value.as_str()),
            (Scope::Group, "batch")
        );
        assert!(refused.retry_after > Duration::from_secs(900));
        assert!(
            limiter
                .admit(&config, AgentCaps::default(), &subject("d", &[]))
                .is_ok()
        );
    }

    #[test]
    fn concurrency_is_held_until_the_permit_is_dropped() {
        let limiter = Limiter::new(&Metrics::new());
        let config = config("rules:\n  - scope: model\n    match: gpt-4o\n    concurrency: 1\n");
        let s = subject("a", &[]);
        let first = limiter
            .admit(&config, AgentCaps::default(), &s)
            .expect("admitted")
            .expect("a permit");
        let refused = limiter
            .admit(&config, AgentCaps::default(), &s)
            .expect_err("one in flight");
        assert_eq!(
            (refused.code(), refused.metric_scope()),
            ("concurrency_limited", "concurrency")
        );
        drop(first);
        assert!(
            limiter
                .admit(&config, AgentCaps::default(), &s)
                .expect("admitted again")
                .is_some()
        );
        assert!(limiter.inflight.is_empty(), "a released bucket is dropped");
    }

    #[test]
    fn a_refusal_by_a_later_rule_gives_back_what_earlier_rules_took() {
        let limiter = Limiter::new(&Metrics::new());
        let config = config(
            "rules:\n  - scope: agent\n    rate: 0.001\n    burst: 1\n    concurrency: 1\n  - scope: model\n    match: gpt-4o\n    concurrency: 1\n",
        );
        let held = limiter
            .admit(&config, AgentCaps::default(), &subject("a", &[]))
            .expect("admitted");
        // Agent b's request passes its own rule, then the model is busy: b is not charged.
        assert!(
            limiter
                .admit(&config, AgentCaps::default(), &subject("b", &[]))
                .is_err()
        );
        drop(held);
        assert!(
            limiter
                .admit(&config, AgentCaps::default(), &subject("b", &[]))
                .is_ok()
        );
    }

    fn asking_for<'a>(agent: &'a str, model: &'a str) -> Subject<'a> {
        Subject {
            model: Some(model),
            ..subject(agent, &[])
        }
    }

    #[test]
    fn made_up_model_names_share_one_bucket_of_their_agent_and_known_models_have_their_own() {
        let metrics = Metrics::new();
        let limiter = Limiter::new(&metrics);
        let config = config(
            "rules:\n  - scope: model\n    match: made-up-7\n    rate: 0.001\n    burst: 5\n  - scope: model\n    rate: 0.001\n    burst: 1\n",
        );
        let none = AgentCaps::default();
        assert!(
            limiter
                .admit(&config, none, &asking_for("a", "made-up-0"))
                .is_ok()
        );
        for i in 1..10_000 {
            let name = format!("made-up-{i}");
            let refused = limiter
                .admit(&config, none, &asking_for("a", &name))
                .expect_err("every unknown name is counted in one bucket");
            assert_eq!((refused.value.as_str(), refused.rule), ("other/a", Some(1)));
        }
        // One bucket for all of them (and the one the rule naming `made-up-7` keeps).
        assert_eq!(limiter.buckets.len(), 2);
        // Agent a's made-up names spent its own bucket only: b's first request of a model no
        // upstream has answered yet is admitted.
        assert!(
            limiter
                .admit(&config, none, &asking_for("b", "new-model"))
                .is_ok()
        );
        assert_eq!(limiter.buckets.len(), 3);
        // A model an upstream answered is counted by its name, in a bucket of its own.
        metrics.tokens("a", "gpt-4o", (Some(10), None), true);
        assert!(
            limiter
                .admit(&config, none, &asking_for("a", "gpt-4o"))
                .is_ok()
        );
        let refused = limiter
            .admit(&config, none, &asking_for("b", "gpt-4o"))
            .expect_err("its own bucket is spent");
        assert_eq!(refused.value, "gpt-4o");
        assert_eq!(limiter.buckets.len(), 4);
        // A model the configuration names is counted by its name before any answer.
        let configured = |agent| Subject {
            model_configured: true,
            ..asking_for(agent, "claude-opus-4")
        };
        assert!(limiter.admit(&config, none, &configured("a")).is_ok());
        let refused = limiter
            .admit(&config, none, &configured("c"))
            .expect_err("its own bucket is spent");
        assert_eq!(refused.value, "claude-opus-4");
    }

    fn calling<'a>(agent: &'a str, server: &'a str, tool: &'a str) -> Subject<'a> {
        Subject {
            model: None,
            tool: Some((server, tool)),
            mcp_tool: true,
            ..subject(agent, &[])
        }
    }

    #[test]
    fn made_up_tool_names_share_one_bucket_and_listed_tools_have_their_own() {
        let limiter = Limiter::new(&Metrics::new());
        let config = config("rules:\n  - scope: tool\n    rate: 0.001\n    burst: 1\n");
        let none = AgentCaps::default();
        assert!(
            limiter
                .admit(&config, none, &calling("a", "github", "made-up-0"))
                .is_ok()
        );
        for i in 1..10_000 {
            let name = format!("made-up-{i}");
            let refused = limiter
                .admit(&config, none, &calling("a", "github", &name))
                .expect_err("every tool no server listed is counted in one bucket");
            assert_eq!((refused.value.as_str(), refused.rule), ("other/a", Some(0)));
        }
        assert_eq!(limiter.buckets.len(), 1);
        // A tool a server listed is counted by its name, in a bucket of its own.
        limiter.learn_tool("github", "create_issue");
        let listed = calling("a", "github", "create_issue");
        assert!(limiter.admit(&config, none, &listed).is_ok());
        let refused = limiter
            .admit(&config, none, &listed)
            .expect_err("its own bucket is spent");
        assert_eq!(refused.value, "github/create_issue");
        assert_eq!(limiter.buckets.len(), 2);
        // The same name on another server is not the listed tool.
        let elsewhere = limiter.admit(&config, none, &calling("a", "jira", "create_issue"));
        assert_eq!(elsewhere.err().map(|r| r.value), Some("other/a".to_owned()));
        // A REST operation's name comes from configuration: counted by it.
        let operation = Subject {
            mcp_tool: false,
            ..calling("a", "billing", "refund")
        };
        assert!(limiter.admit(&config, none, &operation).is_ok());
        assert_eq!(limiter.buckets.len(), 3);
        // Servers listing ever more tools cannot grow the set past its bound.
        for i in 0..2 * TOOLS_MAX {
            limiter.learn_tool("flood", &format!("t{i}"));
        }
        assert_eq!(limiter.tools.len(), TOOLS_MAX);
    }

    #[test]
    fn an_agent_has_its_own_caps_on_requests_in_flight_and_tunnels_without_rules() {
        let limiter = Limiter::new(&Metrics::new());
        let config = RateLimitsConfig::default();
        let request = AgentCaps {
            in_flight: Some(3),
            tunnels: None,
        };
        let tunnel = AgentCaps {
            tunnels: Some(1),
            ..request
        };
        let s = subject("greedy", &[]);
        let first = limiter.admit(&config, tunnel, &s).expect("admitted");
        let refused = limiter
            .admit(&config, tunnel, &s)
            .expect_err("one tunnel open");
        assert_eq!(
            (refused.code(), refused.metric_scope(), refused.rule),
            ("concurrency_limited", "agent_tunnels", None)
        );
        assert!(
            refused.to_string().contains("egress.max_tunnels_per_agent"),
            "{refused}"
        );
        // The refused tunnel took no place in flight: two more requests fit, not three.
        let second = limiter.admit(&config, request, &s).expect("admitted");
        let third = limiter.admit(&config, request, &s).expect("admitted");
        let refused = limiter
            .admit(&config, request, &s)
            .expect_err("three in flight");
        assert_eq!(
            (refused.kind, refused.value.as_str()),
            (LimitKind::AgentInFlight { max: 3 }, "greedy")
        );
        assert_eq!(refused.retry_after_secs(), 1);
        assert!(
            refused
                .to_string()
                .contains("limits.max_in_flight_per_agent"),
            "{refused}"
        );
        // Another agent has places of its own.
        assert!(
            limiter
                .admit(&config, tunnel, &subject("other", &[]))
                .is_ok()
        );
        assert_eq!(
            limiter
                .limited
                .with_label_values(&["agent_in_flight"])
                .get(),
            1
        );
        drop((first, second, third));
        assert!(limiter.inflight.is_empty(), "every place given back");
        assert!(limiter.admit(&config, tunnel, &s).is_ok());
    }

    #[test]
    fn a_request_a_rule_refuses_gives_back_its_agents_place_in_flight() {
        let limiter = Limiter::new(&Metrics::new());
        let config = config("rules:\n  - scope: agent\n    rate: 0.001\n    burst: 1\n");
        let caps = AgentCaps {
            in_flight: Some(5),
            tunnels: Some(5),
        };
        let s = subject("a", &[]);
        let held = limiter.admit(&config, caps, &s).expect("admitted");
        assert!(limiter.admit(&config, caps, &s).is_err(), "rate spent");
        let taken: Vec<u32> = limiter.inflight.iter().map(|n| *n.value()).collect();
        assert_eq!(taken, [1, 1], "the admitted one's two places, no more");
        drop(held);
        assert!(limiter.inflight.is_empty(), "the refused one holds nothing");
    }

    #[test]
    fn a_tool_rule_matches_server_and_tool() {
        assert!(Value::Pair("github", "create_issue").matched_by("github/create_issue"));
        assert!(!Value::Pair("github", "create_issue").matched_by("github/create"));
        assert!(!Value::Pair("git", "hub/create_issue").matched_by("github/create_issue"));
        assert!(Value::Pair("x", "y").matched_by("*"));
    }
}
