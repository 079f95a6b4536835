//! `process` durability: the appending thread commits its own record (flat combining).
//!
//! Handed to the writer thread, a decision record costs a channel message, a wake-up of the
//! writer and one back (about 9 µs of CPU per request here, and the latency of two thread
//! switches). In `process` durability nothing in a normal commit needs the writer thread: it
//! is one `write` of encoded records. So the appending thread takes the writer's lock, takes
//! the outbox's records first (the outbox and the chain stay one sequence), encodes and hashes
//! them and its own, writes them with one `write` into space the writer thread reserved,
//! publishes the head and returns its seq; the lock is held for that encode and write only,
//! never across an await.
//!
//! The appending thread never waits for the lock: it may run a proxy worker (a
//! single-threaded runtime), and the lock's holder may be at disk work (the writer thread's
//! round: retention, a rotation, a wait for the flusher; or another appender's write held up
//! by the kernel's dirty-page throttling). If the lock is taken, the record is handed over,
//! and the writer thread commits it with the others it gathers (flat combining).
//!
//! Anything unusual is the writer thread's, as before: the log failing (its retries and
//! recovery record), a rotation due (by size or age: creating a segment is disk I/O), a
//! checkpoint due (by count, time, or after a run's start record), retention due, too much
//! unflushed, the batch past the reserved space (reserving zero-fills it: disk work), the lock
//! taken or poisoned (a commit panicked: the writer thread recovers), the log closed. The
//! record is then handed over ([`Inline::Declined`]) and the outbox's records taken are put
//! back in front.
//!
//! The writer thread still flushes within `audit.flush_interval` and catches `head.json` up:
//! an inline commit that makes a flush due (or fails) says so in [`Shared::unseen`], and wakes
//! the writer if it sleeps.

use std::sync::TryLockError;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Locked, Pending, Shared, Writer, reply};
use crate::audit::answer::Answer;
use crate::audit::error::AuditError;
use crate::audit::event::AuditEvent;

/// What became of a record offered for an inline commit.
#[expect(
    clippy::large_enum_variant,
    reason = "the event moves on to the writer's channel when declined; boxing it would cost \
              an allocation there"
)]
pub enum Inline {
    /// Committed (or its commit failed) on this thread; `wake`: send the writer a wake-up.
    Committed { answer: Answer, wake: bool },
    /// Not committed here: hand it to the writer thread.
    Declined(AuditEvent),
}

/// Commits `event` on the calling thread when the log is in its normal state (see the
/// module's doc), or gives it back.
pub fn append(locked: &Locked, shared: &Shared, event: AuditEvent) -> Inline {
    if !shared.inline
        || !shared.alive.load(Ordering::Acquire)
        || shared.failing.load(Ordering::Acquire)
        || shared.busy.load(Ordering::SeqCst)
    {
        return Inline::Declined(event);
    }
    // Taken: the writer thread commits it with what it gathers, rather than this thread
    // wait. Poisoned: a panic mid-commit; the writer thread recovers (or is gone).
    let mut guard = match locked.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::WouldBlock | TryLockError::Poisoned(_)) => {
            return Inline::Declined(event);
        }
    };
    match guard.as_mut() {
        Some(writer) => writer.commit_inline(event),
        None => Inline::Declined(event),
    }
}

impl Writer {
    /// Whether nothing but a write is due: see the module's doc.
    fn inline_ready(&self) -> bool {
        let Some(unflushed) = &self.unflushed else {
            return false;
        };
        self.outage.is_none()
            && !unflushed.failed
            && !unflushed.backlog()
            && self.segment.len < self.segment_bytes
            && !self.checkpoint_due()
            && self
                .retention
                .as_ref()
                .is_none_or(|r| r.next_look() > Instant::now())
    }

    /// Commits the outbox's records and `event` with one write, on the calling thread, when
    /// the log is in its normal state; else puts the outbox's records back and declines.
    fn commit_inline(&mut self, event: AuditEvent) -> Inline {
        if !self.inline_ready() {
            return Inline::Declined(event);
        }
        let started = Instant::now();
        let mut spare = std::mem::take(&mut self.spare);
        self.shared.outbox.take_into(&mut spare);
        let mut batch = std::mem::take(&mut self.inline_batch);
        debug_assert!(batch.is_empty());
        batch.extend(spare.drain(..).map(Pending::detached));
        self.spare = spare;
        self.inline_from = Some((self.head.0, batch.len() as u64));
        batch.push(Pending {
            answered_here: true,
            ..Pending::detached(event)
        });
        let records = batch.len();
        self.encode(&mut batch, false);
        // A checkpoint the batch makes due, or a segment it would end (by size or age), or
        // space to reserve: the writer thread's work.
        if batch.len() != records
            || !self.breaks.is_empty()
            || !self.segment.fits(self.buf.len() as u64)
        {
            self.inline_from = None;
            self.buf.clear();
            self.ends.clear();
            self.hashes.clear();
            self.breaks.clear();
            let mut events: Vec<AuditEvent> = batch
                .drain(..)
                .filter(|p| !p.checkpoint)
                .map(|p| p.event)
                .collect();
            self.inline_batch = batch;
            let own = events
                .pop()
                .expect("the batch ends with the record offered");
            let lost = self.shared.outbox.put_back(events);
            if lost > 0 {
                self.shared.stats.lost.inc_by(lost);
                tracing::error!(
                    records = lost,
                    "audit records nobody waited for were taken from a closed log's outbox and are lost"
                );
            }
            return Inline::Declined(own);
        }
        let flush_was_due = self.unflushed.as_ref().is_some_and(|u| u.due.is_some());
        let failure = self.write_batch(&batch);
        self.inline_from = None;
        self.track_outage(&batch, failure.as_ref());
        let stats = &self.shared.stats;
        if failure.is_none() {
            stats.commits.inc();
            stats.inline_commits.inc();
            stats.records.inc_by(batch.len() as u64);
            stats
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        let own = batch.pop().expect("the batch ends with the record offered");
        let answer = match (own.unencodable, &failure) {
            (Some(e), _) => Err(AuditError::Unencodable(e)),
            (None, Some(failure)) if own.seq > self.head.0 => Err(failure.clone_error()),
            (None, _) => Ok(own.seq),
        };
        let flush_due = self.unflushed.as_ref().is_some_and(|u| u.due.is_some());
        let wake = failure.is_some() || (flush_due && !flush_was_due);
        reply(&mut batch, self.head.0, failure, &self.shared.stats);
        self.inline_batch = batch;
        if wake {
            // Set under the lock: the writer clears it under the lock before it plans.
            self.shared.unseen.store(true, Ordering::SeqCst);
        }
        Inline::Committed {
            answer,
            wake: wake && self.shared.outbox.take_sleeping(),
        }
    }
}
