//! The token revocation repository: which of Warden's own agent tokens are revoked, by their
//! id (`jti`) or as every token of an agent issued until a time, why, by whom, and until when
//! the revocation is kept (once every token it stops would have expired anyway). The rules
//! (what a revocation refuses) live in `identity/revocation/`; this is only what is stored.
//! Every change bumps the revocation revision, which other processes read to learn that their
//! copy is stale; on PostgreSQL it is also announced with `NOTIFY`.

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::error::StateError;
use super::in_force::{Kept, Kind};
use super::quarantine::Actor;

/// What a revocation stops.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Revoked {
    /// The token whose `jti` is this.
    Token(String),
    /// Every token of the agent whose principal id is this, issued up to the second the
    /// revocation was made.
    Agent(String),
}

impl Revoked {
    /// The kind of its `Token` targets, in a process's copy ([`crate::state::in_force`]).
    pub const TOKEN: Kind = Kind::First;
    /// The kind of its `Agent` targets, in a process's copy.
    pub const AGENT: Kind = Kind::Second;

    /// `token` or `agent`, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Revoked::Token(_) => "token",
            Revoked::Agent(_) => "agent",
        }
    }

    /// The token's id or the agent's name.
    pub fn name(&self) -> &str {
        match self {
            Revoked::Token(name) | Revoked::Agent(name) => name,
        }
    }

    /// The target from its stored kind and name, read from `store`; an unknown kind is a
    /// corrupt store.
    pub fn from_stored(
        kind: &str,
        name: String,
        store: impl std::fmt::Display,
    ) -> Result<Revoked, StateError> {
        match kind {
            "token" => Ok(Revoked::Token(name)),
            "agent" => Ok(Revoked::Agent(name)),
            _ => Err(StateError::Corrupt {
                store: store.to_string(),
                what: format!("the kind {kind:?} of a token revocation"),
            }),
        }
    }
}

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Revoked::Token(id) => write!(f, "token {id:?}"),
            Revoked::Agent(name) => write!(f, "every token of agent {name:?}"),
        }
    }
}

/// One revocation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRecord {
    pub target: Revoked,
    /// Why, as the agent is told.
    pub reason: String,
    /// Who revoked.
    pub by: Actor,
    /// When, in milliseconds since the Unix epoch; an agent's tokens issued up to this
    /// second are revoked.
    pub created_ms: i64,
    /// When it is dropped: every token it stops has expired by then.
    pub expires_ms: i64,
}

impl RevocationRecord {
    /// Whether it stops whatever `other` stops: the same target, made at the same time or
    /// later (the store keeps the latest of a target's revocations).
    pub fn covers(&self, other: &RevocationRecord) -> bool {
        self.target == other.target && self.created_ms >= other.created_ms
    }
}

impl Kept for RevocationRecord {
    type Target = Revoked;

    fn target(&self) -> &Revoked {
        &self.target
    }

    fn key(target: &Revoked) -> (Kind, &str) {
        match target {
            Revoked::Token(name) => (Revoked::TOKEN, name),
            Revoked::Agent(name) => (Revoked::AGENT, name),
        }
    }

    fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// Whether it is kept at `now_ms`.
    fn in_force(&self, now_ms: i64) -> bool {
        self.expires_ms > now_ms
    }
}

/// Token revocations in the state store, shared by every replica.
pub trait RevocationRepository: Send + Sync {
    /// Stores `record`. A revocation of the same target is replaced by it (its reason, who,
    /// when), kept until the later of the two expiries.
    fn revoke(&self, record: RevocationRecord) -> BoxFuture<'_, Result<(), StateError>>;

    /// Every revocation kept now, oldest first (expired ones are removed on the way).
    fn active(&self) -> BoxFuture<'_, Result<Vec<RevocationRecord>, StateError>>;

    /// The revocation revision: it changes whenever a revocation changes, in any process.
    fn revision(&self) -> BoxFuture<'_, Result<i64, StateError>>;

    /// Announcements of changes made by any replica, as they happen (PostgreSQL's `NOTIFY`);
    /// `None` when the backend has none and the revision must be polled (SQLite).
    fn announcements(&self) -> Option<broadcast::Receiver<()>>;
}
