//! What cuts an agent's in-flight work (a response stream, an MCP session's stream, an egress
//! tunnel) when it is quarantined: woken by every change of the quarantines in force, it
//! checks its agent and is ready once a quarantine stops it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::futures::OwnedNotified;

use super::Quarantines;
use crate::action::Principal;
use crate::state::quarantine::QuarantineRecord;

/// Ready with the quarantine that stops its agent; pending until then.
pub struct Cut {
    quarantines: Arc<Quarantines>,
    principal: Arc<Principal>,
    /// Armed before each check, so a change between the check and the wait is not missed.
    change: Pin<Box<OwnedNotified>>,
    /// Whether the quarantines were checked once (a quarantine that came between the
    /// request's admission and this cut's making is found then).
    checked: bool,
}

impl std::fmt::Debug for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cut")
            .field("principal", &self.principal.id)
            .finish_non_exhaustive()
    }
}

impl Cut {
    pub(super) fn new(quarantines: Arc<Quarantines>, principal: Arc<Principal>) -> Cut {
        let change = Box::pin(Arc::clone(&quarantines.changed).notified_owned());
        Cut {
            quarantines,
            principal,
            change,
            checked: false,
        }
    }

    /// The quarantine of this agent once one is in force.
    pub fn poll_cut(&mut self, cx: &mut Context<'_>) -> Poll<Arc<QuarantineRecord>> {
        if !self.checked {
            self.checked = true;
            if let Some(record) = self.quarantines.check(&self.principal) {
                return Poll::Ready(record);
            }
        }
        loop {
            if self.change.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Re-armed before the check: a change after it wakes the new one.
            self.change = Box::pin(Arc::clone(&self.quarantines.changed).notified_owned());
            if let Some(record) = self.quarantines.check(&self.principal) {
                return Poll::Ready(record);
            }
        }
    }

    /// Waits for the quarantine of this agent.
    pub async fn cut(&mut self) -> Arc<QuarantineRecord> {
        std::future::poll_fn(|cx| self.poll_cut(cx)).await
    }

    /// The agent this watches.
    pub fn principal(&self) -> &Arc<Principal> {
        &self.principal
    }

    /// Records that `record` cut this agent's work: what, in `detail`.
    pub fn record(&self, record: &QuarantineRecord, detail: serde_json::Value) {
        self.quarantines
            .audit
            .append_detached(super::event("cut", record, detail));
    }
}
