//! The quarantine repository: which agents and groups are stopped, why, by whom, until when.
//! The rules (who may quarantine, what a quarantine cuts) live in `fleet/quarantine/`; this is
//! only what is stored. Every change bumps the quarantine revision, which other processes read
//! to learn that their copy is stale; on PostgreSQL it is also announced with `NOTIFY`.

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::error::StateError;
use super::in_force::{Kept, Kind};

/// What a quarantine stops: one agent, or every agent of a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// The agent whose principal id is this.
    Agent(String),
    /// Every agent whose principal is in this group.
    Group(String),
}

impl Target {
    /// The kind of its `Agent` targets, in a process's copy ([`crate::state::in_force`]).
    pub const AGENT: Kind = Kind::First;
    /// The kind of its `Group` targets, in a process's copy.
    pub const GROUP: Kind = Kind::Second;

    /// `agent` or `group`, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Agent(_) => "agent",
            Target::Group(_) => "group",
        }
    }

    /// The agent's or the group's name.
    pub fn name(&self) -> &str {
        match self {
            Target::Agent(name) | Target::Group(name) => name,
        }
    }

    /// The target from its stored kind and name, read from `store`'s `row` (what the row is,
    /// for the error); an unknown kind is a corrupt store.
    pub fn from_stored(
        kind: &str,
        name: String,
        store: impl std::fmt::Display,
        row: &str,
    ) -> Result<Target, StateError> {
        match kind {
            "agent" => Ok(Target::Agent(name)),
            "group" => Ok(Target::Group(name)),
            _ => Err(StateError::Corrupt {
                store: store.to_string(),
                what: format!("the kind {kind:?} of {row}"),
            }),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.kind(), self.name())
    }
}

/// Who put a quarantine in force or lifted it: a name as the issuer that vouched for it
/// gives it, as an admin decision record names its principal (`{"id", "issuer"}`). Two
/// operators with one name at two identity providers are two people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The name: an operator's (its token's subject claim at the admin API, `--as` or `$USER`
    /// at the command line), or `warden` for Warden itself.
    pub id: String,
    /// Who vouched for it: the operator's identity provider (its issuer URL) at the admin API,
    /// [`Actor::CLI`] at the command line, [`Actor::WARDEN`] for Warden itself.
    pub issuer: String,
}

impl Actor {
    /// The issuer of operators of the command line (as for approvals decided there): whoever
    /// may run `warden` with the configuration.
    pub const CLI: &str = "warden-cli";
    /// The issuer (and the name) of what Warden does itself: a trigger, an expiry.
    pub const WARDEN: &str = "warden";

    /// `id` of `issuer`.
    pub fn new(id: impl Into<String>, issuer: impl Into<String>) -> Actor {
        Actor {
            id: id.into(),
            issuer: issuer.into(),
        }
    }

    /// Warden itself (a trigger).
    pub fn warden() -> Actor {
        Actor::new(Actor::WARDEN, Actor::WARDEN)
    }

    /// The command line's operator `id`.
    pub fn cli(id: impl Into<String>) -> Actor {
        Actor::new(id, Actor::CLI)
    }

    /// `{"id", "issuer"}`, as records and answers show it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "id": self.id, "issuer": self.issuer })
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.id, self.issuer)
    }
}

/// One quarantine as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    pub target: Target,
    /// Why, as the agent is told.
    pub reason: String,
    /// What put it there: `manual`, `canary`, `denies` or `policy`.
    pub trigger: String,
    /// Who put it there.
    pub by: Actor,
    /// When, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When it ends by itself; `None`: until released.
    pub until_ms: Option<i64>,
}

impl Kept for QuarantineRecord {
    type Target = Target;

    fn target(&self) -> &Target {
        &self.target
    }

    fn key(target: &Target) -> (Kind, &str) {
        match target {
            Target::Agent(name) => (Target::AGENT, name),
            Target::Group(name) => (Target::GROUP, name),
        }
    }

    fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// Whether it is in force at `now_ms`: until `until_ms`, if any.
    fn in_force(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| until > now_ms)
    }
}

/// Who released a quarantine and when, as the store keeps it for [`RELEASES_KEPT_MS`]: every
/// replica that held the quarantine audits its release with who released it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    /// The quarantine released: its target and when it was put in force (which tells it from
    /// an earlier or later quarantine of the same target).
    pub target: Target,
    pub created_ms: i64,
    /// Who released it.
    pub by: Actor,
    /// When, in milliseconds since the Unix epoch.
    pub released_ms: i64,
}

/// How long the store keeps who released a quarantine (7 days): long enough for every replica
/// to refresh, and for one down for a while to come back; older ones are pruned on each release.
pub const RELEASES_KEPT_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Quarantines in the state store, shared by every replica.
pub trait QuarantineRepository: Send + Sync {
    /// Stores `record`, replacing a quarantine of the same target (a new reason, a new expiry).
    fn quarantine(&self, record: QuarantineRecord) -> BoxFuture<'_, Result<(), StateError>>;

    /// Ends the quarantine of `target`, keeping `by` as who released it (in the same
    /// transaction); the one ended, `None` when there was none.
    fn release<'a>(
        &'a self,
        target: &'a Target,
        by: &'a Actor,
    ) -> BoxFuture<'a, Result<Option<QuarantineRecord>, StateError>>;

    /// Who released those of `quarantines` (each a target and when it was put in force) that
    /// were released, in one query; one the store does not know of (it expired, an older
    /// Warden released it, its record was pruned) has none.
    fn releases<'a>(
        &'a self,
        quarantines: &'a [(Target, i64)],
    ) -> BoxFuture<'a, Result<Vec<ReleaseRecord>, StateError>>;

    /// Every quarantine in force now, oldest first (expired ones are removed on the way).
    fn active(&self) -> BoxFuture<'_, Result<Vec<QuarantineRecord>, StateError>>;

    /// The quarantine revision: it changes whenever a quarantine changes, in any process.
    fn revision(&self) -> BoxFuture<'_, Result<i64, StateError>>;

    /// Announcements of changes made by any replica, as they happen (PostgreSQL's `NOTIFY`);
    /// `None` when the backend has none and the revision must be polled (SQLite).
    fn announcements(&self) -> Option<broadcast::Receiver<()>>;
}
