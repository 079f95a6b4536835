//! Budget resets (`warden budgets reset`) in every gateway's audit log. The command wipes
//! spend in the state store and records there, in the same transaction, who reset what, when
//! and how many accounts; it cannot append to the gateways' audit logs. So each gateway, at
//! each budget sync (the sync that applies the reset), reads the records numbered after the
//! last it read and writes one `system` record (`event: budget_reset`) for each, detached like
//! the quarantine events, and logs an INFO line: once per gateway and reset.
//!
//! At a gateway's first read (its start) the records made before it started are not audited:
//! the gateways that ran then did (a reset made while no gateway ran is kept in the store, not
//! in any audit log). From then on records are taken by number, not by time, so that a
//! command whose clock is behind the gateway's is still audited. A read that fails takes
//! nothing: the next sync reads the same records again.

use crate::audit::AuditLog;
use crate::audit::event::{AuditEvent, EventKind};
use crate::fleet::budget::Ledger;
use crate::fleet::budget::resets_seen::NextRead;
use crate::state::StateError;
use crate::state::fleet::{FleetRepository, SpendResetRecord};

impl Ledger {
    /// Audits in `audit` each budget reset `store` recorded since the last call (at the
    /// first, those made since this gateway started), and logs it; how many were audited.
    pub async fn audit_resets(
        &self,
        store: &dyn FleetRepository,
        audit: &AuditLog,
    ) -> Result<usize, StateError> {
        let (after, since) = match self.reset_records.next() {
            NextRead::Since(ms) => (0, ms),
            NextRead::After(id) => (id, i64::MIN),
        };
        let records = store.spend_resets(after).await?;
        let mut audited = 0;
        for record in records.iter().filter(|r| r.at_ms >= since) {
            let reset = &record.reset;
            tracing::info!(
                reset = record.id,
                scope = reset.scope.as_deref().unwrap_or("all"),
                name = reset.name.as_deref().unwrap_or("*"),
                by = %reset.by,
                accounts = record.accounts,
                "budget spend reset by an operator: the budgets of what it reset start again \
                 from nothing"
            );
            audit.append_detached(event(record));
            audited += 1;
        }
        let last = records.last().map_or(after, |r| r.id);
        self.reset_records.read_up_to(last);
        Ok(audited)
    }
}

/// The system record of `record`.
fn event(record: &SpendResetRecord) -> AuditEvent {
    let reset = &record.reset;
    let mut event = AuditEvent::now(EventKind::System);
    if let (Some("agent"), Some(name)) = (reset.scope.as_deref(), reset.name.as_deref()) {
        event.principal.kind = "agent".into();
        event.principal.id = std::sync::Arc::from(name);
    }
    event.detail = Some(serde_json::json!({
        "event": "budget_reset",
        "reset": record.id,
        "scope": reset.scope,
        "name": reset.name,
        "all": reset.scope.is_none(),
        "accounts": record.accounts,
        "by": reset.by.to_json(),
        "at_ms": record.at_ms,
    }));
    event
}
