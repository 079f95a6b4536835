//! Session labels and counts shared through the state store. When an action gives its session a label
//! it did not have (`private`, `external`, ...), the label is queued; every
//! `sessions.sync_interval` a replica stores what it queued and reads what every replica
//! stored since its last read, adding those labels to its own copy of each session. A session
//! spread over replicas so carries, on each, the labels it earned on any, at most two intervals
//! after it earned them (one for the replica that saw it to store it, one for this one to
//! read it). Counts (`actions`, `action_count`, `resource_count`) are shared on the same tick
//! with the same bound ([`counts`]).
//!
//! When the store fails, labels stay queued (each once, up to [`QUEUE_MAX`] of sessions' and
//! as many of agents' trails) and are stored when it
//! answers; meanwhile each replica knows the labels earned through it. Counts go on locally
//! with the others' last read (expiring as they would); a session counted in during the outage
//! is published when the store answers, with its running counts, so nothing is lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod counts;

#[cfg(doc)]
use super::sharing::QUEUE_MAX;
use super::sharing::Sharing;
use super::{AgentSessions, Session, SessionsConfig};
use crate::fleet::tick;
use crate::state::StateError;
use crate::state::fleet::{FleetRepository, SessionLabel};
use crate::state::pins::now_ms;

/// Labels are read again from a little before the last read: other replicas' clocks stamp
/// what they store.
const CLOCK_SLACK_MS: i64 = 5_000;

impl AgentSessions {
    /// Shares session labels and counts through `store`: a [`AgentSessions::sync`] every `every`, with
    /// the `sessions:` section `config` gives; it stops when the sessions are dropped.
    pub fn attach(
        self: &Arc<Self>,
        store: Arc<dyn FleetRepository>,
        every: Duration,
        config: impl Fn() -> Option<SessionsConfig> + Send + Sync + 'static,
    ) {
        self.share();
        let config = Arc::new(config);
        tick::spawn(Arc::downgrade(self), every, "sessions", move |sessions| {
            let (store, config) = (Arc::clone(&store), Arc::clone(&config));
            Box::pin(async move {
                match config() {
                    Some(config) => sessions.sync(&*store, &config).await,
                    None => Ok(()),
                }
            })
        });
    }

    /// Queues the labels sessions earn from now on, and adds the counts other replicas
    /// publish, for [`AgentSessions::sync`].
    pub fn share(&self) {
        let _ = self.sharing.set(Sharing::default());
    }

    /// One tick: stores the labels queued since the last, then adds those every replica
    /// stored since the last read to the sessions here; then the same for counts.
    pub async fn sync(
        &self,
        store: &dyn FleetRepository,
        config: &SessionsConfig,
    ) -> Result<(), StateError> {
        let Some(sharing) = self.sharing.get() else {
            return Ok(());
        };
        let queued = sharing.queue.lock().expect("not poisoned").take();
        if !queued.is_empty()
            && let Err(error) = store.add_labels(queued.clone()).await
        {
            sharing.queue.lock().expect("not poisoned").put_back(queued);
            return Err(error);
        }
        let started = now_ms();
        let since = sharing.read_ms.load(Ordering::Relaxed) - CLOCK_SLACK_MS;
        let labels = store.labels(since).await?;
        sharing.read_ms.store(started, Ordering::Relaxed);
        self.merge(config, labels);
        self.share_counts(sharing, store, config).await
    }

    /// Adds stored labels to the sessions they belong to (a session not known here starts
    /// with them, counted as its agent's, within `sessions.max_per_agent` as one it started
    /// here would be: an agent that names many sessions through another replica forgets its
    /// own here, never another agent's).
    fn merge(&self, config: &SessionsConfig, labels: Vec<SessionLabel>) {
        let now = self.now();
        for stored in labels {
            let Ok(key) = u64::from_str_radix(&stored.session, 16) else {
                continue;
            };
            // A trail names itself; a row of a Warden before state migration 19, no one.
            let owner = u64::from_str_radix(&stored.owner, 16)
                .ok()
                .filter(|owner| *owner != key);
            if !self.sessions.contains_key(&key) {
                match owner {
                    Some(agent) => self.make_room(config, agent, key, now),
                    None if self.sessions.len() >= config.max_sessions => {
                        self.evict(config, now);
                    }
                    None => {}
                }
            }
            let mut session = self.sessions.entry(key).or_insert_with(|| Session {
                owner,
                last: now,
                ..Session::default()
            });
            if !session.labels.iter().any(|l| **l == *stored.label) {
                session.labels.push(Arc::from(stored.label));
            }
            // Earned (again) on another replica just now: an agent's trail lives on from it.
            session.last = session.last.max(now);
        }
    }
}

#[cfg(test)]
mod tests;
