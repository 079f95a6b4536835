//! The gateway's long-lived state shared by every request.

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::audit::AuditLog;
use crate::runtime::Runtime;
use crate::telemetry::metrics::Metrics;

/// State shared by the proxy workers and the admin listener. Each worker has its own
/// upstream connection pool (`workers.rs`).
pub struct Gateway {
    /// The current configuration, routes, policies and identity; swapped on reload.
    pub runtime: ArcSwap<Runtime>,
    pub audit: AuditLog,
    pub metrics: Metrics,
    ready: AtomicBool,
}

impl Gateway {
    /// Assembles the gateway; it reports ready once [`Gateway::set_ready`] is called.
    pub fn new(runtime: Runtime, audit: AuditLog, metrics: Metrics) -> Arc<Gateway> {
        Arc::new(Gateway {
            runtime: ArcSwap::from_pointee(runtime),
            audit,
            metrics,
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
