//! The gateway's long-lived state shared by every request.

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::audit::AuditLog;
use crate::fleet::budget::Ledger;
use crate::fleet::limits::Limiter;
use crate::fleet::quarantine::{QuarantineMetrics, Quarantines};
use crate::fleet::session::AgentSessions;
use crate::identity::revocation::Revocations;
use crate::mcp::Sessions;
use crate::pins::Pins;
use crate::snapshot::Snapshot;
use crate::state::bundle_floors::BundleFloorRepository;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::Traces;
use crate::upstream::breaker::{BreakerMetrics, Breakers};

/// What every request and the admin listener share for the life of the process. Each worker has its own
/// upstream connection pool (`workers.rs`).
pub struct Shared {
    /// The current configuration, routes, policies and identity; swapped on reload.
    pub snapshot: ArcSwap<Snapshot>,
    /// How many reloads were applied: what is still open (egress tunnels) is judged again
    /// by the new policies when it changes.
    pub reloads: tokio::sync::watch::Sender<u64>,
    pub audit: AuditLog,
    pub metrics: Metrics,
    /// Agents' MCP sessions: they outlive reloads.
    pub mcp: Sessions,
    /// MCP tool-definition pins (`None`: not checked, as in tests of other parts).
    pub pins: Option<Arc<Pins>>,
    /// OpenTelemetry traces (`traces:`; off when not configured).
    pub traces: Traces,
    /// Rate and concurrency counts (`rate_limits:`): they outlive reloads.
    pub limits: Arc<Limiter>,
    /// Agents' session facts (`sessions:`): they outlive reloads.
    pub sessions: Arc<AgentSessions>,
    /// Tokens and dollars spent per agent, group and fleet (`budgets:`): they outlive reloads.
    pub budgets: Arc<Ledger>,
    /// Quarantined agents and groups, as this process knows them (the state store attached
    /// at start; without it, only this process's own quarantines).
    pub quarantines: Arc<Quarantines>,
    /// Revoked Warden agent tokens, as this process knows them (the state store attached at
    /// start; without it, only this process's own revocations).
    pub revocations: Arc<Revocations>,
    /// Every upstream's circuit breaker, shared by the workers.
    pub breakers: Breakers,
    /// The approval gate, once the state store is open (unset: approvals are refused, as in
    /// tests of other parts).
    gate: std::sync::OnceLock<Arc<crate::approval::gate::Gate>>,
    /// The canary tokens looked for, once the state store is open (unset: none, as in tests
    /// of other parts).
    canaries: std::sync::OnceLock<Arc<crate::canary::Canaries>>,
    /// The fleet's rollback floors of signed policy bundles, once the state store is open
    /// (unset: reloads check only this gateway's own floors, as in tests of other parts).
    bundle_floors: std::sync::OnceLock<Arc<dyn BundleFloorRepository>>,
    /// What the egress of local MCP servers' processes shares with the egress listener, once
    /// serving (unset: such a process's egress cannot be served, and it is stopped).
    local_egress: std::sync::OnceLock<crate::proxy::egress::local::LocalParts>,
    ready: AtomicBool,
}

impl Shared {
    /// Assembles the shared state; it reports ready once [`Shared::set_ready`] is called.
    pub fn new(
        snapshot: Snapshot,
        audit: AuditLog,
        metrics: Metrics,
        pins: Option<Arc<Pins>>,
        traces: Traces,
    ) -> Arc<Shared> {
        let limits = Arc::new(Limiter::new(&metrics));
        let budgets = Arc::new(Ledger::new(&metrics));
        let quarantine_metrics = QuarantineMetrics::new();
        metrics.register(quarantine_metrics.collectors());
        let quarantines = Arc::new(Quarantines::new(audit.clone(), quarantine_metrics));
        let revocations = Arc::new(Revocations::new(audit.clone()));
        let breaker_metrics = BreakerMetrics::new();
        metrics.register(breaker_metrics.collectors());
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            reloads: tokio::sync::watch::Sender::new(0),
            audit,
            metrics,
            mcp: Sessions::new(),
            pins,
            traces,
            limits,
            sessions: Arc::new(AgentSessions::default()),
            budgets,
            quarantines,
            revocations,
            breakers: Breakers::new(breaker_metrics),
            gate: std::sync::OnceLock::new(),
            canaries: std::sync::OnceLock::new(),
            bundle_floors: std::sync::OnceLock::new(),
            local_egress: std::sync::OnceLock::new(),
            ready: AtomicBool::new(false),
        })
    }

    /// Sets the approval gate (once, at start).
    pub fn set_gate(&self, gate: Arc<crate::approval::gate::Gate>) {
        let _ = self.gate.set(gate);
    }

    /// The approval gate, if this gateway has one.
    pub fn gate(&self) -> Option<&Arc<crate::approval::gate::Gate>> {
        self.gate.get()
    }

    /// Sets the canary tokens looked for (once, at start).
    pub fn set_canaries(&self, canaries: Arc<crate::canary::Canaries>) {
        let _ = self.canaries.set(canaries);
    }

    /// The canary tokens looked for, if this gateway has a state store.
    pub fn canaries(&self) -> Option<&Arc<crate::canary::Canaries>> {
        self.canaries.get()
    }

    /// Sets the fleet's rollback floors of signed policy bundles (once, at start).
    pub fn set_bundle_floors(&self, floors: Arc<dyn BundleFloorRepository>) {
        let _ = self.bundle_floors.set(floors);
    }

    /// The fleet's rollback floors of signed policy bundles, if this gateway has a state
    /// store.
    pub fn bundle_floors(&self) -> Option<&Arc<dyn BundleFloorRepository>> {
        self.bundle_floors.get()
    }

    /// Sets what the egress of local MCP servers' processes shares (once, at start).
    pub fn set_local_egress(&self, parts: crate::proxy::egress::local::LocalParts) {
        let _ = self.local_egress.set(parts);
    }

    /// What the egress of local MCP servers' processes shares, once serving.
    pub fn local_egress(&self) -> Option<&crate::proxy::egress::local::LocalParts> {
        self.local_egress.get()
    }

    /// Marks the gateway ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `/readyz` should answer 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
