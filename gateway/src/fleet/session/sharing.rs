//! What sessions that share their labels and counts remember between ticks (`sync/`): the
//! labels waiting to be stored, when labels and counts were last read, and what the other
//! replicas counted in each session. The request path reads only [`Sharing::add_others`].

use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use siphasher::sip::SipHasher13;

use crate::action::SessionFacts;
use crate::state::fleet::SessionLabel;
use crate::state::pins::now_ms;

/// Labels waiting to be stored at most, of sessions and, apart, of agents' trails; past this,
/// new ones are known to this replica only.
pub const QUEUE_MAX: usize = 10_000;

/// The labels waiting to be stored, each once (earned again, only its expiry moves): agents'
/// trails apart from their sessions, so that an agent naming many sessions fills the
/// sessions' part alone, and every agent's trail (a few labels each) still goes out.
#[derive(Debug, Default)]
pub(super) struct Queue {
    /// By trail key and label: expiry.
    trails: HashMap<(u64, Arc<str>), i64>,
    /// By session key and label: its agent's trail key and expiry.
    sessions: HashMap<(u64, Arc<str>), (u64, i64)>,
}

impl Queue {
    /// Labels waiting.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.trails.len() + self.sessions.len()
    }

    /// Adds `label` of session `key` (of the agent whose trail is `owner`; `None`: the trail
    /// `key` itself), expiring at `expires_ms`, unless its part of the queue is full.
    fn add(&mut self, key: u64, owner: Option<u64>, label: &Arc<str>, expires_ms: i64) {
        let entry = (key, Arc::clone(label));
        match owner {
            None => {
                if self.trails.len() >= QUEUE_MAX && !self.trails.contains_key(&entry) {
                    return;
                }
                let expiry = self.trails.entry(entry).or_insert(expires_ms);
                *expiry = (*expiry).max(expires_ms);
            }
            Some(owner) => {
                if self.sessions.len() >= QUEUE_MAX && !self.sessions.contains_key(&entry) {
                    return;
                }
                let (_, expiry) = self.sessions.entry(entry).or_insert((owner, expires_ms));
                *expiry = (*expiry).max(expires_ms);
            }
        }
    }

    /// Everything waiting, as stored, in one order on every replica (so that two storing the
    /// same labels do not deadlock); the queue is left empty.
    pub(super) fn take(&mut self) -> Vec<SessionLabel> {
        let trails = self.trails.drain().map(|((key, label), expires_ms)| {
            let owner = format!("{key:016x}");
            SessionLabel {
                session: owner.clone(),
                label: label.to_string(),
                owner,
                expires_ms,
                updated_ms: 0,
            }
        });
        let sessions = self
            .sessions
            .drain()
            .map(|((key, label), (owner, expires_ms))| SessionLabel {
                session: format!("{key:016x}"),
                label: label.to_string(),
                owner: format!("{owner:016x}"),
                expires_ms,
                updated_ms: 0,
            });
        let mut labels: Vec<_> = trails.chain(sessions).collect();
        labels.sort_unstable_by(|a, b| (&a.session, &a.label).cmp(&(&b.session, &b.label)));
        labels
    }

    /// Puts back `labels` the store refused (within the bounds), for the next tick.
    pub(super) fn put_back(&mut self, labels: Vec<SessionLabel>) {
        for l in labels {
            let (Ok(key), owner) = (
                u64::from_str_radix(&l.session, 16),
                u64::from_str_radix(&l.owner, 16).ok(),
            ) else {
                continue;
            };
            let owner = owner.filter(|owner| *owner != key);
            self.add(key, owner, &Arc::from(l.label), l.expires_ms);
        }
    }
}

/// What sharing labels and counts needs between ticks.
pub(crate) struct Sharing {
    pub(super) queue: Mutex<Queue>,
    /// When the labels were last read (this replica's clock), milliseconds since the epoch.
    pub(super) read_ms: AtomicI64,
    /// This process among the replicas (random).
    pub(super) replica: String,
    /// When the other replicas' counts were last read (as `read_ms`).
    pub(super) counts_read_ms: AtomicI64,
    /// What the other replicas counted, by session key.
    pub(super) others: DashMap<u64, Others>,
    /// The sessions of `others` by their agent (its trail key), oldest first (sessions stored
    /// by a Warden before state migration 19 name no agent and are in none).
    others_by_agent: Mutex<HashMap<u64, VecDeque<u64>>>,
}

impl Default for Sharing {
    fn default() -> Self {
        Sharing {
            queue: Mutex::default(),
            read_ms: AtomicI64::new(0),
            replica: uuid::Uuid::now_v7().simple().to_string(),
            counts_read_ms: AtomicI64::new(0),
            others: DashMap::new(),
            others_by_agent: Mutex::default(),
        }
    }
}

/// Counts of one session: actions, and of them per action and per resource (by
/// [`stable_hash`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) actions: u64,
    pub(super) per_verb: HashMap<u64, u64>,
    pub(super) per_resource: HashMap<u64, u64>,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.actions = self.actions.saturating_add(other.actions);
        for (mine, theirs) in [
            (&mut self.per_verb, &other.per_verb),
            (&mut self.per_resource, &other.per_resource),
        ] {
            for (key, n) in theirs {
                let count = mine.entry(*key).or_insert(0);
                *count = count.saturating_add(*n);
            }
        }
    }
}

/// What the other replicas counted in one session: each one's last published counts (until
/// they expire), and their sum.
#[derive(Debug, Default)]
pub(super) struct Others {
    pub(super) by_replica: Vec<(Box<str>, Counts, i64)>,
    pub(super) sum: Counts,
}

impl Others {
    /// Takes `replica`'s counts, expiring at `expires_ms`, in place of its earlier ones.
    pub(super) fn set(&mut self, replica: &str, counts: Counts, expires_ms: i64) {
        match self.by_replica.iter_mut().find(|(r, _, _)| **r == *replica) {
            Some(entry) => {
                entry.1 = counts;
                entry.2 = expires_ms;
            }
            None => self
                .by_replica
                .push((Box::from(replica), counts, expires_ms)),
        }
        self.sum();
    }

    /// Forgets the counts expired at `now_ms`; whether any remain.
    pub(super) fn expire(&mut self, now_ms: i64) -> bool {
        let before = self.by_replica.len();
        self.by_replica.retain(|(_, _, expires)| *expires > now_ms);
        if self.by_replica.len() != before {
            self.sum();
        }
        !self.by_replica.is_empty()
    }

    fn sum(&mut self) {
        let mut sum = Counts::default();
        for (_, counts, _) in &self.by_replica {
            sum.add(counts);
        }
        self.sum = sum;
    }
}

impl Sharing {
    /// Queues `label` of session `key` of the agent whose trail is `owner` (`None`: the
    /// trail `key` itself), to live `window` (a session idle that long ends).
    pub(super) fn publish(&self, key: u64, owner: Option<u64>, label: &Arc<str>, window: Duration) {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let expires_ms = now_ms().saturating_add(window_ms);
        self.queue
            .lock()
            .expect("not poisoned")
            .add(key, owner, label, expires_ms);
    }

    /// Forgets the other replicas' counts expired at `now_ms`.
    pub(super) fn expire_others(&self, now_ms: i64) {
        let before = self.others.len();
        self.others.retain(|_, others| others.expire(now_ms));
        if self.others.len() != before {
            let mut by_agent = self.others_by_agent.lock().expect("not poisoned");
            by_agent.retain(|_, keys| {
                keys.retain(|key| self.others.contains_key(key));
                !keys.is_empty()
            });
        }
    }

    /// Makes room among the other replicas' counts for session `key`, new here, of the agent
    /// whose trail is `agent`: past `max_per_agent` of that agent's its oldest is forgotten;
    /// whether there is room within `max_sessions` then.
    pub(super) fn room_for_other(
        &self,
        agent: Option<u64>,
        key: u64,
        max_per_agent: usize,
        max_sessions: usize,
    ) -> bool {
        let mut by_agent = self.others_by_agent.lock().expect("not poisoned");
        if let Some(keys) = agent.and_then(|agent| by_agent.get_mut(&agent)) {
            while keys.len() >= max_per_agent.max(1) {
                let Some(oldest) = keys.pop_front() else {
                    break;
                };
                self.others.remove(&oldest);
            }
        }
        if self.others.len() >= max_sessions {
            return false;
        }
        if let Some(agent) = agent {
            by_agent.entry(agent).or_default().push_back(key);
        }
        true
    }

    /// Adds what the other replicas last published of `facts`' session to its counts.
    pub(super) fn add_others(&self, facts: &mut SessionFacts) {
        let Some(others) = self.others.get(&facts.key) else {
            return;
        };
        let sum = &others.sum;
        let of = |map: &HashMap<u64, u64>, key| map.get(&key).copied().unwrap_or(0);
        facts.actions = facts.actions.saturating_add(sum.actions);
        facts.action_count = facts
            .action_count
            .saturating_add(of(&sum.per_verb, facts.verb_key));
        facts.resource_count = facts
            .resource_count
            .saturating_add(of(&sum.per_resource, facts.resource_key));
    }
}

/// A hash of an action's verb or resource that every replica computes alike (SipHash-1-3 with
/// fixed keys), so that counts published by one are found by another. Two names with one hash
/// share a count: counts can only be too high, never too low.
pub(super) fn stable_hash(text: &str) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(0x7761_7264_656e_2d73, 0x6573_7369_6f6e_7321);
    hasher.write(text.as_bytes());
    hasher.finish()
}
