//! Revocation of Warden's own agent tokens: one token by its id (`jti`), or every token of an
//! agent issued until a time. A revoked token is refused after its signature is verified,
//! whether it was verified now or earlier (the verified-token cache keeps each token's
//! [`TokenStamp`], judged on every request), with `401 token_revoked`.
//!
//! The state store keeps revocations (`state::revocations`) until every token they stop has
//! expired anyway (`identity.warden_issuer.max_ttl` after they were made); each process keeps
//! them in memory ([`Revocations::check`] is one atomic load and at most two hash lookups per
//! request) and refreshes that copy when the store announces a change (PostgreSQL `NOTIFY`)
//! or its revision moves (`state/follow.rs`, read every
//! `identity.warden_issuer.refresh_interval`), as quarantines do. When the store cannot be
//! read, the revocations in force stay in force. A revocation made on this process applies
//! here at once, before the store answers. Every revocation that takes effect on a replica is
//! audited there, with who made it.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::config::IdentityConfig;
use super::error::{AuthError, UnixTime};
use crate::audit::AuditLog;
use crate::audit::event::{AuditEvent, EventKind};
use crate::state::StateError;
use crate::state::pins::now_ms;
use crate::state::quarantine::Actor;
use crate::state::revocations::{RevocationRecord, RevocationRepository, Revoked};

/// What a verified Warden token says about itself that revocations judge: its id and when it
/// was issued (its agent is the principal's id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStamp {
    /// `jti`; absent from a token made by something other than `warden token issue`.
    pub id: Option<Arc<str>>,
    /// `iat`, unix seconds.
    pub issued_at: u64,
}

/// The revocations kept, as this process knows them.
#[derive(Debug, Default)]
struct InForce {
    tokens: HashMap<String, Arc<RevocationRecord>>,
    agents: HashMap<String, Arc<RevocationRecord>>,
}

impl InForce {
    fn from_records(records: impl IntoIterator<Item = Arc<RevocationRecord>>) -> InForce {
        let mut set = InForce::default();
        for record in records {
            let map = match &record.target {
                Revoked::Token(_) => &mut set.tokens,
                Revoked::Agent(_) => &mut set.agents,
            };
            map.insert(record.target.name().to_owned(), record);
        }
        set
    }

    fn get(&self, target: &Revoked) -> Option<&Arc<RevocationRecord>> {
        match target {
            Revoked::Token(id) => self.tokens.get(id),
            Revoked::Agent(name) => self.agents.get(name),
        }
    }

    fn records(&self) -> impl Iterator<Item = &Arc<RevocationRecord>> {
        self.tokens.values().chain(self.agents.values())
    }

    fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.agents.is_empty()
    }
}

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

/// The token revocations of this process: the copy in force and the store behind it.
pub struct Revocations {
    in_force: ArcSwap<InForce>,
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
        let revision = store.revision().await?;
        self.refresh().await?;
        let announcements = store.announcements();
        crate::state::follow::spawn(
            Arc::downgrade(self),
            move || {
                let store = Arc::clone(&store);
                Box::pin(async move { store.revision().await })
            },
            announcements,
            revision,
            refresh_interval,
        );
        Ok(())
    }

    /// Refuses the token of `agent` that `stamp` describes when it is revoked: by its id, or
    /// as one of its agent's issued up to the second of a revocation of the agent. One atomic
    /// load and at most two hash lookups: the request path calls it every time.
    pub fn check(&self, agent: &str, stamp: &TokenStamp) -> Result<(), AuthError> {
        let in_force = self.in_force.load();
        if in_force.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let refused = |record: &RevocationRecord, whom| AuthError::Revoked {
            whom,
            at: UnixTime(seconds(record.created_ms)),
            reason: Arc::from(record.reason.as_str()),
        };
        if let Some(id) = &stamp.id
            && let Some(record) = in_force.tokens.get(&**id)
            && record.in_force(now)
        {
            return Err(refused(record, "by its id"));
        }
        if let Some(record) = in_force.agents.get(agent)
            && record.in_force(now)
            && stamp.issued_at <= seconds(record.created_ms)
        {
            return Err(refused(
                record,
                "with every token of its agent issued until then",
            ));
        }
        Ok(())
    }

    /// Every revocation kept, as this process knows it, oldest first.
    pub fn list(&self) -> Vec<Arc<RevocationRecord>> {
        let now = now_ms();
        let mut all: Vec<_> = self
            .in_force
            .load()
            .records()
            .filter(|r| r.in_force(now))
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.created_ms, &a.target).cmp(&(b.created_ms, &b.target)));
        all
    }

    /// Revokes `record.target`: in force on this process at once, then in the store for every
    /// other. When the store fails, it is in force here until the next read of the store, and
    /// the error says so.
    pub async fn revoke(&self, record: RevocationRecord) -> Result<(), RevocationError> {
        self.apply(Arc::new(record.clone()));
        let store = self.store.get().ok_or(RevocationError::NoStore)?;
        store.revoke(record).await?;
        Ok(())
    }

    /// Whether a revocation in this process's copy has expired (the copy needs a refresh).
    fn has_expired(&self) -> bool {
        let now = now_ms();
        self.in_force.load().records().any(|r| !r.in_force(now))
    }

    /// Reads the revocations kept in the store and applies the difference: new ones (and new
    /// versions of known ones) are audited; gone ones expired.
    async fn refresh(&self) -> Result<(), StateError> {
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        let stored: Vec<Arc<RevocationRecord>> =
            store.active().await?.into_iter().map(Arc::new).collect();
        let current = self.in_force.load_full();
        let added: Vec<_> = stored
            .iter()
            .filter(|r| current.get(&r.target) != Some(*r))
            .cloned()
            .collect();
        let gone: Vec<_> = current
            .records()
            .filter(|r| !stored.iter().any(|s| s.target == r.target))
            .map(|r| r.target.clone())
            .collect();
        if !added.is_empty() || !gone.is_empty() {
            self.in_force.store(Arc::new(InForce::from_records(stored)));
            self.audit_added(&added);
        }
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
/// stops has expired under `identity`'s maximum lifetime and leeway.
pub fn revocation(
    identity: &IdentityConfig,
    target: Revoked,
    reason: String,
    by: Actor,
) -> RevocationRecord {
    let created_ms = now_ms();
    let kept = identity
        .warden_issuer
        .max_ttl
        .saturating_add(Duration::from_secs(
            identity.leeway_seconds.saturating_add(1),
        ));
    RevocationRecord {
        target,
        reason,
        by,
        created_ms,
        expires_ms: created_ms.saturating_add(i64::try_from(kept.as_millis()).unwrap_or(i64::MAX)),
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
