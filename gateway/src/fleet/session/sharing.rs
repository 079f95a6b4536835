//! What sessions that share their labels and counts remember between ticks (`sync/`): the
//! labels waiting to be stored, when labels and counts were last read, and what the other
//! replicas counted in each session. The request path reads only [`Sharing::add_others`].

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Mutex;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use dashmap::DashMap;
use siphasher::sip::SipHasher13;

use crate::action::SessionFacts;
use crate::state::fleet::SessionLabel;
use crate::state::pins::now_ms;

/// Labels waiting to be stored at most; past this, new ones are known to this replica only.
pub const QUEUE_MAX: usize = 10_000;

/// What sharing labels and counts needs between ticks.
pub(crate) struct Sharing {
    pub(super) queue: Mutex<Vec<SessionLabel>>,
    /// When the labels were last read (this replica's clock), milliseconds since the epoch.
    pub(super) read_ms: AtomicI64,
    /// This process among the replicas (random).
    pub(super) replica: String,
    /// When the other replicas' counts were last read (as `read_ms`).
    pub(super) counts_read_ms: AtomicI64,
    /// What the other replicas counted, by session key.
    pub(super) others: DashMap<u64, Others>,
}

impl Default for Sharing {
    fn default() -> Self {
        Sharing {
            queue: Mutex::default(),
            read_ms: AtomicI64::new(0),
            replica: uuid::Uuid::now_v7().simple().to_string(),
            counts_read_ms: AtomicI64::new(0),
            others: DashMap::new(),
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
    /// Queues `label` of session `key`, to live `window` (a session idle that long ends).
    pub(super) fn publish(&self, key: u64, label: &str, window: Duration) {
        let mut queue = self.queue.lock().expect("not poisoned");
        if queue.len() >= QUEUE_MAX {
            return;
        }
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        queue.push(SessionLabel {
            session: format!("{key:016x}"),
            label: label.to_owned(),
            expires_ms: now_ms().saturating_add(window_ms),
            updated_ms: 0,
        });
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
