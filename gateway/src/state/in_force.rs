//! A process's copy of what operators set on agents and kept in the store (quarantines of
//! agents and groups, revocations of tokens and of agents): each kind of target's records by
//! name, so that the request path looks a name up without building a target. Only the set is
//! shared: what each owner keeps of what it made itself, and how it applies what the store
//! shows, differ on purpose and stay with it (`fleet/quarantine/`, `identity/revocation/`).

use std::collections::HashMap;
use std::sync::Arc;

/// Which of the two kinds of target a record names (quarantines: agents, then groups; token
/// revocations: tokens, then agents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    First,
    Second,
}

/// A record kept in the store and copied in every process.
pub trait Kept {
    /// What it stops: one of two kinds of target, each named.
    type Target: Eq + Ord;
    /// What it stops.
    fn target(&self) -> &Self::Target;
    /// `target`'s kind and name.
    fn key(target: &Self::Target) -> (Kind, &str);
    /// When it was made, in milliseconds since the Unix epoch.
    fn created_ms(&self) -> i64;
    /// Whether it is in force at `now_ms`.
    fn in_force(&self, now_ms: i64) -> bool;
}

/// The records in force, as this process knows them: one a target.
#[derive(Debug)]
pub struct InForce<R> {
    first: HashMap<String, Arc<R>>,
    second: HashMap<String, Arc<R>>,
}

impl<R> Default for InForce<R> {
    fn default() -> InForce<R> {
        InForce {
            first: HashMap::new(),
            second: HashMap::new(),
        }
    }
}

impl<R: Kept> InForce<R> {
    /// The set of `records`; of two with one target, the later one.
    pub fn from_records(records: impl IntoIterator<Item = Arc<R>>) -> InForce<R> {
        let mut set = InForce::default();
        for record in records {
            set.insert(record);
        }
        set
    }

    /// Puts `record` in, replacing the one of its target.
    pub fn insert(&mut self, record: Arc<R>) {
        let (kind, name) = R::key(record.target());
        let name = name.to_owned();
        self.map_mut(kind).insert(name, record);
    }

    /// Takes `target`'s record out.
    pub fn remove(&mut self, target: &R::Target) {
        let (kind, name) = R::key(target);
        self.map_mut(kind).remove(name);
    }

    /// `target`'s record.
    pub fn get(&self, target: &R::Target) -> Option<&Arc<R>> {
        let (kind, name) = R::key(target);
        self.named(kind, name)
    }

    /// The record of the target of kind `kind` named `name`: one hash lookup.
    pub fn named(&self, kind: Kind, name: &str) -> Option<&Arc<R>> {
        match kind {
            Kind::First => self.first.get(name),
            Kind::Second => self.second.get(name),
        }
    }

    /// Every record, in no order.
    pub fn records(&self) -> impl Iterator<Item = &Arc<R>> {
        self.first.values().chain(self.second.values())
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty() && self.second.is_empty()
    }

    /// Whether a record has expired by `now_ms` (the copy needs a refresh).
    pub fn has_expired(&self, now_ms: i64) -> bool {
        self.records().any(|r| !r.in_force(now_ms))
    }

    /// The records in force at `now_ms`, oldest first (then by target).
    pub fn listed(&self, now_ms: i64) -> Vec<Arc<R>> {
        let mut all: Vec<_> = self
            .records()
            .filter(|r| r.in_force(now_ms))
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.created_ms(), a.target()).cmp(&(b.created_ms(), b.target())));
        all
    }

    fn map_mut(&mut self, kind: Kind) -> &mut HashMap<String, Arc<R>> {
        match kind {
            Kind::First => &mut self.first,
            Kind::Second => &mut self.second,
        }
    }
}
