//! The writer thread: takes every pending record, writes them with one write, and answers
//! every waiter (group commit). In `disk` durability a commit is made durable (`fdatasync`)
//! before its records are answered; in `process` durability they are answered once written
//! (the kernel has them), and the flusher thread flushes them within the flush interval.
//! There, while nothing but a write is due, the appending threads commit their own records
//! under the writer's lock ([`inline`]); the thread holds that lock for its rounds of work,
//! never while it waits, nor while it answers a round's waiters ([`run`]).

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::anchor;
use super::answer::{Delivery, Waiter};
use super::checkpoint::Schedule;
use super::config::Durability;
use super::error::AuditError;
use super::event::{AuditEvent, EventKind, Text, Timestamp};
use super::flusher::{FlushRequest, Flusher, Report};
use super::last_keys::{KeysWritten, LastKeys};
use super::outbox::Outbox;
use super::receipt::BatchSigner;
use super::record::{self, Hash};
use super::retention::Retention;
use super::run_end::Boundary;
use super::segment::segment_name;
use super::segment_file::SegmentFile;
use super::stats::CommitStats;

pub mod inline;

/// Most records gathered into one commit.
const MAX_BATCH: usize = 1024;
/// Under load, `head.json` is rewritten at most this often.
const ANCHOR_INTERVAL: Duration = Duration::from_millis(100);
/// After this long without records, `head.json` catches up with the head.
const ANCHOR_IDLE: Duration = Duration::from_millis(10);
/// Longest a record without a waiter stays in the outbox before the writer commits it on
/// its own (it rides with the next commit when one comes sooner).
const OUTBOX_DELAY: Duration = Duration::from_millis(5);
/// `process` durability: at most this much written and not yet known to be on disk. Past it
/// (the disk flushes slower than records arrive), the writer waits for the flush in
/// progress rather than let a lost machine's loss grow.
const MAX_UNFLUSHED_BYTES: usize = 4 << 20;
/// While commits fail, an idle writer tries again this often (with its recovery record), so
/// the log reports writable again without waiting for traffic that readiness turned away.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// A request to the writer thread.
#[expect(
    clippy::large_enum_variant,
    reason = "Close is sent once; boxing the event would cost an allocation per record"
)]
pub enum Msg {
    /// Append `event`; answer `done` once committed (or failed).
    Append {
        event: AuditEvent,
        done: Option<Waiter>,
    },
    /// Commit everything sent before, flush, anchor the head, stop; answer on the sender.
    Close(oneshot::Sender<Result<(), AuditError>>),
    /// The outbox got a record (or an inline commit made a flush due) while the writer slept:
    /// look again.
    Wake,
}

/// State the writer publishes to the handles.
#[derive(Debug)]
pub struct Shared {
    /// Last committed (seq, hash).
    pub head: Mutex<(u64, Hash)>,
    /// Records appended without a waiter, for the next commit.
    pub outbox: Outbox,
    /// False once the writer thread has stopped.
    pub alive: AtomicBool,
    /// True from a failed commit or flush until a commit succeeds again.
    pub failing: AtomicBool,
    /// Commit counters for `/metrics`.
    pub stats: CommitStats,
    /// Whether the log is full ([`FULL_REFUSE`], [`FULL_HARD`]) or not (0), as retention
    /// last found it.
    pub full: AtomicU8,
    /// `audit.retention.max_bytes`, for the error a full log answers with.
    pub max_bytes: u64,
    /// `process` durability: appending threads commit their own records ([`inline`]).
    pub inline: bool,
    /// The writer thread is at work under the lock (a commit, retention, a wait for the
    /// flusher), which may take disk time: appending threads hand their records over
    /// instead of waiting for the lock.
    pub busy: AtomicBool,
    /// An inline commit changed what the writer times (a flush became due, a commit
    /// failed) since the writer last looked: it must look again before it sleeps.
    pub unseen: AtomicBool,
}

/// The log is at its bound: decision records are refused.
pub const FULL_REFUSE: u8 = 1;
/// Past the bound's headroom too: records nobody waits for are not written either.
pub const FULL_HARD: u8 = 2;

impl Shared {
    /// Last committed (seq, hash).
    pub fn head(&self) -> (u64, Hash) {
        *self
            .head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_head(&self, head: (u64, Hash)) {
        *self
            .head
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = head;
    }
}

/// Writer settings taken from the configuration.
pub struct Settings {
    /// When a commit's records are answered.
    pub durability: Durability,
    /// `process` durability: a flush starts at most this long after a write.
    pub flush_interval: Duration,
    /// Rotate before a record would take a segment past this size.
    pub segment_bytes: u64,
    /// Rotate before the first record written once a segment is this old.
    pub segment_max_age: Duration,
    /// When to append signed checkpoints, and with which key (none: the log is unsigned).
    pub checkpoints: Option<Schedule>,
    /// Which closed segments to delete (none: all are kept).
    pub retention: Option<Retention>,
    /// `audit.retention.max_bytes` (0: none).
    pub max_bytes: u64,
    /// The replica id every record is stamped with (`audit.replica_id`).
    pub replica: Text,
    /// The keys the log named when it was opened (`read_back.rs`).
    pub keys: LastKeys,
}

/// A record waiting for its group commit.
struct Pending {
    event: AuditEvent,
    done: Option<Waiter>,
    /// Seq assigned when encoded; 0 if it could not be.
    seq: u64,
    unencodable: Option<serde_json::Error>,
    /// The record of an outage that leads a retry: made anew for each retry, so neither
    /// failed nor lost when one fails.
    recovery: bool,
    /// A checkpoint the writer added: made anew when its commit fails, so neither failed nor
    /// lost either.
    checkpoint: bool,
    /// A `retention` record: made anew at the next look when its commit fails (nothing is
    /// deleted without it), so neither failed nor lost either.
    retention: bool,
    /// Committed inline: its appender takes the answer on its own thread, without a waiter.
    answered_here: bool,
}

impl Pending {
    /// A record nobody waits for.
    fn detached(event: AuditEvent) -> Pending {
        Pending {
            event,
            done: None,
            seq: 0,
            unencodable: None,
            recovery: false,
            checkpoint: false,
            retention: false,
            answered_here: false,
        }
    }

    /// The `retention` record naming the segments about to be deleted.
    fn retention(event: AuditEvent) -> Pending {
        Pending {
            retention: true,
            ..Pending::detached(event)
        }
    }

    /// A checkpoint record.
    fn checkpoint(event: AuditEvent) -> Pending {
        Pending {
            checkpoint: true,
            ..Pending::detached(event)
        }
    }

    /// A record the writer made itself (a recovery record, a checkpoint, a retention record):
    /// not counted as failed or lost when its commit fails.
    fn own(&self) -> bool {
        self.recovery || self.checkpoint || self.retention
    }

    /// The record of `outage`, to lead a retry.
    fn recovery(outage: &Outage) -> Pending {
        Pending {
            recovery: true,
            ..Pending::detached(outage.recovery_event())
        }
    }

    /// Whether it is not in the log after a commit that wrote up to seq `written`.
    fn not_written(&self, written: u64) -> bool {
        self.seq == 0 || self.seq > written
    }
}

/// Commits failing since `since`: what the recovery record reports once one succeeds.
struct Outage {
    since: Timestamp,
    /// Records (recovery records aside) not committed since.
    failed_records: u64,
    /// Of those, the ones nobody waited for (outcomes, rejections, system records): lost.
    /// The others were answered with the error.
    lost_records: u64,
    /// The last failure.
    error: String,
}

impl Outage {
    fn begin() -> Outage {
        Outage {
            since: Timestamp::now(),
            failed_records: 0,
            lost_records: 0,
            error: String::new(),
        }
    }

    /// The system record that leads the first successful commit after the outage, so the
    /// log itself shows the gap: when it began and how many records it cost.
    fn recovery_event(&self) -> AuditEvent {
        let mut event = AuditEvent::now(EventKind::System);
        event.detail = Some(serde_json::json!({
            "event": "audit_recovered",
            "failing_since": self.since,
            "failed_records": self.failed_records,
            "lost_records": self.lost_records,
            "last_error": self.error,
        }));
        event
    }
}

/// Why a commit (or part of it) failed.
struct CommitFailure {
    segment: String,
    source: Arc<io::Error>,
}

impl CommitFailure {
    fn new(segment: &str, source: io::Error) -> CommitFailure {
        CommitFailure {
            segment: segment.to_owned(),
            source: Arc::new(source),
        }
    }

    fn clone_error(&self) -> AuditError {
        AuditError::Write {
            segment: self.segment.clone(),
            source: self.source.clone(),
        }
    }

    fn into_error(self) -> AuditError {
        AuditError::Write {
            segment: self.segment,
            source: self.source,
        }
    }
}

/// `process` durability: what is written and not yet known to be on disk.
struct Unflushed {
    flusher: Flusher,
    interval: Duration,
    /// The current segment's bytes from offset `flushed` to its end, kept to be written
    /// again if a flush fails.
    bytes: Vec<u8>,
    /// The current segment is durable up to here.
    flushed: u64,
    /// When the oldest write not yet covered by a posted flush is due to be flushed.
    due: Option<Instant>,
    /// A flush failed: `bytes` must be written again before a flush can be trusted.
    failed: bool,
}

impl Unflushed {
    /// Whether the bytes not yet flushed reached [`MAX_UNFLUSHED_BYTES`]: the writer waits for
    /// the flusher before writing more, and nothing is committed inline.
    fn backlog(&self) -> bool {
        self.bytes.len() >= MAX_UNFLUSHED_BYTES
    }

    /// Notes how far the flusher made segment `segment` durable; returns the durable head if
    /// it moved, and the error of a failed flush.
    fn settle(&mut self, segment: u64, report: Report) -> (Option<(u64, Hash)>, Option<io::Error>) {
        let mut durable = None;
        if let Some(done) = report.flushed
            && done.segment == segment
            && done.len > self.flushed
        {
            let covered = usize::try_from(done.len - self.flushed).unwrap_or(usize::MAX);
            self.bytes.drain(..covered.min(self.bytes.len()));
            self.flushed = done.len;
            durable = Some(done.head);
        }
        if report.failed.is_some() {
            self.failed = true;
            self.due = None;
        }
        (durable, report.failed)
    }

    /// Everything written to the segment, now `len` bytes long, is durable.
    fn all_flushed(&mut self, len: u64) {
        self.bytes.clear();
        self.flushed = len;
        self.due = None;
        self.failed = false;
    }
}

/// Owns the log files; runs on its own thread.
pub struct Writer {
    dir: PathBuf,
    /// Stamped on every record.
    replica: Text,
    segment: SegmentFile,
    segment_bytes: u64,
    segment_max_age: Duration,
    /// When the current segment was started.
    segment_born: std::time::SystemTime,
    /// Signed checkpoints, if the log is signed.
    checkpoints: Option<Schedule>,
    /// Retention, if segments are ever deleted.
    retention: Option<Retention>,
    /// Last record written.
    head: (u64, Hash),
    /// Last record known to be on disk: the head in `disk` durability.
    durable: (u64, Hash),
    shared: Arc<Shared>,
    /// Reused encode buffer and per-record ends and hashes of the current batch, and the
    /// records that start a new segment.
    buf: Vec<u8>,
    ends: Vec<usize>,
    hashes: Vec<Hash>,
    breaks: Vec<usize>,
    /// Writes `head.json` off this thread while the log runs.
    anchorer: anchor::Anchorer,
    /// The keys the records name, for `head.json`.
    keys: KeysWritten,
    /// Seq recorded in (or posted for) `head.json`, and when.
    anchored: Option<u64>,
    anchored_at: Instant,
    /// `process` durability only.
    unflushed: Option<Unflushed>,
    /// Since the last failed commit or flush, until a commit succeeds.
    outage: Option<Outage>,
    /// Signs the receipts queued by the requests it answered, after each commit.
    receipts: Option<BatchSigner>,
    /// The outbox's records an inline commit takes (its room is kept between commits).
    spare: Vec<AuditEvent>,
    /// An inline commit's batch (its room is kept between commits).
    inline_batch: Vec<Pending>,
    /// While an inline commit encodes and writes: the head before it and how many of the
    /// outbox's records it took, for the outage a panic there begins ([`lock`]).
    inline_from: Option<(u64, u64)>,
    /// Held for the writer's life: one writer per directory.
    _lock: File,
}

impl Writer {
    /// A writer appending to `segment`, whose chain ends at `head` (durable); `anchorer`
    /// keeps `head.json` while it runs. Starts the flusher thread in `process` durability.
    pub fn new(
        dir: PathBuf,
        segment: SegmentFile,
        settings: Settings,
        head: (u64, Hash),
        anchorer: anchor::Anchorer,
        lock: File,
    ) -> io::Result<Writer> {
        let stats = CommitStats::new();
        let unflushed = match settings.durability {
            Durability::Disk => None,
            Durability::Process => Some(Unflushed {
                flusher: Flusher::spawn(segment.faults(), stats.clone())?,
                interval: settings.flush_interval,
                bytes: Vec::new(),
                flushed: segment.len,
                due: None,
                failed: false,
            }),
        };
        let segment_born = segment
            .file()
            .metadata()
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .unwrap_or_else(|_| std::time::SystemTime::now());
        Ok(Writer {
            dir,
            replica: settings.replica,
            segment,
            segment_bytes: settings.segment_bytes,
            segment_max_age: settings.segment_max_age,
            segment_born,
            checkpoints: settings.checkpoints,
            retention: settings.retention,
            head,
            durable: head,
            shared: Arc::new(Shared {
                head: Mutex::new(head),
                outbox: Outbox::default(),
                alive: AtomicBool::new(true),
                failing: AtomicBool::new(false),
                stats,
                full: AtomicU8::new(0),
                max_bytes: settings.max_bytes,
                inline: settings.durability == Durability::Process,
                busy: AtomicBool::new(false),
                unseen: AtomicBool::new(false),
            }),
            buf: Vec::with_capacity(64 * 1024),
            ends: Vec::with_capacity(MAX_BATCH),
            hashes: Vec::with_capacity(MAX_BATCH),
            breaks: Vec::new(),
            anchorer,
            keys: KeysWritten::new(settings.keys),
            anchored: None,
            anchored_at: Instant::now(),
            unflushed,
            outage: None,
            receipts: None,
            spare: Vec::new(),
            inline_batch: Vec::with_capacity(MAX_BATCH),
            inline_from: None,
            _lock: lock,
        })
        .map(|mut writer| {
            writer.reserve_ahead();
            writer
        })
    }

    /// Reserves segment space ahead of the writes, so that inline commits find it reserved
    /// (`writer/inline.rs`); a failure shows again in the next commit that needs the space.
    /// Whether planning the next round would wait for the disk (space reserved ahead, or a
    /// flush backlog to wait out): then a round's waiters are answered before it is planned.
    fn disk_work_due(&self) -> bool {
        self.segment.reserve_due() || self.unflushed.as_ref().is_some_and(Unflushed::backlog)
    }

    fn reserve_ahead(&mut self) {
        if let Err(error) = self.segment.reserve_ahead() {
            tracing::warn!(segment = %self.segment.name, %error, "cannot reserve space in the audit segment ahead of the writes; the next commit tries again");
        }
    }

    /// The lock was found poisoned: a commit panicked part-way (a bug), on this thread or
    /// an appending one, leaving its batch half-encoded. Its encoding is dropped and the
    /// panic is an outage like a failed write: the log reports unwritable, and the next
    /// commit, synced, leads with the record of it (with the records the commit took from
    /// the outbox as lost, if it did not write them).
    fn after_panic(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.hashes.clear();
        self.breaks.clear();
        self.spare.clear();
        self.inline_batch.clear();
        self.segment.distrust_tail();
        let outage = self.outage.get_or_insert_with(Outage::begin);
        if let Some((head, taken)) = self.inline_from.take()
            && self.head.0 == head
        {
            outage.failed_records += taken + 1;
            outage.lost_records += taken;
            self.shared.stats.lost.inc_by(taken);
        }
        outage.error = "an audit commit panicked part-way (a bug); nothing it had not \
                        written was kept"
            .to_owned();
        self.shared.failing.store(true, Ordering::Release);
        tracing::error!(
            "an audit commit panicked part-way; the log continues from its last written record, after the record of the outage"
        );
    }

    /// Signs the receipts `receipts` holds after each commit: the requests it answered queue
    /// theirs on their way upstream, and their responses find them signed, a batch of a
    /// commit's size, by a thread that is awake anyway.
    pub fn sign_receipts(&mut self, receipts: BatchSigner) {
        self.receipts = Some(receipts);
    }

    /// The state shared with the handles.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Commits one record now, on the caller's thread (recovery notes on open).
    pub fn append_now(&mut self, event: AuditEvent) -> Result<u64, AuditError> {
        let mut batch = vec![Pending::detached(event)];
        let failure = self.commit(&mut batch, false);
        let pending = batch.into_iter().find(|p| !p.checkpoint);
        match (pending, failure) {
            (
                Some(Pending {
                    unencodable: Some(e),
                    ..
                }),
                _,
            ) => Err(AuditError::Unencodable(e)),
            (_, Some(failure)) => Err(failure.into_error()),
            (Some(pending), None) => Ok(pending.seq),
            (None, None) => Err(AuditError::Closed),
        }
    }

    /// Commits `events` now in one commit, on the caller's thread (recovery notes on open).
    pub fn append_all_now(&mut self, events: Vec<AuditEvent>) -> Result<(), AuditError> {
        let mut batch: Vec<Pending> = events.into_iter().map(Pending::detached).collect();
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(failure) = self.commit(&mut batch, false) {
            return Err(failure.into_error());
        }
        match batch.into_iter().find_map(|p| p.unencodable) {
            Some(e) => Err(AuditError::Unencodable(e)),
            None => Ok(()),
        }
    }

    /// Records the durable head in `head.json` on this thread, and syncs the directory (open,
    /// close).
    pub fn write_anchor(&mut self) -> io::Result<()> {
        let keys = self.keys.as_of(self.durable.0);
        anchor::write(&self.dir, self.durable.0, &self.durable.1, Some(keys))?;
        anchor::sync_dir(&self.dir)?;
        self.anchored = Some(self.durable.0);
        self.anchored_at = Instant::now();
        Ok(())
    }

    /// One round of the thread's body, under the lock: commits what `first` and the channel
    /// and outbox hold (with the recovery record, a checkpoint or retention's record as due)
    /// into `batch`, and tends flushes and `head.json`. The caller answers the batch once it
    /// has let go of the lock ([`Round::Answer`]). On a close request, also answers and
    /// stops: returns the request and its answer, for the caller to send once the writer is
    /// dropped.
    fn round(
        &mut self,
        first: Option<Msg>,
        rx: &Receiver<Msg>,
        batch: &mut Vec<Pending>,
        detached: &mut Vec<AuditEvent>,
    ) -> Round {
        self.tend_retention();
        let mut close = first.and_then(|msg| take(msg, batch));
        if close.is_none() {
            close = drain(rx, batch);
        }
        // The outbox is taken after the channel, and its records go first: a thread sends
        // its decision after the outcome it left there, which must not commit after it (an
        // outbox taken first could miss it). Records left later are not in front of
        // anything they follow: the decision of a request is answered before its outcome
        // is left. On a close, the outbox is closed too: it takes no more.
        if close.is_some() {
            detached.append(&mut self.shared.outbox.close());
        } else {
            self.shared.outbox.take_into(detached);
        }
        batch.splice(0..0, detached.drain(..).map(Pending::detached));
        if batch.is_empty()
            && close.is_none()
            && self.outage.is_none()
            && let Some(beat) = self.heartbeat_due()
        {
            batch.push(Pending::checkpoint(beat));
        }
        if batch.is_empty() && close.is_none() && self.outage.is_none() && !self.checkpoint_due() {
            // A wake-up whose records an earlier commit took.
            return Round::Answer {
                written: self.head.0,
                failure: None,
            };
        }
        if let Some(outage) = &self.outage {
            batch.insert(0, Pending::recovery(outage));
        }
        let started = Instant::now();
        let failure = self.commit(batch, close.is_some());
        let took = started.elapsed();
        self.track_outage(batch, failure.as_ref());
        if failure.is_none() {
            let stats = &self.shared.stats;
            stats.commits.inc();
            stats.records.inc_by(batch.len() as u64);
            stats.commit_seconds.observe(took.as_secs_f64());
        }
        if let Some(done) = close {
            let failed = failure.as_ref().map(CommitFailure::clone_error);
            reply(batch, self.head.0, failure, &self.shared.stats);
            let stopped = self.stop();
            let result = match failed {
                Some(error) => Err(error),
                None => stopped,
            };
            return Round::Closed((done, result));
        }
        let written = self.head.0;
        // Flushes are tended when the round is planned (`plan`), after its waiters are
        // answered if that means waiting for the disk (`disk_work_due`).
        if self.anchored != Some(self.durable.0) && self.anchored_at.elapsed() >= ANCHOR_INTERVAL {
            self.post_anchor();
        }
        Round::Answer { written, failure }
    }

    /// Every handle is gone: commits what waits in the outbox, the last records, and stops.
    fn finish(&mut self, batch: &mut Vec<Pending>) {
        take_detached(self.shared.outbox.close(), batch);
        if !batch.is_empty() || self.checkpoint_pending() {
            let failure = self.commit(batch, true);
            reply(batch, self.head.0, failure, &self.shared.stats);
        }
        if let Err(error) = self.stop() {
            tracing::error!(%error, "audit log stopped without flushing or recording its head");
        }
    }

    /// Notes a failed commit (the outage begins or goes on) or a successful one (it ends, if
    /// the batch held the recovery record that told the log about it). The recovery record
    /// leads the retry's records but need not be the batch's first: a retry that must end
    /// the segment first commits the checkpoint that closes it, then rotates.
    fn track_outage(&mut self, batch: &[Pending], failure: Option<&CommitFailure>) {
        let recovery = batch.iter().find(|p| p.recovery);
        match (failure, &mut self.outage) {
            (None, None) => {}
            (None, Some(_)) if recovery.is_none() => {} // a flush failed during this commit
            (None, Some(outage)) => {
                tracing::info!(
                    failed_records = outage.failed_records,
                    lost_records = outage.lost_records,
                    "the audit log is writable again"
                );
                self.outage = None;
                self.shared.failing.store(false, Ordering::Release);
            }
            (Some(failure), outage) => {
                let written = self.head.0;
                // A retry leads with the recovery record. If it was written (the commit failed
                // part-way), the log already tells of the earlier outage: a new one begins.
                if !recovery.is_some_and(|p| p.not_written(written)) {
                    *outage = None;
                }
                let outage = outage.get_or_insert_with(Outage::begin);
                let failed = batch.iter().filter(|p| !p.own() && p.not_written(written));
                let lost = failed
                    .clone()
                    .filter(|p| p.done.is_none() && !p.answered_here)
                    .count();
                outage.failed_records += failed.count() as u64;
                outage.lost_records += lost as u64;
                outage.error = failure.source.to_string();
                self.shared.failing.store(true, Ordering::Release);
            }
        }
    }

    /// Flushes what is written (`process` durability), trims the segment, records the head.
    fn stop(&mut self) -> Result<(), AuditError> {
        let flushed = self.flush_all().map_err(CommitFailure::into_error);
        if let Some(unflushed) = &mut self.unflushed {
            unflushed.flusher.stop();
        }
        self.anchorer.stop();
        self.trim_or_warn();
        let anchored = self.write_anchor().map_err(|source| AuditError::Io {
            action: "record the audit head in",
            path: self.dir.join(anchor::ANCHOR_FILE),
            source,
        });
        flushed.and(anchored)
    }

    /// Has the anchor thread record the durable head in `head.json`.
    fn post_anchor(&mut self) {
        let keys = self.keys.as_of(self.durable.0).clone();
        self.anchorer.post(self.durable.0, self.durable.1, keys);
        self.anchored = Some(self.durable.0);
        self.anchored_at = Instant::now();
    }

    /// `process` durability: takes the flusher's report (waiting for it when too much is
    /// unflushed), and posts a flush that is due.
    fn tend_flushes(&mut self) {
        let Some(unflushed) = &mut self.unflushed else {
            return;
        };
        let backlog = unflushed.backlog();
        let report = if backlog {
            // Appending threads hand their records over meanwhile (they would wait too).
            let busy = self.shared.busy.swap(true, Ordering::SeqCst);
            let report = unflushed.flusher.wait();
            self.shared.busy.store(busy, Ordering::SeqCst);
            report
        } else {
            unflushed.flusher.take()
        };
        let (durable, failed) = unflushed.settle(self.segment.number, report);
        if let Some(head) = durable {
            self.durable = head;
        }
        let due = unflushed.due.is_some_and(|due| due <= Instant::now());
        if let Some(error) = failed {
            self.flush_failed(&error);
        } else if self.outage.is_none() && (due || unflushed.backlog()) {
            unflushed.flusher.post(FlushRequest {
                file: self.segment.file(),
                segment: self.segment.number,
                len: self.segment.len,
                head: self.head,
            });
            unflushed.due = None;
        }
    }

    /// A flush failed: the log is not writable until a commit (which then flushes on this
    /// thread, after writing the unflushed bytes again) succeeds.
    fn flush_failed(&mut self, error: &io::Error) {
        tracing::error!(segment = %self.segment.name, %error, "audit flush failed; what it covered is written and flushed again with the next commit");
        self.outage.get_or_insert_with(Outage::begin).error = error.to_string();
        self.shared.failing.store(true, Ordering::Release);
    }

    /// `process` durability, before this thread flushes: waits for the flusher (two flushes
    /// at once could hide one's error behind the other's success), takes its report, and
    /// writes again what a failed flush may have dropped.
    fn prepare_flush(&mut self) -> Result<(), CommitFailure> {
        let Some(unflushed) = &mut self.unflushed else {
            return Ok(());
        };
        let (durable, failed) = unflushed.settle(self.segment.number, unflushed.flusher.wait());
        if let Some(head) = durable {
            self.durable = head;
        }
        if let Some(error) = failed {
            self.flush_failed(&error);
        }
        let Some(unflushed) = &self.unflushed else {
            return Ok(());
        };
        if unflushed.failed {
            self.segment
                .rewrite(unflushed.flushed, &unflushed.bytes)
                .map_err(|source| CommitFailure::new(&self.segment.name, source))?;
        }
        Ok(())
    }

    /// `process` durability: makes everything written to the segment durable, on this thread
    /// (before a rotation, and on close).
    fn flush_all(&mut self) -> Result<(), CommitFailure> {
        self.prepare_flush()?;
        let Some(unflushed) = &mut self.unflushed else {
            return Ok(());
        };
        if unflushed.flushed == self.segment.len && !unflushed.failed {
            return Ok(());
        }
        let started = Instant::now();
        match self.segment.sync() {
            Ok(()) => {
                self.shared
                    .stats
                    .flush_seconds
                    .observe(started.elapsed().as_secs_f64());
                unflushed.all_flushed(self.segment.len);
                self.durable = self.head;
                Ok(())
            }
            Err(source) => {
                unflushed.failed = true;
                Err(CommitFailure::new(&self.segment.name, source))
            }
        }
    }

    /// Tends flushes and `head.json` as they fall due, and says when the thread must act
    /// next: now (records in the outbox have waited long enough, a failed log is due for a
    /// retry, a checkpoint or retention is due), or after a sleep. Called under the lock,
    /// which the sleep is not.
    fn plan(&mut self, timers: &mut Timers) -> Wake {
        // What inline commits changed until now is seen here; a later one sets it again.
        self.shared.unseen.store(false, Ordering::SeqCst);
        // Appending threads do not wait for the lock meanwhile: they hand their records over.
        self.reserve_ahead();
        loop {
            self.tend_flushes();
            let now = Instant::now();
            if timers.commit_at.is_none() {
                timers.commit_at = if !self.shared.outbox.is_empty() {
                    Some(now + OUTBOX_DELAY)
                } else if self.outage.is_some() {
                    Some(now + RETRY_INTERVAL)
                } else {
                    None
                };
            }
            if timers.commit_at.is_some_and(|at| at <= now) {
                return Wake::Now;
            }
            if self.anchored == Some(self.head.0) {
                timers.anchor_at = None;
            } else if timers.anchor_at.is_some_and(|at| at <= now) {
                timers.anchor_at = None;
                if self.anchored != Some(self.durable.0) {
                    self.post_anchor();
                }
                continue;
            } else {
                timers.anchor_at.get_or_insert(now + ANCHOR_IDLE);
            }
            let flush_at = self
                .unflushed
                .as_ref()
                .filter(|_| self.outage.is_none())
                .and_then(|u| u.due);
            let checkpoint_at = self
                .checkpoints
                .as_ref()
                .filter(|_| self.outage.is_none())
                .and_then(|c| c.deadline(self.head.0));
            let retention_at = self
                .retention
                .as_ref()
                .filter(|_| self.outage.is_none())
                .map(Retention::next_look);
            if checkpoint_at.is_some_and(|at| at <= now) || retention_at.is_some_and(|at| at <= now)
            {
                return Wake::Now;
            }
            let wake = [
                timers.commit_at,
                timers.anchor_at,
                flush_at,
                checkpoint_at,
                retention_at,
            ]
            .into_iter()
            .flatten()
            .min();
            return Wake::After(wake.map(|at| at.saturating_duration_since(now)));
        }
    }

    /// Whether a checkpoint is due (by count or time) for the records written so far.
    fn checkpoint_due(&self) -> bool {
        self.checkpoints
            .as_ref()
            .is_some_and(|c| c.due(self.head.0))
    }

    /// The idle heartbeat, when it is due: nothing was written since this writer's last
    /// checkpoint, an interval ago, so it signs again (see `checkpoint`).
    fn heartbeat_due(&self) -> Option<AuditEvent> {
        self.checkpoints
            .as_ref()
            .filter(|c| c.heartbeat_due(self.head.0))
            .map(|c| c.heartbeat(self.head))
    }

    /// Whether records written so far wait for a checkpoint.
    fn checkpoint_pending(&self) -> bool {
        self.checkpoints
            .as_ref()
            .is_some_and(|c| c.pending(self.head.0))
    }

    /// Encodes the batch (with the checkpoints that fall due in it, and one at its end when
    /// `closing`), writes it (rotating segments as needed), and in `disk` durability (or, in
    /// `process` durability, while the log is failing) makes it durable. On failure, the
    /// records not written are given up and the head stays at the last one written, so later
    /// records continue the chain from there.
    fn commit(&mut self, batch: &mut Vec<Pending>, closing: bool) -> Option<CommitFailure> {
        self.encode(batch, closing);
        self.write_batch(batch)
    }

    /// Writes the batch `encode` encoded (see [`commit`](Self::commit)), and notes the keys
    /// and the checkpoint it wrote.
    fn write_batch(&mut self, batch: &[Pending]) -> Option<CommitFailure> {
        let failure = self.write_encoded();
        self.buf.clear();
        self.ends.clear();
        self.hashes.clear();
        self.breaks.clear();
        let written = self.head.0;
        for pending in batch.iter().filter(|p| !p.not_written(written)) {
            self.keys.note(pending.seq, &pending.event);
        }
        if let Some(schedule) = &mut self.checkpoints
            && let Some(cp) = batch
                .iter()
                .rev()
                .find(|p| p.checkpoint && !p.not_written(written))
        {
            schedule.written(cp.seq);
        }
        failure
    }

    /// Encodes the batch's records into the buffer, continuing the chain from the head, and
    /// notes where a segment ends: before a record that would take it past
    /// `audit.segment_bytes`, or once it is `segment_max_age` old. A signed log closes each
    /// segment with a checkpoint (it may take the segment past the limit by its size), adds
    /// one right after a run's `start` record, and one when one is due, or `closing`. An
    /// idle heartbeat (a checkpoint when every record is covered already) starts the next
    /// segment where a record would.
    fn encode(&mut self, batch: &mut Vec<Pending>, closing: bool) {
        let (mut seq, mut prev) = self.head;
        let mut segment_len = self.segment.len;
        let mut aged = self.segment_born.elapsed().unwrap_or_default() >= self.segment_max_age;
        // Whether every record encoded so far is under a checkpoint.
        let mut covered = !self.checkpoint_pending();
        let mut i = 0;
        loop {
            if i == batch.len() {
                let due = self
                    .checkpoints
                    .as_ref()
                    .filter(|c| !covered && (closing || c.due(seq)));
                match due {
                    Some(schedule) => {
                        batch.push(Pending::checkpoint(schedule.checkpoint((seq, prev))));
                    }
                    None => break,
                }
            }
            let start = self.buf.len();
            let pending = &mut batch[i];
            pending.event.replica = Arc::clone(&self.replica);
            let hash = match record::encode(&mut self.buf, seq + 1, &prev, &pending.event) {
                Ok(hash) => hash,
                Err(e) => {
                    pending.unencodable = Some(e);
                    i += 1;
                    continue;
                }
            };
            let len = (self.buf.len() - start) as u64;
            let ends_segment = (aged || segment_len + len > self.segment_bytes) && segment_len > 0;
            if ends_segment && (!pending.checkpoint || covered) {
                if let Some(schedule) = self.checkpoints.as_ref().filter(|_| !covered) {
                    // The segment ends with a checkpoint: encode it first, then this record.
                    self.buf.truncate(start);
                    let checkpoint = schedule.checkpoint((seq, prev));
                    batch.insert(i, Pending::checkpoint(checkpoint));
                    continue;
                }
                self.breaks.push(self.ends.len());
                segment_len = 0;
                aged = false;
            }
            segment_len += len;
            seq += 1;
            prev = hash;
            covered = pending.checkpoint;
            pending.seq = seq;
            let starts_run =
                !pending.checkpoint && Boundary::of_event(&pending.event) == Some(Boundary::Start);
            self.ends.push(self.buf.len());
            self.hashes.push(hash);
            i += 1;
            // A run's start record is signed at once, in the same write: a start record
            // without a checkpoint after it is then never this writer's
            // (docs/audit.md#idle-heartbeats).
            if starts_run && let Some(schedule) = &self.checkpoints {
                batch.insert(i, Pending::checkpoint(schedule.checkpoint((seq, prev))));
            }
        }
    }

    /// Writes the encoded records, starting a new segment where `encode` said.
    fn write_encoded(&mut self) -> Option<CommitFailure> {
        // Durable before answered: always in `disk` durability; in `process` durability while
        // the log is failing, so that it reports writable again only once the disk flushes.
        let sync = self.unflushed.is_none() || self.outage.is_some();
        if sync && let Err(failure) = self.prepare_flush() {
            return Some(failure);
        }
        let first_seq = self.head.0 + 1;
        let mut chunk_start = 0;
        let mut chunk_first = 0;
        for b in 0..self.breaks.len() {
            let first = self.breaks[b];
            let start = if first == 0 { 0 } else { self.ends[first - 1] };
            if first > chunk_first
                && let Err(f) = self.write_chunk(chunk_start..start, first_seq, first - 1, sync)
            {
                return Some(f);
            }
            if let Err(f) = self.rotate() {
                return Some(f);
            }
            chunk_start = start;
            chunk_first = first;
        }
        if let Some(&end) = self.ends.last()
            && chunk_first < self.ends.len()
            && let Err(f) = self.write_chunk(chunk_start..end, first_seq, self.ends.len() - 1, sync)
        {
            return Some(f);
        }
        None
    }

    /// Writes `range` of the buffer, ending with batch record `last`; with `sync`, makes it
    /// durable. Advances the head.
    fn write_chunk(
        &mut self,
        range: std::ops::Range<usize>,
        first_seq: u64,
        last: usize,
        sync: bool,
    ) -> Result<(), CommitFailure> {
        let bytes = &self.buf[range];
        if let Err(source) = self.segment.append(bytes, sync) {
            let failure = CommitFailure::new(&self.segment.name, source);
            tracing::error!(segment = %failure.segment, error = %failure.source, "audit commit failed");
            return Err(failure);
        }
        self.head = (first_seq + last as u64, self.hashes[last]);
        self.shared.set_head(self.head);
        match &mut self.unflushed {
            Some(unflushed) if !sync => {
                unflushed.bytes.extend_from_slice(bytes);
                unflushed
                    .due
                    .get_or_insert_with(|| Instant::now() + unflushed.interval);
            }
            Some(unflushed) => {
                unflushed.all_flushed(self.segment.len);
                self.durable = self.head;
            }
            None => self.durable = self.head,
        }
        Ok(())
    }

    /// Cuts the reserved space off the segment, so that a finished segment holds records only;
    /// if that fails, the zeros stay, which readers take as unused space.
    fn trim_or_warn(&mut self) {
        if let Err(error) = self.segment.trim() {
            tracing::warn!(segment = %self.segment.name, %error, "cannot cut the reserved space off the audit segment; it stays zero-filled");
        }
    }

    /// When retention is due: deletes the closed segments it allows, after a `retention`
    /// record naming them is committed under a checkpoint and durable, and marks the log full
    /// or not. Skipped while commits fail (the record could not be written).
    fn tend_retention(&mut self) {
        let Some(retention) = self.retention.as_mut().filter(|_| self.outage.is_none()) else {
            return;
        };
        if retention.next_look() > Instant::now() {
            return;
        }
        let hard = retention.hard_bytes();
        let plan = match retention.look(&self.dir) {
            Ok((plan, _)) => plan,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "audit retention cannot survey the segments; it tries again later");
                return;
            }
        };
        let stats = self.shared.stats.clone();
        let mut bytes = plan.bytes_after + plan.remove.iter().map(|r| r.bytes).sum::<u64>();
        if !plan.remove.is_empty() {
            // A failed commit or flush here is an outage like any other: the log reports
            // unwritable, retries, and records `audit_recovered` once a commit succeeds.
            let mut batch = vec![Pending::retention(plan.event())];
            let failure = self.commit(&mut batch, true);
            self.track_outage(&batch, failure.as_ref());
            if let Some(failure) = failure {
                tracing::error!(segment = %failure.segment, error = %failure.source, "audit retention record not committed; nothing was deleted");
                return;
            }
            if let Err(failure) = self.flush_all() {
                tracing::error!(segment = %failure.segment, error = %failure.source, "audit retention record not flushed; nothing was deleted");
                self.flush_failed(&failure.source);
                return;
            }
            for removal in &plan.remove {
                let path = self.dir.join(&removal.name);
                if let Err(error) = std::fs::remove_file(&path) {
                    tracing::error!(path = %path.display(), %error, "audit retention cannot delete a segment; later ones are kept too");
                    break;
                }
                bytes -= removal.bytes;
                stats.deleted_segments.inc();
            }
            if let Err(error) = anchor::sync_dir(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot sync the audit directory after retention");
            }
            for (sink, (from, to)) in &plan.unshipped {
                stats.deleted_unshipped.inc_by(to - from + 1);
                tracing::error!(sink = %sink, from, to, "audit retention deleted records this SIEM sink never received (audit.retention.when_full: delete_unshipped)");
            }
            tracing::info!(
                segments = plan.remove.len(),
                reason = plan.reason,
                first_kept = plan.remove.last().map_or(0, |r| r.last + 1),
                "audit retention deleted the oldest segments"
            );
        }
        let state = match (plan.full, hard) {
            (false, _) => 0,
            (true, Some(hard)) if bytes > hard => FULL_HARD,
            (true, _) => FULL_REFUSE,
        };
        let before = self.shared.full.swap(state, Ordering::AcqRel);
        if state != 0 && before == 0 {
            tracing::error!(
                bytes,
                max_bytes = self.shared.max_bytes,
                "the audit log is full and a SIEM sink has not received its oldest segments: decisions are refused until it catches up (audit.retention.when_full: refuse)"
            );
        } else if state == 0 && before != 0 {
            tracing::warn!(
                bytes,
                "the audit log is under its bound again: decisions go on"
            );
        }
        stats.full.set(i64::from(state != 0));
        stats.bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Continues the log in the next segment, once the current one is durable.
    fn rotate(&mut self) -> Result<(), CommitFailure> {
        self.flush_all()?;
        let next = self.segment.number + 1;
        let faults = self.segment.faults();
        match SegmentFile::create(&self.dir, next, self.segment_bytes, faults) {
            Ok(segment) => {
                self.trim_or_warn();
                self.segment = segment;
                self.segment_born = std::time::SystemTime::now();
                if let Some(retention) = &mut self.retention {
                    retention.look_soon();
                }
                if let Some(unflushed) = &mut self.unflushed {
                    unflushed.all_flushed(0);
                }
                Ok(())
            }
            Err(source) => {
                let failure = CommitFailure::new(&segment_name(next), source);
                tracing::error!(segment = %failure.segment, error = %failure.source, "audit segment rotation failed");
                Err(failure)
            }
        }
    }
}

/// The writer, under the lock its thread and (`process` durability) the appending threads
/// commit under; `None` once the thread has stopped it.
pub type Locked = Mutex<Option<Writer>>;

/// Takes the writer's lock. A panic under it (an inline commit's: the thread's own ends the
/// thread) leaves the writer mid-commit: it drops what that commit had encoded and begins an
/// outage ([`Writer::after_panic`]), and clears the poison, so that inline commits (which
/// decline while it is set) resume once a commit succeeds.
fn lock(locked: &Locked) -> MutexGuard<'_, Option<Writer>> {
    locked.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        if let Some(writer) = guard.as_mut() {
            writer.after_panic();
        }
        locked.clear_poison();
        guard
    })
}

/// A close request and its answer, sent once the writer (and its directory lock) is dropped.
type Closing = (
    oneshot::Sender<Result<(), AuditError>>,
    Result<(), AuditError>,
);

/// What a round of the writer thread leaves to do once it lets go of the lock.
enum Round {
    /// Answer the batch's waiters: the records up to seq `written` are in the log (and the
    /// head published), the others failed with `failure`. Answered off the lock, so that
    /// the appenders it wakes find the lock free and commit their next records inline.
    Answer {
        written: u64,
        failure: Option<CommitFailure>,
    },
    /// The log is closed: send the close request its answer once the writer is dropped.
    Closed(Closing),
}

/// What the writer thread waits for between rounds.
#[derive(Default)]
struct Timers {
    /// Commit then: records in the outbox are due, or a failed log's retry.
    commit_at: Option<Instant>,
    /// Catch `head.json` up then.
    anchor_at: Option<Instant>,
}

/// When the writer thread acts next.
enum Wake {
    /// Now.
    Now,
    /// After this long, or at the next message (`None`: only at the next message).
    After(Option<Duration>),
}

/// The thread's body: group-commit until closed or every handle is dropped. It holds the
/// writer's lock for a round of work, never while it waits: in `process` durability the
/// appending threads commit under it in between ([`inline`]). A round plans the next one
/// before it lets go of the lock, and answers its waiters and signs their receipts after:
/// an appender it wakes then finds the lock free, not taken for the answers or for the
/// plan, and commits its next record inline instead of handing it over.
pub fn run(locked: Arc<Locked>, rx: Receiver<Msg>) {
    let Some((shared, receipts, faults)) = lock(&locked).as_ref().map(|writer| {
        (
            writer.shared(),
            writer.receipts.clone(),
            writer.segment.faults(),
        )
    }) else {
        return;
    };
    let _stopped = Stopped(shared.clone());
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    // Two lists take turns: the outbox fills one while the writer drains the other.
    let mut detached: Vec<AuditEvent> = Vec::with_capacity(64);
    let mut planned = None;
    loop {
        let first = wait_first(&locked, &shared, &rx, planned.take());
        let mut guard = lock(&locked);
        shared.busy.store(true, Ordering::SeqCst);
        let Some(writer) = guard.as_mut() else {
            return;
        };
        let Some(first) = first else {
            // Every handle is gone: what waits in the outbox is the last to commit.
            writer.finish(&mut batch);
            *guard = None;
            return;
        };
        let (written, failure) = match writer.round(first, &rx, &mut batch, &mut detached) {
            Round::Answer { written, failure } => (written, failure),
            Round::Closed((done, result)) => {
                *guard = None;
                drop(guard);
                drop(rx);
                let _ = done.send(result);
                return;
            }
        };
        // Planned in the same hold unless that means disk I/O (a reservation, a flush backlog
        // waited out): its waiters are not kept for it; the plan takes the lock again after
        // they are answered (`wait_first`).
        if !writer.disk_work_due() {
            let mut timers = Timers::default();
            planned = Some((writer.plan(&mut timers), timers));
        }
        shared.busy.store(false, Ordering::SeqCst);
        drop(guard);
        // Off the lock: the head is published, and the records are in the log in one
        // sequence; the appenders woken now commit inline. This thread answers each round
        // before it begins the next, so a thread's records are answered in order.
        faults.before_answer(batch.iter().any(|p| p.done.is_some()));
        reply(&mut batch, written, failure, &shared.stats);
        // The requests it answered queue their receipts on their way upstream.
        if let Some(receipts) = &receipts {
            receipts.sign_queued();
        }
    }
}

/// Blocks for the next request (`Some(Some(_))`), or until the writer is due to act on its
/// own (`Some(None)`); `None` once every handle is gone. Plans under the lock (unless the
/// round before planned already: `planned`), sleeps without it.
fn wait_first(
    locked: &Locked,
    shared: &Shared,
    rx: &Receiver<Msg>,
    planned: Option<(Wake, Timers)>,
) -> Option<Option<Msg>> {
    let (mut wake, mut timers) = match planned {
        Some(planned) => planned,
        None => {
            let mut timers = Timers::default();
            match lock(locked).as_mut() {
                Some(writer) => (writer.plan(&mut timers), timers),
                None => return None,
            }
        }
    };
    loop {
        let next = match wake {
            Wake::Now => return Some(None),
            Wake::After(None) => sleep(shared, rx, None),
            // A long wait (a checkpoint's interval) lets the outbox's pushers and inline
            // commits wake the writer, as an untimed sleep does; a short one ends before an
            // outbox record is due.
            Wake::After(Some(wait)) if wait > OUTBOX_DELAY => sleep(shared, rx, Some(wait)),
            Wake::After(Some(wait)) => rx.recv_timeout(wait),
        };
        match next {
            Ok(Msg::Wake) | Err(RecvTimeoutError::Timeout) => {}
            Ok(msg) => return Some(Some(msg)),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
        wake = match lock(locked).as_mut() {
            Some(writer) => writer.plan(&mut timers),
            None => return None,
        };
    }
}

/// Blocks for the next message, for at most `wait` when given. The outbox's pushers and
/// inline commits wake the writer (with [`Msg::Wake`]) only while it sleeps here; what they
/// left before it began is seen here.
fn sleep(
    shared: &Shared,
    rx: &Receiver<Msg>,
    wait: Option<Duration>,
) -> Result<Msg, RecvTimeoutError> {
    let outbox = &shared.outbox;
    outbox.set_sleeping(true);
    if !outbox.is_empty() || shared.unseen.load(Ordering::SeqCst) {
        outbox.set_sleeping(false);
        return Ok(Msg::Wake);
    }
    let next = match wait {
        Some(wait) => rx.recv_timeout(wait),
        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
    };
    outbox.set_sleeping(false);
    next
}

/// Adds what is pending (up to a full batch) without waiting; returns a close request.
fn drain(
    rx: &Receiver<Msg>,
    batch: &mut Vec<Pending>,
) -> Option<oneshot::Sender<Result<(), AuditError>>> {
    while batch.len() < MAX_BATCH {
        let Ok(msg) = rx.try_recv() else { break };
        if let Some(done) = take(msg, batch) {
            return Some(done);
        }
    }
    None
}

/// Adds records taken from the outbox to the batch.
fn take_detached(events: Vec<AuditEvent>, batch: &mut Vec<Pending>) {
    batch.extend(events.into_iter().map(Pending::detached));
}

/// Marks the writer stopped when its thread ends, however it ends; records still in the
/// outbox then (the thread failed) are lost, and counted.
struct Stopped(Arc<Shared>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
        let left = self.0.outbox.close().len() as u64;
        if left > 0 {
            self.0.stats.lost.inc_by(left);
            tracing::error!(
                records = left,
                "the audit writer stopped with records in its outbox; they are lost"
            );
        }
    }
}

/// Adds an append to the batch, or returns a close request.
fn take(msg: Msg, batch: &mut Vec<Pending>) -> Option<oneshot::Sender<Result<(), AuditError>>> {
    match msg {
        Msg::Append { event, done } => {
            batch.push(Pending {
                done,
                ..Pending::detached(event)
            });
            None
        }
        Msg::Close(done) => Some(done),
        Msg::Wake => None,
    }
}

/// Answers every waiter of the batch: its seq if written (seq <= `written`), else the error;
/// counts the records nobody waited for that were not written (a recovery record aside: the
/// next retry carries it anew) as lost.
fn reply(
    batch: &mut Vec<Pending>,
    written: u64,
    failure: Option<CommitFailure>,
    stats: &CommitStats,
) {
    let mut lost = 0u64;
    let mut delivery = Delivery::default();
    for pending in batch.drain(..) {
        let own = pending.own();
        let result = match (pending.unencodable, &failure) {
            (Some(e), _) => Err(AuditError::Unencodable(e)),
            (None, Some(failure)) if pending.seq > written => Err(failure.clone_error()),
            (None, _) => Ok(pending.seq),
        };
        match pending.done {
            Some(done) => delivery.answer(done, result),
            None if result.is_err() && !own => lost += 1,
            None => {}
        }
    }
    delivery.send();
    if lost > 0 {
        stats.lost.inc_by(lost);
        tracing::error!(
            records = lost,
            "audit records nobody waited for (outcomes, rejections, system records) could not be written and are lost"
        );
    }
}
