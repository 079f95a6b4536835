//! The gateway's long-lived state shared by every request.

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::audit::AuditLog;
use crate::mcp::Sessions;
use crate::pins::Pins;
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::Traces;

/// What every request and the admin listener share for the life of the process. Each worker has its own
/// upstream connection pool (`workers.rs`).
pub struct Shared {
    /// The current configuration, routes, policies and identity; swapped on reload.
    pub snapshot: ArcSwap<Snapshot>,
    pub audit: AuditLog,
    pub metrics: Metrics,
    /// Agents' MCP sessions: they outlive reloads.
    pub mcp: Sessions,
    /// MCP tool-definition pins (`None`: not checked, as in tests of other parts).
    pub pins: Option<Arc<Pins>>,
    /// OpenTelemetry traces (`traces:`; off when not configured).
    pub traces: Traces,
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
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            audit,
            metrics,
            mcp: Sessions::new(),
            pins,
            traces,
            ready: AtomicBool::new(false),
        })
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
