//! Quarantine: an agent, or every agent of a group, stopped at once on every replica. New
//! requests are refused (`proxy::Refusal::Quarantined`), in-flight streams, MCP sessions and
//! egress tunnels are cut (`fleet/cut.rs`), until a release or the quarantine's expiry.
//!
//! The state store keeps quarantines (`state::quarantine`); each process keeps the ones in
//! force in memory ([`Quarantines::check`] is one atomic load and a hash lookup per request)
//! and refreshes that copy when the store announces a change (PostgreSQL `NOTIFY`) or its
//! revision moves (`sync.rs`). A command applies on its own process at once, before the store
//! answers. Every quarantine and release that takes effect on a replica is audited there.

pub mod config;
mod metrics;
mod share;
mod sync;
#[cfg(test)]
mod tests;
pub mod triggers;
pub mod until;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

pub use metrics::QuarantineMetrics;

use crate::action::Principal;
use crate::audit::AuditLog;
use crate::audit::event::{AuditEvent, EventKind, Timestamp};
use crate::state::StateError;
use crate::state::in_force::Kept;
use crate::state::pins::now_ms;
use crate::state::quarantine::{Actor, QuarantineRecord, QuarantineRepository, Target};

/// The stable code of a quarantined agent's refusals and of its streams' cut.
pub const CODE: &str = "agent_quarantined";

/// The quarantines in force, as this process knows them: agents first, then groups.
type InForce = crate::state::in_force::InForce<QuarantineRecord>;

/// Why a quarantine command failed.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    /// This process has no state store (a test of another part).
    #[error("this gateway has no state store to keep quarantines in")]
    NoStore,
    /// The store failed: the quarantine applies on this replica only (a release is refused).
    #[error(transparent)]
    State(#[from] StateError),
}

/// The quarantines of this process: the copy in force, the store behind it, the signal that
/// wakes in-flight work when the copy changes.
pub struct Quarantines {
    in_force: ArcSwap<InForce>,
    /// Woken whenever the copy changes: in-flight streams and tunnels check their agent then.
    changed: Arc<Notify>,
    store: OnceLock<Arc<dyn QuarantineRepository>>,
    audit: AuditLog,
    metrics: QuarantineMetrics,
    /// Recent denies per agent, for the `denies` trigger.
    denies: triggers::DenyWindows,
    /// Quarantines put in force here that no read of the store begun after their write can
    /// have missed yet: each with the number of reads begun when its write ended (`None`:
    /// under way, or refused, and then in force here only, as `quarantine` says). A refresh
    /// whose read began before the write keeps them; one begun after trusts the store (which
    /// may show the quarantine already released elsewhere).
    made_here: Arc<MadeHere>,
}

/// The quarantines made here that a read of the store may have missed, and the reads begun.
#[derive(Debug, Default)]
struct MadeHere {
    held: std::sync::Mutex<Vec<(Arc<QuarantineRecord>, Option<u64>)>>,
    reads: std::sync::atomic::AtomicU64,
}

impl MadeHere {
    fn held(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<QuarantineRecord>, Option<u64>)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `record`'s write to the store ended: a read begun from now on shows it (or its release).
    fn written(&self, record: &QuarantineRecord) {
        let reads = self.reads.load(std::sync::atomic::Ordering::SeqCst);
        for (held, written) in self.held().iter_mut() {
            if **held == *record {
                *written = Some(reads);
            }
        }
    }
}

impl std::fmt::Debug for Quarantines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quarantines")
            .field("in_force", &self.in_force.load().records().count())
            .finish_non_exhaustive()
    }
}

impl Quarantines {
    /// None in force and no store yet ([`Quarantines::attach`] gives it one).
    pub fn new(audit: AuditLog, metrics: QuarantineMetrics) -> Quarantines {
        Quarantines {
            in_force: ArcSwap::from_pointee(InForce::default()),
            changed: Arc::new(Notify::new()),
            made_here: Arc::default(),
            store: OnceLock::new(),
            audit,
            metrics,
            denies: triggers::DenyWindows::default(),
        }
    }

    /// Loads the quarantines in force from `store` and keeps them current: refreshed on the
    /// store's announcements and whenever its revision moves (read every `refresh_interval`).
    pub async fn attach(
        self: &Arc<Self>,
        store: Arc<dyn QuarantineRepository>,
        refresh_interval: Duration,
    ) -> Result<(), StateError> {
        let _ = self.store.set(Arc::clone(&store));
        let announcements = store.announcements();
        crate::state::follow::start(
            self,
            store,
            |s| s.revision(),
            announcements,
            refresh_interval,
        )
        .await
    }

    /// The quarantine that stops `principal` now (its own, else one of its groups'), if any.
    /// One atomic load and at most a few hash lookups: the request path calls it every time.
    pub fn check(&self, principal: &Principal) -> Option<Arc<QuarantineRecord>> {
        let in_force = self.in_force.load();
        if in_force.is_empty() {
            return None;
        }
        let now = now_ms();
        let found = in_force.named(Target::AGENT, &principal.id).or_else(|| {
            principal
                .groups
                .iter()
                .find_map(|group| in_force.named(Target::GROUP, group))
        })?;
        found.in_force(now).then(|| Arc::clone(found))
    }

    /// The signal woken whenever this process's copy changes.
    pub(crate) fn changed(&self) -> &Arc<Notify> {
        &self.changed
    }

    /// Records that `record` cut its agent's work: what, in `detail`.
    pub(crate) fn record_cut(&self, record: &QuarantineRecord, detail: serde_json::Value) {
        self.audit.append_detached(event("cut", record, detail));
    }

    /// Every quarantine in force, as this process knows it.
    pub fn list(&self) -> Vec<Arc<QuarantineRecord>> {
        self.in_force.load().listed(now_ms())
    }

    /// Quarantines `record.target`: in force on this process at once, then in the store for
    /// every other. When the store fails, it stays in force here and the error says so.
    pub async fn quarantine(&self, record: QuarantineRecord) -> Result<(), QuarantineError> {
        let held = Arc::new(record.clone());
        self.hold_here(Arc::clone(&held));
        let store = self.store.get().ok_or(QuarantineError::NoStore)?;
        store.quarantine(record).await?;
        self.made_here.written(&held);
        Ok(())
    }

    /// Releases `target` as `by`: removed from the store (which keeps who released it, for
    /// every replica's record), then from this process; the quarantine released, `None` when
    /// there was none.
    pub async fn release(
        &self,
        target: &Target,
        by: &Actor,
    ) -> Result<Option<QuarantineRecord>, QuarantineError> {
        let store = self.store.get().ok_or(QuarantineError::NoStore)?;
        let released = store.release(target, by).await?;
        self.made_here().retain(|(r, _)| r.target != *target);
        if let Some(record) = self.in_force.load().get(target).cloned() {
            self.apply(&[], &[(record, by.clone())]);
        }
        Ok(released)
    }

    /// Quarantines the agent of `principal` because a trigger fired: in force here at once,
    /// written to the store in the background (a failure is logged; it stays in force here).
    pub fn trigger(
        &self,
        principal: &Principal,
        trigger: &'static str,
        reason: String,
        duration: Option<Duration>,
    ) {
        let now = now_ms();
        let record = QuarantineRecord {
            target: Target::Agent(principal.id.to_string()),
            reason,
            trigger: trigger.to_owned(),
            by: Actor::warden(),
            created_ms: now,
            until_ms: duration.map(|d| now.saturating_add(d.as_millis() as i64)),
        };
        tracing::warn!(agent = %principal.id, trigger, reason = %record.reason, "quarantining an agent");
        self.hold_here(Arc::new(record.clone()));
        if let Some(store) = self.store.get() {
            let store = Arc::clone(store);
            let made_here = Arc::clone(&self.made_here);
            let held = record.clone();
            tokio::spawn(async move {
                match store.quarantine(record).await {
                    Ok(()) => made_here.written(&held),
                    Err(error) => {
                        tracing::error!(%error, "cannot store an automatic quarantine; it is in force on this replica only");
                    }
                }
            });
        }
    }

    /// Puts `record` in force here and keeps it so until a read of the store begun after its
    /// write.
    fn hold_here(&self, record: Arc<QuarantineRecord>) {
        self.made_here().push((Arc::clone(&record), None));
        self.apply(&[record], &[]);
    }

    fn made_here(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<QuarantineRecord>, Option<u64>)>> {
        self.made_here.held()
    }

    /// Whether a quarantine in this process's copy has expired (the copy needs a refresh).
    fn has_expired(&self) -> bool {
        self.in_force.load().has_expired(now_ms())
    }

    /// Reads the quarantines in force from the store and applies the difference. One that is
    /// gone was lifted by its expiry, or released by the operator the store names (read in
    /// one query for all of them); one the store does not know who released (an older Warden
    /// released it) by `another process`.
    async fn refresh(&self) -> Result<(), StateError> {
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        let read = self
            .made_here
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stored = InForce::from_records(store.active().await?.into_iter().map(Arc::new));
        let now = now_ms();
        // The copy first, then what was made here: one in the copy was held here before it
        // was put in force, so the list read after it names it.
        let current = self.in_force.load_full();
        let pending: Vec<Arc<QuarantineRecord>> = {
            let mut made_here = self.made_here();
            // A write that ended before this read began is in what it read (or released).
            made_here.retain(|(r, written)| r.in_force(now) && written.is_none_or(|w| w > read));
            made_here.iter().map(|(r, _)| Arc::clone(r)).collect()
        };
        let newer_here = |target: &Target| pending.iter().any(|r| r.target == *target);
        let added: Vec<_> = stored
            .records()
            .filter(|r| current.get(&r.target) != Some(*r) && !newer_here(&r.target))
            .cloned()
            .collect();
        let gone: Vec<_> = current
            .records()
            .filter(|r| stored.get(&r.target).is_none() && !newer_here(&r.target))
            .collect();
        let released: Vec<_> = gone
            .iter()
            .filter(|r| r.in_force(now))
            .map(|r| (r.target.clone(), r.created_ms))
            .collect();
        let releases = if released.is_empty() {
            Vec::new()
        } else {
            store.releases(&released).await?
        };
        let removed: Vec<_> = gone
            .into_iter()
            .map(|r| {
                let by = if !r.in_force(now) {
                    Actor::new("expiry", Actor::WARDEN)
                } else {
                    releases
                        .iter()
                        .find(|release| {
                            release.target == r.target && release.created_ms == r.created_ms
                        })
                        .map_or_else(
                            || Actor::new("another process", Actor::WARDEN),
                            |release| release.by.clone(),
                        )
                };
                (Arc::clone(r), by)
            })
            .collect();
        if !added.is_empty() || !removed.is_empty() {
            self.apply(&added, &removed);
        }
        Ok(())
    }

    /// Puts `added` in force and lifts `removed` on this process; audits, counts and wakes
    /// in-flight work.
    fn apply(&self, added: &[Arc<QuarantineRecord>], removed: &[(Arc<QuarantineRecord>, Actor)]) {
        self.in_force.rcu(|current| {
            let mut next = InForce::from_records(current.records().cloned());
            for record in added {
                next.insert(Arc::clone(record));
            }
            for (record, _) in removed {
                next.remove(&record.target);
            }
            next
        });
        let now = now_ms();
        for record in added {
            let effect = (now - record.created_ms).max(0) as f64 / 1000.0;
            self.metrics.effect_seconds.observe(effect);
            self.metrics
                .total
                .with_label_values(&[metrics::trigger_label(&record.trigger)])
                .inc();
            tracing::info!(target = %record.target, trigger = %record.trigger, by = %record.by, "quarantine in force");
            self.audit.append_detached(event(
                "quarantine",
                record,
                serde_json::json!({ "effect_ms": (now - record.created_ms).max(0) }),
            ));
        }
        for (record, by) in removed {
            tracing::info!(target = %record.target, by = %by, "quarantine released");
            self.audit.append_detached(event(
                "release",
                record,
                serde_json::json!({ "released_by": by.to_json() }),
            ));
        }
        self.metrics
            .agents
            .set(self.in_force.load().records().count() as i64);
        self.changed.notify_waiters();
    }
}

/// The system record of a quarantine `what` (`quarantine`, `release`, `cut`) of `record`.
pub(crate) fn event(what: &str, record: &QuarantineRecord, extra: serde_json::Value) -> AuditEvent {
    let mut event = AuditEvent::now(EventKind::System);
    let mut detail = serde_json::json!({
        "event": what,
        "target": { "kind": record.target.kind(), "name": record.target.name() },
        "reason": record.reason,
        "trigger": record.trigger,
        "by": record.by.to_json(),
        "since_ms": record.created_ms,
        "until_ms": record.until_ms,
    });
    if let (Some(detail), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
        detail.extend(extra);
    }
    if let Target::Agent(name) = &record.target {
        event.principal.kind = "agent".into();
        event.principal.id = Arc::from(name.as_str());
    }
    event.detail = Some(detail);
    event
}

/// The sentence an agent is told about `record`.
pub fn message(record: &QuarantineRecord) -> String {
    let whom = match &record.target {
        Target::Agent(_) => "this agent".to_owned(),
        Target::Group(group) => format!("the agent group {group:?}"),
    };
    let until = match record.until_ms {
        Some(ms) => format!(
            " until {}",
            Timestamp(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
        ),
        None => " until an operator releases it".to_owned(),
    };
    format!(
        "Warden has quarantined {whom}{until}: {}. Its requests are refused; ask the operators of \
         this gateway to release it.",
        record.reason
    )
}
