//! `process` durability's flushes: `fdatasync` of the segment on a thread of its own, so that
//! no commit (and no request waiting for one) waits for the disk. The writer posts what it has
//! written once the flush interval since the first unflushed write is up; the flusher reports
//! back how far the log is durable, or that a flush failed.
//!
//! After a failed `fdatasync` Linux may have marked the pages it could not write clean, and
//! reports the error once: a later flush that succeeds says nothing about them. So once a
//! flush fails, later successes are not reported until the writer has taken the failure (it
//! then writes those bytes again and flushes them itself).

use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use super::faults::Faults;
use super::record::Hash;
use super::stats::CommitStats;

/// Flush `file` (segment `segment`), whose first `len` bytes hold the log up to `head`.
pub struct FlushRequest {
    pub file: Arc<File>,
    pub segment: u64,
    pub len: u64,
    pub head: (u64, Hash),
}

/// How far a flush made the log durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// The segment flushed.
    pub segment: u64,
    /// Its first `len` bytes are durable.
    pub len: u64,
    /// The last record in them.
    pub head: (u64, Hash),
}

/// What the flusher did since the writer last asked.
#[derive(Debug, Default)]
pub struct Report {
    /// The furthest successful flush (before any failure).
    pub flushed: Option<Flushed>,
    /// The first failed flush.
    pub failed: Option<io::Error>,
}

#[derive(Default)]
struct State {
    queued: Option<FlushRequest>,
    busy: bool,
    report: Report,
    stop: bool,
}

type Slot = (Mutex<State>, Condvar);

/// The flusher thread.
pub struct Flusher {
    shared: Arc<Slot>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the flusher thread; `stats` observes each flush's duration.
    pub fn spawn(faults: Arc<Faults>, stats: CommitStats) -> io::Result<Flusher> {
        let shared: Arc<Slot> = Arc::default();
        let thread = std::thread::Builder::new()
            .name("warden-audit-flush".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, &faults, &stats)
            })?;
        Ok(Flusher {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a flush; replaces one asked for earlier and not started (this one covers it).
    pub fn post(&self, request: FlushRequest) {
        lock(&self.shared.0).queued = Some(request);
        self.shared.1.notify_all();
    }

    /// What happened since the last call, without waiting.
    pub fn take(&self) -> Report {
        std::mem::take(&mut lock(&self.shared.0).report)
    }

    /// Waits until no flush is asked for or running, then reports as [`Flusher::take`].
    pub fn wait(&self) -> Report {
        let mut state = lock(&self.shared.0);
        while state.busy || state.queued.is_some() {
            state = self
                .shared
                .1
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        std::mem::take(&mut state.report)
    }

    /// Stops the thread once a flush in progress ends; a flush not started is dropped.
    pub fn stop(&mut self) {
        lock(&self.shared.0).stop = true;
        self.shared.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(slot: &Mutex<State>) -> MutexGuard<'_, State> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run(shared: &Slot, faults: &Faults, stats: &CommitStats) {
    loop {
        let request = {
            let mut state = lock(&shared.0);
            loop {
                if state.stop {
                    return;
                }
                if let Some(request) = state.queued.take() {
                    state.busy = true;
                    break request;
                }
                state = shared
                    .1
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        let started = Instant::now();
        let result = faults.before_sync().and_then(|()| request.file.sync_data());
        let mut state = lock(&shared.0);
        state.busy = false;
        let report = &mut state.report;
        match result {
            Ok(()) => {
                stats.flush_seconds.observe(started.elapsed().as_secs_f64());
                if report.failed.is_none() {
                    report.flushed = Some(Flushed {
                        segment: request.segment,
                        len: request.len,
                        head: request.head,
                    });
                }
            }
            Err(error) => {
                tracing::error!(%error, "audit flush failed");
                report.failed.get_or_insert(error);
            }
        }
        drop(state);
        shared.1.notify_all();
    }
}
