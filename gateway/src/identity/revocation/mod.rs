//! Revocation of Warden's own agent tokens: one token by its id (`jti`), or every token of an
//! agent issued until a time. A revoked token is refused after its signature is verified,
//! whether it was verified now or earlier (the verified-token cache keeps each token's
//! [`TokenStamp`], judged on every request), with `401 token_revoked`.
//!
//! The state store keeps revocations (`state::revocations`) until every token they stop has
//! expired anyway on every replica ([`revocation`]: the longest lifetime any Warden allows a
//! token, or the revoked token's own `exp`, plus the largest leeway); each process keeps
//! them in memory ([`Revocations::check`] is one atomic load and at most two hash lookups per
//! request) and refreshes that copy when the store announces a change (PostgreSQL `NOTIFY`)
//! or its revision moves (`state/follow.rs`, read every
//! `identity.warden_issuer.refresh_interval`), as quarantines do. When the store cannot be
//! read, the revocations in force stay in force. A revocation made on this process applies
//! here at once, before the store answers. Every revocation that takes effect on a replica is
//! audited there, with who made it.

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use super::config::{MAX_LEEWAY_SECONDS, MAX_TTL_LIMIT};
use super::error::{AuthError, UnixTime};
use crate::audit::AuditLog;
use crate::audit::event::{AuditEvent, EventKind};
use crate::state::StateError;
use crate::state::in_force::Kept;
use crate::state::pins::now_ms;
use crate::state::quarantine::Actor;
use crate::state::revocations::{RevocationRecord, RevocationRepository, Revoked};

/// The stable code of a revoked token's refusals and of the cut of what it opened.
pub const CODE: &str = "token_revoked";

/// What a verified Warden token says about itself that revocations judge: its id and when it
/// was issued (its agent is the principal's id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStamp {
    /// `jti`; absent from a token made by something other than `warden token issue`.
    pub id: Option<Arc<str>>,
    /// `iat`, unix seconds.
    pub issued_at: u64,
}

/// The revocations kept, as this process knows them: tokens first, then agents.
type InForce = crate::state::in_force::InForce<RevocationRecord>;

/// Why a revocation could not be made everywhere.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// This process has no state store (a test of another part).
    #[error("this gateway has no state store to keep token revocations in")]
    NoStore,
    /// The store failed: the revocation applies on this replica only, until its next read of
    /// the store; make it again.
    #[error(
        "the revocation applies on this replica only, the state store failed: {0}; revoke again \
         once the store answers"
    )]
    State(#[from] StateError),
}

/// The token revocations of this process: the copy in force, the store behind it, the signal
/// that wakes in-flight work when the copy changes.
pub struct Revocations {
    in_force: ArcSwap<InForce>,
    /// Woken whenever the copy changes (a revocation made here or read from the store): the
    /// in-flight work of revoked tokens is cut then (`fleet/cut.rs`).
    changed: Arc<Notify>,
    /// Revocations made on this process that no read of the store has shown yet: a refresh
    /// whose read came before the store had one keeps it. Whoever changes `in_force` holds
    /// this lock meanwhile, so a refresh never replaces a revocation made while it read.
    made_here: Mutex<Vec<Arc<RevocationRecord>>>,
    store: OnceLock<Arc<dyn RevocationRepository>>,
    audit: AuditLog,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("in_force", &self.in_force.load().records().count())
            .finish_non_exhaustive()
    }
}

impl Revocations {
    /// None in force and no store yet ([`Revocations::attach`] gives it one).
    pub fn new(audit: AuditLog) -> Revocations {
        Revocations {
            in_force: ArcSwap::from_pointee(InForce::default()),
            changed: Arc::new(Notify::new()),
            made_here: Mutex::new(Vec::new()),
            store: OnceLock::new(),
            audit,
        }
    }

    /// Loads the revocations kept in `store` and keeps them current: refreshed on the
    /// store's announcements and whenever its revision moves (read every `refresh_interval`).
    pub async fn attach(
        self: &Arc<Self>,
        store: Arc<dyn RevocationRepository>,
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

    /// Refuses the token of `agent` that `stamp` describes when it is revoked: by its id, or
    /// as one of its agent's issued up to the second of a revocation of the agent. One atomic
    /// load and at most two hash lookups: the request path calls it every time.
    pub fn check(&self, agent: &str, stamp: &TokenStamp) -> Result<(), AuthError> {
        match self.revoking(agent, stamp) {
            Some((record, whom)) => Err(refusal(&record, whom)),
            None => Ok(()),
        }
    }

    /// The revocation that stops the token of `agent` that `stamp` describes, and how it names
    /// it (`by its id`, or `with every token of its agent issued until then`), if one does.
    pub fn revoking(
        &self,
        agent: &str,
        stamp: &TokenStamp,
    ) -> Option<(Arc<RevocationRecord>, &'static str)> {
        let in_force = self.in_force.load();
        if in_force.is_empty() {
            return None;
        }
        let now = now_ms();
        if let Some(id) = &stamp.id
            && let Some(record) = in_force.named(Revoked::TOKEN, id)
            && record.in_force(now)
        {
            return Some((Arc::clone(record), "by its id"));
        }
        if let Some(record) = in_force.named(Revoked::AGENT, agent)
            && record.in_force(now)
            && stamp.issued_at <= seconds(record.created_ms)
        {
            return Some((
                Arc::clone(record),
                "with every token of its agent issued until then",
            ));
        }
        None
    }

    /// The signal woken whenever this process's copy changes.
    pub(crate) fn changed(&self) -> &Arc<Notify> {
        &self.changed
    }

    /// Records that `record` cut work `agent` had opened with the revoked token: what, in
    /// `detail`.
    pub(crate) fn record_cut(
        &self,
        record: &RevocationRecord,
        agent: &str,
        detail: serde_json::Value,
    ) {
        let mut event = event(record, now_ms());
        if let Some(fields) = event
            .detail
            .as_mut()
            .and_then(serde_json::Value::as_object_mut)
        {
            fields.insert("event".into(), "cut".into());
            fields.remove("effect_ms");
            if let serde_json::Value::Object(detail) = detail {
                fields.extend(detail);
            }
        }
        event.principal.kind = "agent".into();
        event.principal.id = Arc::from(agent);
        self.audit.append_detached(event);
    }

    /// Every revocation kept, as this process knows it, oldest first.
    pub fn list(&self) -> Vec<Arc<RevocationRecord>> {
        self.in_force.load().listed(now_ms())
    }

    /// Revokes `record.target`: in force on this process at once, then in the store for every
    /// other. When the store fails, it is in force here until the next read of the store, and
    /// the error says so.
    pub async fn revoke(&self, record: RevocationRecord) -> Result<(), RevocationError> {
        let record = Arc::new(record);
        {
            let mut made_here = self.made_here();
            made_here.push(Arc::clone(&record));
            self.apply(Arc::clone(&record));
        }
        let store = self.store.get().ok_or(RevocationError::NoStore)?;
        if let Err(error) = store.revoke((*record).clone()).await {
            // Not kept past the next read of the store, as the error says.
            self.made_here().retain(|r| !Arc::ptr_eq(r, &record));
            return Err(error.into());
        }
        Ok(())
    }

    fn made_here(&self) -> std::sync::MutexGuard<'_, Vec<Arc<RevocationRecord>>> {
        self.made_here.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a revocation in this process's copy has expired (the copy needs a refresh).
    fn has_expired(&self) -> bool {
        self.in_force.load().has_expired(now_ms())
    }

    /// Reads the revocations kept in the store and applies the difference: new ones (and new
    /// versions of known ones) are audited; gone ones expired. A revocation made here that the
    /// store did not show yet (its write still under way when it was read) is kept.
    async fn refresh(&self) -> Result<(), StateError> {
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        let stored: Vec<Arc<RevocationRecord>> =
            store.active().await?.into_iter().map(Arc::new).collect();
        let added = {
            let mut made_here = self.made_here();
            let now = now_ms();
            made_here.retain(|r| r.in_force(now) && !stored.iter().any(|s| s.covers(r)));
            // Later in the chain wins: a revocation made here over an older one stored.
            let next = InForce::from_records(stored.into_iter().chain(made_here.iter().cloned()));
            let current = self.in_force.load_full();
            let added: Vec<_> = next
                .records()
                .filter(|r| current.get(&r.target) != Some(*r))
                .cloned()
                .collect();
            let gone = current.records().any(|r| next.get(&r.target).is_none());
            if added.is_empty() && !gone {
                return Ok(());
            }
            self.in_force.store(Arc::new(next));
            added
        };
        self.audit_added(&added);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Puts `added` in force on this process (replacing a revocation of the same target);
    /// audits it.
    fn apply(&self, added: Arc<RevocationRecord>) {
        self.in_force.rcu(|current| {
            let kept = current
                .records()
                .filter(|r| r.target != added.target)
                .cloned();
            InForce::from_records(kept.chain([Arc::clone(&added)]))
        });
        self.audit_added(&[added]);
        self.changed.notify_waiters();
    }

    fn audit_added(&self, added: &[Arc<RevocationRecord>]) {
        let now = now_ms();
        for record in added {
            tracing::info!(target = %record.target, by = %record.by, "token revocation in force");
            self.audit.append_detached(event(record, now));
        }
    }
}

impl crate::state::follow::Follower for Revocations {
    const WHAT: &'static str = "token revocations";

    fn refresh(&self) -> futures_util::future::BoxFuture<'_, Result<(), StateError>> {
        Box::pin(Revocations::refresh(self))
    }

    fn has_expired(&self) -> bool {
        Revocations::has_expired(self)
    }
}

/// A revocation of `target` by `by` for `reason`, made now and kept until every token it
/// stops has expired on every replica, whatever their settings: [`MAX_TTL_LIMIT`] plus
/// [`MAX_LEEWAY_SECONDS`] (and a second) from now. Every token it names was issued by now, and
/// no replica accepts a token living longer than that limit, or later past its `exp` than
/// that leeway. [`until_token_expires`] shortens it when the token is at hand.
pub fn revocation(target: Revoked, reason: String, by: Actor) -> RevocationRecord {
    let created_ms = now_ms();
    let kept = MAX_TTL_LIMIT.as_millis() as i64 + margin_ms();
    RevocationRecord {
        target,
        reason,
        by,
        created_ms,
        expires_ms: created_ms.saturating_add(kept),
    }
}

/// Keeps `record`, a revocation of one token whose `exp` is `exp` (unix seconds), only until
/// that token has expired on every replica: `exp` plus [`MAX_LEEWAY_SECONDS`] and a second
/// (never longer than [`revocation`] keeps it).
pub fn until_token_expires(record: &mut RevocationRecord, exp: u64) {
    let expired_ms = i64::try_from(exp.saturating_mul(1000))
        .unwrap_or(i64::MAX)
        .saturating_add(margin_ms());
    record.expires_ms = record.expires_ms.min(expired_ms);
}

/// The largest leeway any replica allows, and a second, in milliseconds.
fn margin_ms() -> i64 {
    (MAX_LEEWAY_SECONDS as i64 + 1) * 1000
}

/// The refusal of a token `record` revokes (`whom`: how it names the token).
pub fn refusal(record: &RevocationRecord, whom: &'static str) -> AuthError {
    AuthError::Revoked {
        whom,
        at: UnixTime(seconds(record.created_ms)),
        reason: Arc::from(record.reason.as_str()),
    }
}

/// Unix seconds of `ms` since the epoch (0 before it).
fn seconds(ms: i64) -> u64 {
    u64::try_from(ms.div_euclid(1000)).unwrap_or(0)
}

/// The system record of `record` taking effect on this replica at `now_ms`.
fn event(record: &RevocationRecord, now_ms: i64) -> AuditEvent {
    let mut event = AuditEvent::now(EventKind::System);
    event.detail = Some(serde_json::json!({
        "event": "token_revocation",
        "target": { "kind": record.target.kind(), "name": record.target.name() },
        "reason": record.reason,
        "by": record.by.to_json(),
        "since_ms": record.created_ms,
        "kept_until_ms": record.expires_ms,
        "effect_ms": (now_ms - record.created_ms).max(0),
    }));
    if let Revoked::Agent(name) = &record.target {
        event.principal.kind = "agent".into();
        event.principal.id = Arc::from(name.as_str());
    }
    event
}
