//! The writer thread: drains every pending record, writes them with one write, makes them
//! durable with one `fdatasync`, then answers every waiter (group commit).

use std::fs::{File, OpenOptions};
use std::io;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::anchor;
use super::answer::{Delivery, Waiter};
use super::direct;
use super::event::{AuditEvent, EventKind, Timestamp};
use super::faults::Faults;
use super::log::AuditError;
use super::producers::Producers;
use super::record::{self, Hash};
use super::segment::segment_name;
use super::stats::CommitStats;

/// Most records gathered into one commit.
const MAX_BATCH: usize = 1024;
/// Under load, `head.json` is rewritten at most this often.
const ANCHOR_INTERVAL: Duration = Duration::from_millis(100);
/// After this long without records, `head.json` catches up with the head.
const ANCHOR_IDLE: Duration = Duration::from_millis(10);
/// Longest wait for the waiters of the previous commit to come back (adaptive batching).
const MAX_STRAGGLER_WAIT: Duration = Duration::from_micros(500);
/// How late the kernel may wake the writer from a timed wait. Linux's default for a thread
/// is 50 µs, which on top of a few-hundred-µs straggler wait puts a quarter more on every
/// commit's path; the writer sleeps briefly and rarely enough that grouping its wake-ups
/// with others saves nothing.
const TIMER_SLACK_NS: u64 = 5_000;
/// Longest a record without a waiter stays in the outbox before the writer commits it on
/// its own (it rides with the next commit when one comes sooner).
const OUTBOX_DELAY: Duration = Duration::from_millis(5);
/// While commits fail, an idle writer tries again this often (with its recovery record), so
/// the log reports writable again without waiting for traffic that readiness turned away.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Zero-filled space kept ahead of the writes: appends then overwrite blocks that are
/// allocated and written, so an fdatasync flushes data only, without the journal commit a
/// growing file size costs (ext4).
const RESERVE_BYTES: u64 = 1 << 20;
/// Source of the zeros written into reserved space.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// A request to the writer thread.
#[expect(
    clippy::large_enum_variant,
    reason = "Close is sent once; boxing the event would cost an allocation per record"
)]
pub enum Msg {
    /// Append `event`; answer `done` once durable (or failed).
    Append {
        event: AuditEvent,
        done: Option<Waiter>,
    },
    /// Commit everything sent before, anchor the head, stop; answer on the sender.
    Close(oneshot::Sender<Result<(), AuditError>>),
    /// The outbox got a record while the writer slept with nothing to time: start timing it.
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
    /// True from a failed commit until the next one succeeds.
    pub failing: AtomicBool,
    /// Commit counters for `/metrics`.
    pub stats: CommitStats,
    /// The worker threads that append decisions, running or idle.
    pub producers: Arc<Producers>,
}

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

/// The segment being appended to.
pub struct SegmentFile {
    number: u64,
    name: String,
    path: PathBuf,
    file: File,
    /// Synchronous commits through direct I/O, where the filesystem does it.
    direct: Direct,
    /// Bytes committed (written and, with fsync, durable): the end of the data.
    len: u64,
    /// Size of the file: zeros from `len` to here are reserved space.
    allocated: u64,
    /// Reserve no space past this size (the segment size limit).
    limit: u64,
    /// A failed write or fsync may have left bytes past `len`; cut them before writing again.
    dirty_tail: bool,
    faults: Arc<Faults>,
}

impl SegmentFile {
    /// Opens segment `number` to append after its first `len` bytes; only zeros may follow
    /// them (recovery saw to it).
    pub fn open(
        dir: &Path,
        number: u64,
        len: u64,
        limit: u64,
        direct_io: bool,
        faults: Arc<Faults>,
    ) -> io::Result<Self> {
        let name = segment_name(number);
        let path = dir.join(&name);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let allocated = file.metadata()?.len().max(len);
        Ok(SegmentFile {
            number,
            name,
            path,
            file,
            direct: Direct::new(direct_io),
            len,
            allocated,
            limit,
            dirty_tail: false,
            faults,
        })
    }

    /// Creates segment `number` (or reuses it if it exists and is empty) and makes its
    /// directory entry durable.
    pub fn create(
        dir: &Path,
        number: u64,
        limit: u64,
        direct_io: bool,
        faults: Arc<Faults>,
    ) -> io::Result<Self> {
        let name = segment_name(number);
        let path = dir.join(&name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if file.metadata()?.len() != 0 {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{name} already exists and is not empty"),
            ));
        }
        anchor::sync_dir(dir)?;
        Ok(SegmentFile {
            number,
            name,
            path,
            file,
            direct: Direct::new(direct_io),
            len: 0,
            allocated: 0,
            limit,
            dirty_tail: false,
            faults,
        })
    }

    /// Cuts the reserved space (and any bytes of a failed write) off the end of the file.
    fn trim(&mut self) -> io::Result<()> {
        if self.allocated != self.len || self.dirty_tail {
            self.file.set_len(self.len)?;
            self.allocated = self.len;
            self.dirty_tail = false;
        }
        Ok(())
    }

    /// Makes sure the file holds zeros up to at least `end`, reserving ahead; with `sync`,
    /// new space is durable (allocated, written, the size recorded) before it is used, as
    /// direct writes into it need (a buffered commit's own `fdatasync` covers it).
    fn reserve(&mut self, end: u64, sync: bool) -> io::Result<()> {
        if end <= self.allocated {
            return Ok(());
        }
        let target = (self.allocated + RESERVE_BYTES).min(self.limit).max(end);
        let mut at = self.allocated;
        while at < target {
            let n = usize::try_from(target - at).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
            self.file.write_all_at(&ZEROS[..n], at)?;
            at += n as u64;
        }
        if sync {
            self.file.sync_data()?;
        }
        self.allocated = target;
        Ok(())
    }

    /// Writes `bytes` after the committed end; with `sync`, returns once they are durable.
    fn append(&mut self, bytes: &[u8], sync: bool) -> io::Result<()> {
        if self.dirty_tail {
            self.trim()?;
        }
        let result = if sync && self.direct_ready() {
            self.append_direct(bytes)
        } else {
            self.append_buffered(bytes, sync)
        };
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.dirty_tail = true;
                Err(e)
            }
        }
    }

    /// One synchronous direct write; where the device turns its alignment down, the commit
    /// and the ones after it go the buffered way.
    fn append_direct(&mut self, bytes: &[u8]) -> io::Result<()> {
        // Held apart while the space is reserved (which borrows the segment), then put back.
        let Direct::On(mut direct) = std::mem::replace(&mut self.direct, Direct::Off) else {
            return self.append_buffered(bytes, true);
        };
        let prepared = self
            .reserve(direct.padded_end(bytes.len()), true)
            .and_then(|()| self.faults.before_write(&self.file, bytes, self.len))
            .and_then(|()| self.faults.before_sync());
        if let Err(e) = prepared {
            self.direct = Direct::On(direct);
            return Err(e);
        }
        match direct.write(bytes) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(segment = %self.name, error = %e, "direct writes to the audit log are refused (alignment); using buffered writes and fdatasync");
                self.append_buffered(bytes, true)
            }
            written => {
                self.direct = Direct::On(direct);
                written
            }
        }
    }

    /// A write through the page cache, then `fdatasync` if `sync`.
    fn append_buffered(&mut self, bytes: &[u8], sync: bool) -> io::Result<()> {
        self.reserve(self.len + bytes.len() as u64, false)?;
        self.faults.before_write(&self.file, bytes, self.len)?;
        self.file.write_all_at(bytes, self.len)?;
        if sync {
            self.faults.before_sync()?;
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Whether commits go through direct I/O; opens the direct descriptor on first use.
    fn direct_ready(&mut self) -> bool {
        if let Direct::Untried = self.direct {
            self.direct = match direct::DirectFile::open(&self.path, &self.file, self.len) {
                Ok(Some(file)) => Direct::On(file),
                Ok(None) => {
                    // Once per process: every segment of the log is on the same filesystem.
                    if !NO_DIRECT_IO_REPORTED.swap(true, Ordering::Relaxed) {
                        tracing::info!(segment = %self.name, "the audit log's filesystem does not do direct I/O; commits use buffered writes and fdatasync");
                    }
                    Direct::Off
                }
                Err(error) => {
                    tracing::warn!(segment = %self.name, %error, "cannot open the audit segment for direct I/O; commits use buffered writes and fdatasync");
                    Direct::Off
                }
            };
        }
        matches!(self.direct, Direct::On(_))
    }
}

/// Set once the log said that its filesystem does not do direct I/O.
static NO_DIRECT_IO_REPORTED: AtomicBool = AtomicBool::new(false);

/// How a segment's synchronous commits are written.
enum Direct {
    /// Not opened yet: on the first synchronous commit.
    Untried,
    On(direct::DirectFile),
    /// Turned off by configuration, or the filesystem does not do it.
    Off,
}

impl Direct {
    fn new(enabled: bool) -> Direct {
        if enabled {
            Direct::Untried
        } else {
            Direct::Off
        }
    }
}

/// Writer settings taken from the configuration.
pub struct Settings {
    /// fdatasync each group commit.
    pub fsync: bool,
    /// Rotate before a record would take a segment past this size.
    pub segment_bytes: u64,
    /// Longest wait for more records after the first of a batch.
    pub max_commit_delay: Duration,
    /// Write synchronous commits with direct I/O where the filesystem does it.
    pub direct_io: bool,
}

/// A record waiting for its group commit.
struct Pending {
    event: AuditEvent,
    done: Option<Waiter>,
    /// Seq assigned when encoded; 0 if it could not be.
    seq: u64,
    unencodable: Option<serde_json::Error>,
}

impl Pending {
    /// A record nobody waits for.
    fn detached(event: AuditEvent) -> Pending {
        Pending {
            event,
            done: None,
            seq: 0,
            unencodable: None,
        }
    }
}

/// Commits failing since `since`: what the recovery record reports once one succeeds.
struct Outage {
    since: Timestamp,
    /// Records (recovery records aside) not committed since.
    failed_records: u64,
    /// The last failure.
    error: String,
}

impl Outage {
    /// The system record that leads the first successful commit after the outage, so the
    /// log itself shows the gap: when it began and how many records it cost.
    fn recovery_event(&self) -> AuditEvent {
        let mut event = AuditEvent::now(EventKind::System);
        event.detail = Some(serde_json::json!({
            "event": "audit_recovered",
            "failing_since": self.since,
            "failed_records": self.failed_records,
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

/// Owns the log files; runs on its own thread.
pub struct Writer {
    dir: PathBuf,
    segment: SegmentFile,
    settings: Settings,
    /// Last committed (seq, hash).
    head: (u64, Hash),
    shared: Arc<Shared>,
    /// Reused encode buffer and per-record ends and hashes of the current batch.
    buf: Vec<u8>,
    ends: Vec<usize>,
    hashes: Vec<Hash>,
    /// How many of the current batch's records are encoded into `buf` (records are encoded
    /// while the writer waits for stragglers).
    encoded: usize,
    /// Writes `head.json` off this thread while the log runs.
    anchorer: anchor::Anchorer,
    /// Seq recorded in (or posted for) `head.json`, and when.
    anchored: Option<u64>,
    anchored_at: Instant,
    /// Records in the last commit, and how long its write and fsync took.
    last_records: usize,
    last_commit: Duration,
    /// Since the last failed commit, until one succeeds.
    outage: Option<Outage>,
    /// Held for the writer's life: one writer per directory.
    _lock: File,
}

impl Writer {
    /// A writer appending to `segment`, whose chain ends at `head`; `anchorer` keeps
    /// `head.json` while it runs.
    pub fn new(
        dir: PathBuf,
        segment: SegmentFile,
        settings: Settings,
        head: (u64, Hash),
        anchorer: anchor::Anchorer,
        lock: File,
    ) -> Writer {
        Writer {
            dir,
            segment,
            settings,
            head,
            shared: Arc::new(Shared {
                head: Mutex::new(head),
                outbox: Outbox::default(),
                alive: AtomicBool::new(true),
                failing: AtomicBool::new(false),
                stats: CommitStats::new(),
                producers: Arc::default(),
            }),
            buf: Vec::with_capacity(64 * 1024),
            ends: Vec::with_capacity(MAX_BATCH),
            hashes: Vec::with_capacity(MAX_BATCH),
            encoded: 0,
            anchorer,
            anchored: None,
            anchored_at: Instant::now(),
            last_records: 0,
            last_commit: Duration::ZERO,
            outage: None,
            _lock: lock,
        }
    }

    /// The state shared with the handles.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Commits one record now, on the caller's thread (recovery notes on open).
    pub fn append_now(&mut self, event: AuditEvent) -> Result<u64, AuditError> {
        let mut batch = vec![Pending::detached(event)];
        let failure = self.commit(&mut batch);
        let pending = batch.pop();
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

    /// Records the head in `head.json`; `durable` also syncs the directory (close, open).
    pub fn write_anchor(&mut self, durable: bool) -> io::Result<()> {
        let sync = self.settings.fsync;
        anchor::write(&self.dir, self.head.0, &self.head.1, sync)?;
        if durable && sync {
            anchor::sync_dir(&self.dir)?;
        }
        self.anchored = Some(self.head.0);
        self.anchored_at = Instant::now();
        Ok(())
    }

    /// The thread's body: group-commit until closed or every handle is dropped.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let _stopped = Stopped(self.shared.clone());
        self.shared.producers.set_writer(std::thread::current());
        if let Err(error) = rustix::thread::set_current_timer_slack(NonZeroU64::new(TIMER_SLACK_NS))
        {
            tracing::debug!(%error, "cannot set the audit writer's timer slack; keeping the default");
        }
        let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = self.wait_first(&rx) {
            // Records waiting in the outbox were appended before this message arrived.
            self.shared.outbox.take_into(&mut batch);
            let mut close = first.and_then(|msg| take(msg, &mut batch));
            if close.is_none() {
                close = self.gather(&rx, &mut batch);
            }
            if close.is_some() {
                // A close can arrive while gathering, after the outbox was taken: records
                // left there before it was sent are the last to commit.
                self.shared.outbox.take_into(&mut batch);
            }
            if batch.is_empty() && close.is_none() && self.outage.is_none() {
                continue; // a wake-up whose records an earlier commit took
            }
            if let Some(outage) = &self.outage {
                batch.insert(0, Pending::detached(outage.recovery_event()));
            }
            let started = Instant::now();
            let failure = self.commit(&mut batch);
            self.last_commit = started.elapsed();
            self.last_records = batch.len();
            self.track_outage(&batch, failure.as_ref());
            if failure.is_none() {
                let stats = &self.shared.stats;
                stats.commits.inc();
                stats.records.inc_by(batch.len() as u64);
                stats.commit_seconds.observe(self.last_commit.as_secs_f64());
            }
            let failed = failure.as_ref().map(|f| f.clone_error());
            reply(&mut batch, self.head.0, failure);
            if let Some(done) = close.take() {
                let anchored = self.anchor_on_stop();
                let result = match failed {
                    Some(error) => Err(error),
                    None => anchored,
                };
                drop(self);
                drop(rx);
                let _ = done.send(result);
                return;
            }
            if self.anchored != Some(self.head.0) && self.anchored_at.elapsed() >= ANCHOR_INTERVAL {
                self.post_anchor();
            }
        }
        // Every handle is gone: what waits in the outbox is the last to commit.
        self.shared.outbox.take_into(&mut batch);
        if !batch.is_empty() {
            let failure = self.commit(&mut batch);
            reply(&mut batch, self.head.0, failure);
        }
        if let Err(error) = self.anchor_on_stop() {
            tracing::error!(%error, "audit log stopped without recording its head");
        }
    }

    /// Notes a failed commit (the outage begins or goes on) or a successful one (it ends,
    /// and the batch's first record, the recovery record, told the log about it).
    fn track_outage(&mut self, batch: &[Pending], failure: Option<&CommitFailure>) {
        match (failure, &mut self.outage) {
            (None, None) => {}
            (None, Some(outage)) => {
                tracing::info!(
                    failed_records = outage.failed_records,
                    "the audit log is writable again"
                );
                self.outage = None;
                self.shared.failing.store(false, Ordering::Release);
            }
            (Some(failure), outage) => {
                let durable = self.head.0;
                let not_written = |p: &Pending| p.seq > durable;
                // A retry leads with the recovery record. If it was written (the commit failed
                // part-way), the log already tells of the earlier outage: a new one begins.
                let recovery = outage.is_some().then(|| batch.first()).flatten();
                let still_out = recovery.is_some_and(not_written);
                if !still_out {
                    *outage = None;
                }
                let outage = outage.get_or_insert_with(|| Outage {
                    since: Timestamp::now(),
                    failed_records: 0,
                    error: String::new(),
                });
                let failed = batch.iter().filter(|p| not_written(p)).count() as u64;
                outage.failed_records += failed - u64::from(still_out);
                outage.error = failure.source.to_string();
                self.shared.failing.store(true, Ordering::Release);
            }
        }
    }

    fn anchor_on_stop(&mut self) -> Result<(), AuditError> {
        self.anchorer.stop();
        self.trim_or_warn();
        self.write_anchor(true).map_err(|source| AuditError::Io {
            action: "record the audit head in",
            path: self.dir.join(anchor::ANCHOR_FILE),
            source,
        })
    }

    /// Has the anchor thread record the head in `head.json`.
    fn post_anchor(&mut self) {
        self.anchorer.post(self.head.0, self.head.1);
        self.anchored = Some(self.head.0);
        self.anchored_at = Instant::now();
    }

    /// Blocks for the next request (`Some(Some(_))`), or until records in the outbox have
    /// waited long enough (`Some(None)`); `None` once every handle is gone. While
    /// `head.json` lags, catches it up once idle.
    fn wait_first(&mut self, rx: &Receiver<Msg>) -> Option<Option<Msg>> {
        loop {
            let outbox = !self.shared.outbox.is_empty();
            let anchor_lags = self.anchored != Some(self.head.0);
            let retry = self.outage.is_some();
            let timeout = if outbox {
                OUTBOX_DELAY
            } else if retry {
                RETRY_INTERVAL
            } else if anchor_lags {
                ANCHOR_IDLE
            } else {
                match self.sleep_untimed(rx) {
                    Some(Some(Msg::Wake)) => continue,
                    next => return next,
                }
            };
            match rx.recv_timeout(timeout) {
                Ok(msg) => return Some(Some(msg)),
                Err(RecvTimeoutError::Timeout) if outbox || retry => return Some(None),
                Err(RecvTimeoutError::Timeout) => self.post_anchor(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Blocks for the next message with nothing to time. The outbox's pushers wake the
    /// writer (with [`Msg::Wake`]) only while it sleeps here: either this check sees their
    /// record, or they see the flag.
    fn sleep_untimed(&self, rx: &Receiver<Msg>) -> Option<Option<Msg>> {
        let outbox = &self.shared.outbox;
        outbox.sleeping.store(true, Ordering::SeqCst);
        if !outbox.is_empty() {
            outbox.sleeping.store(false, Ordering::SeqCst);
            return Some(Some(Msg::Wake));
        }
        let next = rx.recv().ok().map(Some);
        outbox.sleeping.store(false, Ordering::SeqCst);
        next
    }

    /// Adds whatever else is pending, waiting for more up to `max_commit_delay`; without
    /// one, waits briefly (at most half the last commit's time) for as many records as the
    /// last commit answered, since those callers often append again at once, and no longer
    /// than the proxy's worker threads are running (an idle worker appends nothing).
    fn gather(
        &mut self,
        rx: &Receiver<Msg>,
        batch: &mut Vec<Pending>,
    ) -> Option<oneshot::Sender<Result<(), AuditError>>> {
        let (delay, wanted) = if self.settings.max_commit_delay.is_zero() {
            let straggle = (self.last_commit / 2).min(MAX_STRAGGLER_WAIT);
            (straggle, self.last_records.min(MAX_BATCH))
        } else {
            (self.settings.max_commit_delay, MAX_BATCH)
        };
        if let Some(done) = drain(rx, batch) {
            return Some(done);
        }
        if batch.len() < wanted && !delay.is_zero() {
            let deadline = Instant::now() + delay;
            if self.settings.max_commit_delay.is_zero() {
                // One sleep for the short wait, rather than a wake-up per arriving record;
                // what is already here is encoded first, off the commit's path.
                if self.outage.is_none() {
                    self.encode_new(batch);
                }
                // Cut short once every worker is idle: none of them can append until new input
                // arrives, so waiting longer would only delay the records already here.
                self.shared.producers.wait_while_running(deadline);
            } else {
                while batch.len() < wanted {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(msg) => {
                            if let Some(done) = take(msg, batch) {
                                return Some(done);
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        drain(rx, batch)
    }

    /// Encodes the batch, writes it (rotating segments as needed) and makes it durable.
    /// On failure, the records not yet durable are given up and the head stays at the last
    /// durable one, so later records continue the chain from there.
    fn commit(&mut self, batch: &mut [Pending]) -> Option<CommitFailure> {
        self.encode_new(batch);
        let failure = self.write_encoded();
        self.buf.clear();
        self.ends.clear();
        self.hashes.clear();
        self.encoded = 0;
        failure
    }

    /// Encodes the batch's records not yet encoded, continuing the chain from the last one
    /// encoded (from the head for a new batch). Records must only be added at the batch's end
    /// between calls.
    fn encode_new(&mut self, batch: &mut [Pending]) {
        debug_assert!(
            self.encoded <= batch.len(),
            "the batch lost encoded records"
        );
        // The chain continues from the last record encoded, or from the head.
        let (mut seq, mut prev) = match self.hashes.last() {
            Some(&last) => (self.head.0 + self.hashes.len() as u64, last),
            None => self.head,
        };
        for pending in &mut batch[self.encoded..] {
            match record::encode(&mut self.buf, seq + 1, &prev, &pending.event) {
                Ok(hash) => {
                    seq += 1;
                    prev = hash;
                    pending.seq = seq;
                    self.ends.push(self.buf.len());
                    self.hashes.push(hash);
                }
                Err(e) => pending.unencodable = Some(e),
            }
        }
        self.encoded = batch.len();
    }

    /// Writes the encoded records, rotating segments as needed, and makes them durable.
    fn write_encoded(&mut self) -> Option<CommitFailure> {
        let first_seq = self.head.0 + 1;
        let mut chunk_start = 0;
        let mut chunk_first = 0;
        for i in 0..self.ends.len() {
            let record_start = if i == 0 { 0 } else { self.ends[i - 1] };
            let before = self.segment.len + (record_start - chunk_start) as u64;
            let after = before + (self.ends[i] - record_start) as u64;
            if after > self.settings.segment_bytes && before > 0 {
                if i > chunk_first
                    && let Err(f) = self.write_chunk(chunk_start..record_start, first_seq, i - 1)
                {
                    return Some(f);
                }
                if let Err(f) = self.rotate() {
                    return Some(f);
                }
                chunk_start = record_start;
                chunk_first = i;
            }
        }
        if let Some(&end) = self.ends.last()
            && let Err(f) = self.write_chunk(chunk_start..end, first_seq, self.ends.len() - 1)
        {
            return Some(f);
        }
        None
    }

    /// Writes `range` of the buffer, ending with batch record `last`; advances the head.
    fn write_chunk(
        &mut self,
        range: std::ops::Range<usize>,
        first_seq: u64,
        last: usize,
    ) -> Result<(), CommitFailure> {
        let bytes = &self.buf[range];
        if let Err(source) = self.segment.append(bytes, self.settings.fsync) {
            let failure = CommitFailure {
                segment: self.segment.name.clone(),
                source: Arc::new(source),
            };
            tracing::error!(segment = %failure.segment, error = %failure.source, "audit commit failed");
            return Err(failure);
        }
        self.head = (first_seq + last as u64, self.hashes[last]);
        self.shared.set_head(self.head);
        Ok(())
    }

    /// Cuts the reserved space off the segment, so that a finished segment holds records only;
    /// if that fails, the zeros stay, which readers take as unused space.
    fn trim_or_warn(&mut self) {
        if let Err(error) = self.segment.trim() {
            tracing::warn!(segment = %self.segment.name, %error, "cannot cut the reserved space off the audit segment; it stays zero-filled");
        }
    }

    /// Continues the log in the next segment.
    fn rotate(&mut self) -> Result<(), CommitFailure> {
        let next = self.segment.number + 1;
        let limit = self.settings.segment_bytes;
        match SegmentFile::create(
            &self.dir,
            next,
            limit,
            self.settings.direct_io,
            self.segment.faults.clone(),
        ) {
            Ok(segment) => {
                self.trim_or_warn();
                self.segment = segment;
                Ok(())
            }
            Err(source) => {
                let failure = CommitFailure {
                    segment: segment_name(next),
                    source: Arc::new(source),
                };
                tracing::error!(segment = %failure.segment, error = %failure.source, "audit segment rotation failed");
                Err(failure)
            }
        }
    }
}

impl CommitFailure {
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

/// Records appended without a waiter: handed over under a lock without waking the writer,
/// which takes them with its next commit (or after [`OUTBOX_DELAY`]). An outcome record does
/// not need a commit of its own, and a wake-up of the writer thread per record costs more
/// than committing it.
#[derive(Debug, Default)]
pub struct Outbox {
    events: Mutex<Vec<AuditEvent>>,
    /// The writer sleeps without a timeout: the next push must wake it.
    sleeping: AtomicBool,
}

impl Outbox {
    /// Leaves `event` for the next commit; wakes the writer through `wake` only if it sleeps
    /// with nothing to time.
    pub fn push(&self, event: AuditEvent, wake: &std::sync::mpsc::Sender<Msg>) {
        self.lock().push(event);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let _ = wake.send(Msg::Wake);
        }
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Moves every waiting record into `batch`.
    fn take_into(&self, batch: &mut Vec<Pending>) {
        let events = std::mem::take(&mut *self.lock());
        batch.extend(events.into_iter().map(Pending::detached));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<AuditEvent>> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Marks the writer stopped when its thread ends, however it ends.
struct Stopped(Arc<Shared>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
    }
}

/// Adds an append to the batch, or returns a close request.
fn take(msg: Msg, batch: &mut Vec<Pending>) -> Option<oneshot::Sender<Result<(), AuditError>>> {
    match msg {
        Msg::Append { event, done } => {
            batch.push(Pending {
                event,
                done,
                seq: 0,
                unencodable: None,
            });
            None
        }
        Msg::Close(done) => Some(done),
        Msg::Wake => None,
    }
}

/// Answers every waiter of the batch: its seq if durable (seq <= `durable`), else the error.
fn reply(batch: &mut Vec<Pending>, durable: u64, failure: Option<CommitFailure>) {
    let mut lost = 0usize;
    let mut delivery = Delivery::default();
    for pending in batch.drain(..) {
        let result = match (pending.unencodable, &failure) {
            (Some(e), _) => Err(AuditError::Unencodable(e)),
            (None, Some(failure)) if pending.seq > durable => Err(failure.clone_error()),
            (None, _) => Ok(pending.seq),
        };
        match pending.done {
            Some(done) => delivery.answer(done, result),
            None if result.is_err() => lost += 1,
            None => {}
        }
    }
    delivery.send();
    if lost > 0 {
        tracing::error!(
            records = lost,
            "detached audit records could not be committed and are lost"
        );
    }
}
