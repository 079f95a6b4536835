//! Records nobody waits for (outcomes, rejections, system records): handed over under a lock
//! without waking the writer, which takes them with its next commit (or after a few
//! milliseconds). An outcome record does not need a commit of its own, and a wake-up of the
//! writer thread per record costs more than committing it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::event::AuditEvent;

/// The records waiting for the next commit.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<State>,
    /// The writer sleeps with no timer due before an outbox record would be (none, or a long
    /// one): the next push must wake it.
    sleeping: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    events: Vec<AuditEvent>,
    /// The writer took its last records: nothing pushed from now on will be committed.
    closed: bool,
}

/// What became of a pushed record.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// It waits for the next commit.
    Queued,
    /// It waits, and the writer sleeps: wake it.
    WakeWriter,
    /// The log is closed: the record is lost.
    Closed,
}

impl Outbox {
    /// Leaves `event` for the next commit.
    pub fn push(&self, event: AuditEvent) -> Pushed {
        {
            let mut state = self.lock();
            if state.closed {
                return Pushed::Closed;
            }
            state.events.push(event);
        }
        if self.sleeping.swap(false, Ordering::SeqCst) {
            Pushed::WakeWriter
        } else {
            Pushed::Queued
        }
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.lock().events.is_empty()
    }

    /// Takes every waiting record into `spare` (empty; its room is left for the records
    /// pushed next, so a push rarely grows the list under the lock).
    pub fn take_into(&self, spare: &mut Vec<AuditEvent>) {
        debug_assert!(spare.is_empty());
        std::mem::swap(&mut self.lock().events, spare);
    }

    /// Puts `events`, taken by [`take_into`](Self::take_into) and not committed, back in
    /// front of the records pushed since; returns how many are lost (the outbox is closed).
    pub fn put_back(&self, mut events: Vec<AuditEvent>) -> u64 {
        if events.is_empty() {
            return 0;
        }
        let mut state = self.lock();
        if state.closed {
            return events.len() as u64;
        }
        events.append(&mut state.events);
        state.events = events;
        0
    }

    /// Takes every waiting record and refuses any pushed later.
    pub fn close(&self) -> Vec<AuditEvent> {
        let mut state = self.lock();
        state.closed = true;
        std::mem::take(&mut state.events)
    }

    /// The writer is about to sleep with no timer due before an outbox record would be
    /// (`true`), or has woken (`false`).
    /// Either the writer's check after setting it sees a record pushed meanwhile, or the
    /// pusher sees the flag and wakes it.
    pub fn set_sleeping(&self, sleeping: bool) {
        self.sleeping.store(sleeping, Ordering::SeqCst);
    }

    /// Whether the writer sleeps (untimed, or a timed sleep longer than an outbox record
    /// may wait), clearing it: the caller wakes it.
    pub fn take_sleeping(&self) -> bool {
        self.sleeping.swap(false, Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::EventKind;

    #[test]
    fn a_sleeping_writer_is_woken_once_and_a_closed_outbox_takes_nothing() {
        let outbox = Outbox::default();
        assert_eq!(
            outbox.push(AuditEvent::now(EventKind::Outcome)),
            Pushed::Queued
        );
        outbox.set_sleeping(true);
        assert_eq!(
            outbox.push(AuditEvent::now(EventKind::Outcome)),
            Pushed::WakeWriter
        );
        assert_eq!(
            outbox.push(AuditEvent::now(EventKind::Outcome)),
            Pushed::Queued
        );
        let mut spare = Vec::with_capacity(8);
        outbox.take_into(&mut spare);
        assert_eq!(spare.len(), 3);
        assert_eq!(
            outbox.lock().events.capacity(),
            8,
            "the spare's room is kept"
        );
        assert_eq!(
            outbox.push(AuditEvent::now(EventKind::Outcome)),
            Pushed::Queued
        );
        assert_eq!(outbox.close().len(), 1);
        assert_eq!(
            outbox.push(AuditEvent::now(EventKind::Outcome)),
            Pushed::Closed
        );
        assert!(outbox.is_empty());
    }

    #[test]
    fn records_put_back_go_in_front_of_those_pushed_since_and_are_lost_once_closed() {
        let outbox = Outbox::default();
        let named = |name: &str| {
            let mut event = AuditEvent::now(EventKind::Outcome);
            event.request_id = name.into();
            event
        };
        outbox.push(named("a"));
        outbox.push(named("b"));
        let mut taken = Vec::new();
        outbox.take_into(&mut taken);
        outbox.push(named("c"));
        assert_eq!(outbox.put_back(taken), 0);
        let order: Vec<String> = outbox
            .close()
            .iter()
            .map(|e| e.request_id.to_string())
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(
            outbox.put_back(vec![named("d"), named("e")]),
            2,
            "closed: lost"
        );
        assert!(outbox.is_empty());
    }
}
