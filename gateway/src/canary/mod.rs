//! Canary tokens: credentials and documents that look real, planted in agents' environments,
//! that no legitimate work ever sends anywhere. `warden canary issue` mints one ([`mint`]) and
//! records it in the state store; every replica looks for every live canary in everything that
//! leaves (LLM prompts, MCP tool arguments, REST bodies, egress request lines, headers and
//! bodies, and the host a `CONNECT` names) with one automaton ([`watch`]). A hit is the
//! finding `canary` (its id and where, never its value), a deny whatever policy says
//! ([`overrule`]), `warden_canary_hits_total{channel}`, and an alert to the configured webhook
//! ([`alert`]).

mod alert;
pub mod config;
pub mod mint;
mod watch;

use std::sync::Arc;

use prometheus::{IntCounterVec, Opts};

use crate::action::{Action, EgressFacts, Facts, Finding, Findings};
use crate::decision::Decision;
use crate::state::canaries::CanaryRepository;
use crate::state::error::StateError;

pub use config::CanaryConfig;
pub use watch::Planted;

/// The finding a canary hit adds to `context.findings`.
pub const DETECTOR: &str = "canary";
/// The policy id a canary deny records.
pub const POLICY: &str = "warden/canary-token";
/// What the agent is told.
const REASON: &str = "a canary token was found in what this request sends: canaries are planted credentials and documents that no legitimate work uses, so this is treated as a leak";

/// The canaries this replica looks for, and what a hit sets off.
pub struct Canaries {
    watch: Arc<watch::Watch>,
    alerter: Option<alert::Alerter>,
    hits: IntCounterVec,
    alerts: IntCounterVec,
}

/// Why canary tokens cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error("cannot read the canary tokens from the state store: {0}")]
    Store(#[from] StateError),
    #[error("canaries.alert: {0}")]
    Alert(String),
}

impl Canaries {
    /// Loads the live canaries from `repo`, keeps them up to date every
    /// `config.refresh_interval`, and starts the alert webhook's task when there is one.
    pub async fn start(
        config: &CanaryConfig,
        repo: Arc<dyn CanaryRepository>,
    ) -> Result<Arc<Canaries>, CanaryError> {
        let watch = Arc::new(watch::Watch::load(repo).await?);
        watch::Watch::spawn(Arc::downgrade(&watch), config.refresh_interval);
        let hits = IntCounterVec::new(
            Opts::new(
                "warden_canary_hits_total",
                "Canary tokens found in outgoing traffic, by channel (llm, mcp, rest, egress).",
            ),
            &["channel"],
        )
        .expect("a valid metric");
        let alerts = IntCounterVec::new(
            Opts::new(
                "warden_canary_alerts_total",
                "Canary hit alerts by result (delivered, failed, dropped).",
            ),
            &["result"],
        )
        .expect("a valid metric");
        let alerter = config
            .alert
            .as_ref()
            .map(|a| alert::Alerter::start(a, alerts.clone()))
            .transpose()
            .map_err(CanaryError::Alert)?;
        Ok(Arc::new(Canaries {
            watch,
            alerter,
            hits,
            alerts,
        }))
    }

    /// The metrics, to register.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![Box::new(self.hits.clone()), Box::new(self.alerts.clone())]
    }

    /// Reads the store now rather than at the next interval.
    pub async fn refresh(&self) -> Result<(), StateError> {
        self.watch.refresh().await
    }

    /// Whether any live canary is in `haystack`.
    pub fn present(&self, haystack: &[u8]) -> bool {
        !self.watch.set.load().find(haystack).is_empty()
    }

    /// Looks for every live canary in `haystack` (`place` says what it is: `body`, `request
    /// line`, `headers`, `CONNECT host`) of `action`'s request `request_id`: each hit becomes a
    /// `canary` finding, is counted and alerted.
    pub fn inspect(&self, action: &mut Action, haystack: &[u8], place: &str, request_id: &str) {
        let hits = self.watch.set.load().find(haystack);
        for (planted, at) in hits {
            let channel = channel(&action.context.facts);
            self.hits.with_label_values(&[channel]).inc();
            action.context.findings.0.push(Finding {
                detector: Arc::from(DETECTOR),
                location: format!("{place}, byte {at}: canary {}", planted.id),
            });
            tracing::warn!(canary = %planted.id, kind = %planted.kind, channel, agent = %action.principal.id, request_id, "canary token found in outgoing traffic; denied");
            if let Some(alerter) = &self.alerter {
                alerter.send(serde_json::json!({
                    "event": "canary_hit",
                    "canary": { "id": &*planted.id, "kind": &*planted.kind, "label": &*planted.label },
                    "channel": channel,
                    "where": place,
                    "agent": &*action.principal.id,
                    "action": action.verb.as_str(),
                    "resource": action.resource.cedar_ref(),
                    "request_id": request_id,
                    "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                }));
            }
        }
    }
}

impl Canaries {
    /// The first live canary in `text`, what a refused request said as its record would keep
    /// it (a path, a tool's name): the hit is counted (channel `rejected`), logged and alerted
    /// as any other, without an action (the request was refused before it was read as one);
    /// `agent` is who sent it, when known.
    pub fn in_refused(
        &self,
        text: &[u8],
        agent: Option<&str>,
        request_id: &str,
    ) -> Option<Arc<str>> {
        let (planted, _) = self.watch.set.load().find(text).into_iter().next()?;
        self.hits.with_label_values(&[REJECTED]).inc();
        let agent = agent.unwrap_or_default();
        tracing::warn!(canary = %planted.id, kind = %planted.kind, channel = REJECTED, agent, request_id, "canary token found in a refused request; withheld from its record");
        if let Some(alerter) = &self.alerter {
            alerter.send(serde_json::json!({
                "event": "canary_hit",
                "canary": { "id": &*planted.id, "kind": &*planted.kind, "label": &*planted.label },
                "channel": REJECTED,
                "where": "refused request",
                "agent": agent,
                "request_id": request_id,
                "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            }));
        }
        Some(Arc::clone(&planted.id))
    }
}

/// The channel of a canary found in what a refused request said.
const REJECTED: &str = "rejected";

/// The channel a request leaves by: `llm`, `mcp`, `rest`, `egress` or `egress_tls`.
pub fn channel(facts: &Facts) -> &'static str {
    match facts {
        Facts::Llm(_) | Facts::Propose(_) => "llm",
        Facts::Http(_) => "rest",
        Facts::Egress(facts) => egress_channel(facts),
        Facts::Tool(_) | Facts::Sample(_) | Facts::Elicit(_) | Facts::Answer(_) | Facts::None => {
            "mcp"
        }
    }
}

/// The channel of egress: `egress_tls` for a request read out of an intercepted TLS tunnel
/// (`egress.intercept`), else `egress`.
pub fn egress_channel(facts: &EgressFacts) -> &'static str {
    if facts.scheme == "https" && facts.method.is_some() {
        "egress_tls"
    } else {
        "egress"
    }
}

/// Whether `findings` hold a canary hit.
pub fn hit(findings: &Findings) -> bool {
    findings.0.iter().any(|f| &*f.detector == DETECTOR)
}

/// A request that carries a canary is denied, whatever policy decided.
pub fn overrule(decision: Decision, findings: &Findings) -> Decision {
    if hit(findings) {
        Decision::Deny {
            reasons: vec![REASON.to_owned()],
            policies: vec![Arc::from(POLICY)],
        }
    } else {
        decision
    }
}
