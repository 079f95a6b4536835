//! The circuit breaker of each upstream (a route's upstream: an LLM provider or a REST API;
//! an MCP server, labelled `mcp:<server>`): after `failures` consecutive failures
//! (unreachable, timed out, a 5xx answer; for an MCP server also a process that cannot start
//! or dies) it opens and requests are answered at once with `upstream_circuit_open` (a 503 in
//! the route's protocol; a JSON-RPC error for MCP), without calling the upstream, for
//! `open_for`; then it lets `probes` requests through (half-open): their success closes it, a
//! failure opens it again. Each transition is logged and counted (`warden_breaker_state`,
//! `warden_breaker_transitions_total`).
//!
//! One breaker per upstream for the whole process (every worker shares it): its state is a
//! small mutex taken twice per request, never across an await.
//!
//! Across a reload: an upstream whose breaker settings did not change keeps its breaker and
//! its state (open stays open); one whose settings changed gets a new breaker, closed, its
//! counts started again (as Envoy rebuilds a cluster whose settings changed), for every
//! request from then on, those of sessions opened before included ([`BreakerSlot`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use prometheus::core::Collector;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use serde::Deserialize;

/// `upstream.breaker` (and each entry of `upstream.breakers`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker; 0 turns it off.
    pub failures: u32,
    /// How long it stays open before it lets probes through.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// How many requests it lets through while half-open; all must succeed to close it.
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(30),
            probes: 1,
        }
    }
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

impl State {
    fn label(&self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    fn gauge(&self) -> i64 {
        match self {
            State::Closed { .. } => 0,
            State::HalfOpen { .. } => 1,
            State::Open { .. } => 2,
        }
    }
}

/// The prefix of the breaker label of an MCP server (`mcp:<server>`).
pub const MCP_PREFIX: &str = "mcp:";

/// A request refused because its upstream's breaker is open.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "Warden stopped calling {} after {failures} consecutive failures; it tries again in {}s",
    Subject(upstream),
    self.retry_after_secs()
)]
pub struct CircuitOpen {
    pub upstream: Arc<str>,
    pub failures: u32,
    pub retry_after: Duration,
}

impl CircuitOpen {
    /// Whole seconds until the breaker lets a request through again (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// What a breaker's label names, for people: `MCP server <name>` or `the upstream of route
/// <name>`.
struct Subject<'a>(&'a str);

impl std::fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.strip_prefix(MCP_PREFIX) {
            Some(server) => write!(f, "MCP server {server}"),
            None => write!(f, "the upstream of route {}", self.0),
        }
    }
}

/// One upstream's breaker.
#[derive(Debug)]
pub struct Breaker {
    upstream: Arc<str>,
    config: BreakerConfig,
    state: Mutex<State>,
    metrics: BreakerMetrics,
}

/// A request the breaker let through: report how it went ([`Admitted::succeeded`],
/// [`Admitted::failed`]); dropped without a report (the agent left, or the attempt says
/// nothing of the upstream's health) it counts as neither, and a half-open breaker lets
/// another probe through in its place.
#[derive(Debug)]
pub struct Admitted {
    breaker: Option<Arc<Breaker>>,
    /// Let through as a half-open breaker's probe.
    probe: bool,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(b) = self.breaker.take()
            && self.probe
        {
            b.release();
        }
    }
}

impl Admitted {
    /// A request no breaker watches.
    pub fn unwatched() -> Admitted {
        Admitted {
            breaker: None,
            probe: false,
        }
    }

    /// The upstream answered (a status below 500).
    pub fn succeeded(mut self) {
        if let Some(b) = self.breaker.take() {
            b.report(true);
        }
    }

    /// The upstream failed: unreachable, timed out, or a 5xx answer.
    pub fn failed(mut self) {
        if let Some(b) = self.breaker.take() {
            b.report(false);
        }
    }

    /// Whether it was let through as a half-open breaker's probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports a success when `success`, else a failure.
    pub fn report(self, success: bool) {
        if success {
            self.succeeded()
        } else {
            self.failed()
        }
    }

    /// Reports `status`: a 5xx is a failure.
    pub fn answered(self, status: http::StatusCode) {
        if status.is_server_error() {
            self.failed()
        } else {
            self.succeeded()
        }
    }
}

impl Breaker {
    /// A closed breaker of `upstream` (its label) counting into `metrics`; [`Breakers::of`]
    /// keeps one per upstream.
    pub fn new(upstream: Arc<str>, config: BreakerConfig, metrics: BreakerMetrics) -> Breaker {
        metrics
            .state
            .with_label_values(&[&*upstream])
            .set(State::Closed { failures: 0 }.gauge());
        Breaker {
            upstream,
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
            metrics,
        }
    }

    /// Lets a request through, or says the breaker is open.
    pub fn admit(self: &Arc<Self>) -> Result<Admitted, CircuitOpen> {
        if self.config.failures == 0 {
            return Ok(Admitted::unwatched());
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if now < until => {
                return Err(self.open(until - now));
            }
            State::Open { .. } => {
                self.transition(
                    &mut state,
                    State::HalfOpen {
                        admitted: 1,
                        succeeded: 0,
                    },
                );
                true
            }
            State::HalfOpen {
                admitted,
                succeeded,
            } if admitted < self.config.probes.max(1) => {
                *state = State::HalfOpen {
                    admitted: admitted + 1,
                    succeeded,
                };
                true
            }
            State::HalfOpen { .. } => return Err(self.open(Duration::from_secs(1))),
        };
        Ok(Admitted {
            breaker: Some(Arc::clone(self)),
            probe,
        })
    }

    fn open(&self, retry_after: Duration) -> CircuitOpen {
        CircuitOpen {
            upstream: Arc::clone(&self.upstream),
            failures: self.config.failures,
            retry_after,
        }
    }

    /// A request let through that reports nothing: a half-open breaker's probe slot is free
    /// again.
    fn release(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let State::HalfOpen {
            admitted,
            succeeded,
        } = *state
        {
            *state = State::HalfOpen {
                admitted: admitted.saturating_sub(1),
                succeeded,
            };
        }
    }

    fn report(&self, success: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let next = match (*state, success) {
            (State::Closed { .. }, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 >= self.config.failures => {
                State::Open {
                    until: Instant::now() + self.config.open_for,
                }
            }
            (State::Closed { failures }, false) => State::Closed {
                failures: failures + 1,
            },
            (
                State::HalfOpen {
                    admitted,
                    succeeded,
                },
                true,
            ) if succeeded + 1 >= self.config.probes.max(1) => {
                let _ = admitted;
                State::Closed { failures: 0 }
            }
            (
                State::HalfOpen {
                    admitted,
                    succeeded,
                },
                true,
            ) => State::HalfOpen {
                admitted,
                succeeded: succeeded + 1,
            },
            (State::HalfOpen { .. }, false) => State::Open {
                until: Instant::now() + self.config.open_for,
            },
            // A request admitted before the breaker opened: it changes nothing.
            (open @ State::Open { .. }, _) => open,
        };
        if next.label() != state.label() {
            self.transition(&mut state, next);
        } else {
            *state = next;
        }
    }

    fn transition(&self, state: &mut State, next: State) {
        let from = state.label();
        *state = next;
        let to = next.label();
        match next {
            State::Open { .. } => tracing::warn!(
                upstream = %self.upstream, from, to,
                failures = self.config.failures,
                open_for = ?self.config.open_for,
                "circuit breaker opened: requests to this upstream are answered at once without calling it"
            ),
            _ => tracing::info!(upstream = %self.upstream, from, to, "circuit breaker {to}"),
        }
        self.metrics
            .state
            .with_label_values(&[&*self.upstream])
            .set(next.gauge());
        self.metrics
            .transitions
            .with_label_values(&[&*self.upstream, to])
            .inc();
    }
}

/// Where one upstream's breaker is kept: the breaker of its current settings. What lives
/// longer than a request (an MCP session's link to its server) keeps the slot, never the
/// breaker, so that a reload that changes the settings reaches it too.
#[derive(Debug)]
pub struct BreakerSlot {
    current: ArcSwap<Breaker>,
}

impl BreakerSlot {
    /// A slot holding `breaker`.
    pub fn new(breaker: Breaker) -> BreakerSlot {
        BreakerSlot {
            current: ArcSwap::from_pointee(breaker),
        }
    }

    /// The breaker of the current settings.
    pub fn current(&self) -> Arc<Breaker> {
        self.current.load_full()
    }

    /// Lets a request through the breaker of the current settings, or says it is open.
    pub fn admit(&self) -> Result<Admitted, CircuitOpen> {
        self.current().admit()
    }

    /// Puts a new, closed breaker with `config` in place unless the current one has it.
    fn configure(&self, config: &BreakerConfig, metrics: &BreakerMetrics) {
        let current = self.current.load_full();
        if current.config == *config {
            return;
        }
        let upstream = Arc::clone(&current.upstream);
        tracing::info!(
            upstream = %upstream, failures = config.failures, open_for = ?config.open_for,
            probes = config.probes,
            "circuit breaker settings changed: a new breaker, closed, counts from now on"
        );
        let fresh = Arc::new(Breaker::new(upstream, *config, metrics.clone()));
        // Two at once with the same settings: either breaker will do.
        self.current.compare_and_swap(&current, fresh);
    }
}

/// Every upstream's breaker, by its label (the route name; `mcp:<server>`).
#[derive(Debug)]
pub struct Breakers {
    by_upstream: DashMap<Arc<str>, Arc<BreakerSlot>>,
    metrics: BreakerMetrics,
}

impl Breakers {
    /// None yet: each is made on its upstream's first request.
    pub fn new(metrics: BreakerMetrics) -> Breakers {
        Breakers {
            by_upstream: DashMap::new(),
            metrics,
        }
    }

    /// The breaker of `upstream` with `config` (a new one when its configuration changed).
    pub fn of(&self, upstream: &Arc<str>, config: &BreakerConfig) -> Arc<Breaker> {
        if let Some(slot) = self.by_upstream.get(upstream) {
            let current = slot.current();
            if current.config == *config {
                return current;
            }
        }
        self.slot(upstream, config).current()
    }

    /// The slot of `upstream`'s breaker, its breaker given `config` if it had other settings.
    pub fn slot(&self, upstream: &Arc<str>, config: &BreakerConfig) -> Arc<BreakerSlot> {
        let slot = self
            .by_upstream
            .entry(Arc::clone(upstream))
            .or_insert_with(|| {
                Arc::new(BreakerSlot::new(Breaker::new(
                    Arc::clone(upstream),
                    *config,
                    self.metrics.clone(),
                )))
            })
            .clone();
        slot.configure(config, &self.metrics);
        slot
    }

    /// Applies reloaded `settings` (each upstream's label and breaker settings) to the
    /// breakers made so far: a changed upstream's breaker is replaced for every holder of its
    /// slot at once, not at its next new session.
    pub fn reconfigure<'a>(
        &self,
        settings: impl IntoIterator<Item = (&'a str, &'a BreakerConfig)>,
    ) {
        for (upstream, config) in settings {
            if let Some(slot) = self.by_upstream.get(upstream) {
                slot.configure(config, &self.metrics);
            }
        }
    }
}

/// `warden_breaker_state{upstream}` and `warden_breaker_transitions_total{upstream,to}`.
#[derive(Debug, Clone)]
pub struct BreakerMetrics {
    state: IntGaugeVec,
    transitions: IntCounterVec,
}

impl BreakerMetrics {
    /// New, unregistered metrics.
    pub fn new() -> BreakerMetrics {
        BreakerMetrics {
            state: IntGaugeVec::new(
                Opts::new(
                    "warden_breaker_state",
                    "Circuit breaker of each upstream: 0 closed, 1 half-open, 2 open",
                ),
                &["upstream"],
            )
            .expect("static metric definition"),
            transitions: IntCounterVec::new(
                Opts::new(
                    "warden_breaker_transitions_total",
                    "Circuit breaker transitions, by upstream and the state entered",
                ),
                &["upstream", "to"],
            )
            .expect("static metric definition"),
        }
    }

    /// Every metric, for the registry.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.state.clone()),
            Box::new(self.transitions.clone()),
        ]
    }
}

impl Default for BreakerMetrics {
    fn default() -> Self {
        BreakerMetrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> Arc<Breaker> {
        Arc::new(Breaker::new(
            Arc::from("openai"),
            BreakerConfig {
                failures: 3,
                open_for,
                probes: 1,
            },
            BreakerMetrics::new(),
        ))
    }

    #[test]
    fn opens_after_consecutive_failures_and_closes_on_a_successful_probe() {
        let b = breaker(Duration::from_millis(50));
        b.admit().unwrap().failed();
        b.admit().unwrap().failed();
        // A success in between starts the count again.
        b.admit().unwrap().succeeded();
        b.admit().unwrap().failed();
        b.admit().unwrap().failed();
        assert!(b.admit().is_ok(), "two consecutive failures only");
        b.admit().unwrap().failed();
        let open = b.admit().unwrap_err();
        assert_eq!(open.failures, 3);
        assert!(open.to_string().contains("route openai"), "{open}");
        std::thread::sleep(Duration::from_millis(60));
        let probe = b.admit().expect("half-open lets a probe through");
        assert!(b.admit().is_err(), "one probe at a time");
        probe.succeeded();
        assert!(b.admit().is_ok(), "closed again");
    }

    /// A breaker opened by three failures, past its 20 ms cool-down: half-open next.
    fn cooled_down() -> Arc<Breaker> {
        let b = breaker(Duration::from_millis(20));
        for _ in 0..3 {
            b.admit().unwrap().failed();
        }
        std::thread::sleep(Duration::from_millis(30));
        b
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let b = cooled_down();
        b.admit().unwrap().answered(http::StatusCode::BAD_GATEWAY);
        assert!(b.admit().is_err());
    }

    #[test]
    fn a_probe_that_reports_nothing_frees_its_slot() {
        let b = cooled_down();
        drop(b.admit().expect("the probe"));
        let probe = b.admit().expect("another probe in its place");
        probe.succeeded();
        assert!(b.admit().is_ok(), "closed");
    }

    #[test]
    fn an_mcp_servers_refusal_names_the_server_and_when_it_retries() {
        let b = Arc::new(Breaker::new(
            Arc::from("mcp:files"),
            BreakerConfig {
                failures: 1,
                open_for: Duration::from_secs(30),
                probes: 1,
            },
            BreakerMetrics::new(),
        ));
        b.admit().unwrap().failed();
        let open = b.admit().unwrap_err();
        let message = open.to_string();
        assert!(
            message.contains("MCP server files after 1 consecutive failures")
                && message.contains("tries again in 30s"),
            "{message}"
        );
    }

    #[test]
    fn a_reload_reaches_the_holders_of_a_slot_and_unchanged_settings_keep_the_state() {
        let breakers = Breakers::new(BreakerMetrics::new());
        let label: Arc<str> = Arc::from("mcp:files");
        let five = BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(30),
            probes: 1,
        };
        // A session keeps the slot it opened with.
        let slot = breakers.slot(&label, &five);
        for _ in 0..5 {
            slot.admit().unwrap().failed();
        }
        assert!(slot.admit().is_err(), "open");
        breakers.reconfigure([(&*label, &five)]);
        assert!(slot.admit().is_err(), "the same settings keep it open");
        assert!(Arc::ptr_eq(&slot.current(), &breakers.of(&label, &five)));

        // Fewer failures: a new breaker, closed, that the session's slot follows.
        let two = BreakerConfig {
            failures: 2,
            ..five
        };
        breakers.reconfigure([(&*label, &two)]);
        slot.admit().unwrap().failed();
        slot.admit().unwrap().failed();
        let open = slot.admit().unwrap_err();
        assert_eq!(open.failures, 2, "{open}");

        // A reload makes no breaker for an upstream nothing used yet.
        breakers.reconfigure([("mcp:other", &two)]);
        assert!(breakers.by_upstream.get("mcp:other").is_none());
    }
}
