//! `AuditLog`: the handle the request path appends through.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};

use serde_json::json;
use tokio::sync::oneshot;

use super::acknowledged::Acknowledged;
use super::anchor::Anchorer;
use super::answer;
use super::checkpoint::Schedule;
use super::config::AuditConfig;
use super::error::AuditError;
use super::event::{AuditEvent, EventKind};
use super::faults::Faults;
use super::outbox::Pushed;
use super::read_back::ReadBack;
use super::receipt::{BatchSigner, Pending, Receipt};
use super::record::Hash;
use super::recover::recover;
use super::retention::Retention;
use super::segment_file::SegmentFile;
use super::signer::Signer;
use super::stats::CommitStats;
use super::unauthenticated::Folder;
use super::writer::inline::{self, Inline};
use super::writer::{FULL_HARD, FULL_REFUSE, Locked, Msg, Settings, Shared, Writer};

/// File locked while a writer owns the directory.
const LOCK_FILE: &str = "audit.lock";

/// Cheap, cloneable handle to one audit log; its writer thread owns the files.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    /// The writer, which `process` durability's appends commit through on their own thread.
    writer: Arc<Locked>,
    /// The audit key, when the log is signed: checkpoints and receipts.
    signer: Option<Arc<Signer>>,
    /// Signs receipts a batch at a time, when the log is signed.
    receipts: Option<BatchSigner>,
    /// Refusals of callers never identified, folded per source (`audit.unauthenticated`).
    unauthenticated: Folder,
    /// What the SIEM sinks' shippers acknowledged, for retention.
    acknowledged: Acknowledged,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("head_seq", &self.head().0)
            .finish()
    }
}

impl AuditLog {
    /// Opens (creating) the log in `dir`, recovers the chain head from the last segment,
    /// starts the writer thread. Blocking: call it at start-up, before serving.
    pub fn open(dir: &Path, cfg: &AuditConfig) -> Result<AuditLog, AuditError> {
        Self::open_with(dir, cfg, Arc::default(), None, Vec::new())
    }

    /// Opens the log as [`open`](Self::open) does, signed with `signer`: the writer appends
    /// signed checkpoints (`audit.signing`), and [`receipt`](Self::receipt) signs receipts.
    /// Retention (`audit.retention`) keeps every segment the SIEM sinks named in `sinks` have
    /// not acknowledged: each from the seq given beside it (what its saved, verified cursor
    /// says, `siem::acknowledged_at_start`), then as its shipper reports it through
    /// [`acknowledged`](Self::acknowledged).
    pub fn open_signed(
        dir: &Path,
        cfg: &AuditConfig,
        signer: Arc<Signer>,
        sinks: Vec<(String, u64)>,
    ) -> Result<AuditLog, AuditError> {
        Self::open_with(dir, cfg, Arc::default(), Some(signer), sinks)
    }

    /// Opens the log as [`open_signed`](Self::open_signed) does, once `back` has read it
    /// back ([`read_back::read`](super::read_back::read)): `warden serve` compares its keys
    /// with the log's before anything is written, and the log is not read back again.
    pub fn open_signed_read_back(
        dir: &Path,
        cfg: &AuditConfig,
        signer: Arc<Signer>,
        sinks: Vec<(String, u64)>,
        back: ReadBack,
    ) -> Result<AuditLog, AuditError> {
        Self::open_after(dir, cfg, Arc::default(), Some(signer), sinks, Some(back))
    }

    pub(crate) fn open_with(
        dir: &Path,
        cfg: &AuditConfig,
        faults: Arc<Faults>,
        signer: Option<Arc<Signer>>,
        sinks: Vec<(String, u64)>,
    ) -> Result<AuditLog, AuditError> {
        Self::open_after(dir, cfg, faults, signer, sinks, None)
    }

    /// Opens the log; `back` is the log read back already (`None`: read it back now).
    fn open_after(
        dir: &Path,
        cfg: &AuditConfig,
        faults: Arc<Faults>,
        signer: Option<Arc<Signer>>,
        sinks: Vec<(String, u64)>,
        back: Option<ReadBack>,
    ) -> Result<AuditLog, AuditError> {
        crate::private_files::create_dir_all(dir).map_err(|source| AuditError::Io {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })?;
        let replica = super::replica::resolve(cfg.replica_id.as_ref())?;
        let lock = lock_dir(dir)?;
        let recovered = recover(dir)?;
        let back = match back {
            Some(back) => back,
            None => super::read_back::read(dir)?,
        };
        let interrupted = super::interrupted::interrupted(&back);
        let limit = cfg.segment_bytes.max(1);
        let anchorer = Anchorer::spawn(dir.to_path_buf(), faults.clone()).map_err(|source| {
            AuditError::Io {
                action: "start the head anchor thread for",
                path: dir.to_path_buf(),
                source,
            }
        })?;
        let segment = if recovered.segment == 0 {
            SegmentFile::create(dir, 1, limit, faults)
        } else {
            SegmentFile::open(dir, recovered.segment, recovered.len, limit, faults)
        }
        .map_err(|source| AuditError::Io {
            action: "open a segment in",
            path: dir.to_path_buf(),
            source,
        })?;
        let acknowledged = Acknowledged::default();
        for (sink, seq) in &sinks {
            acknowledged.set(sink, *seq);
        }
        let sinks = sinks.into_iter().map(|(sink, _)| sink).collect();
        let checkpoints = signer.as_ref().map(|signer| {
            Schedule::new(
                Arc::clone(signer),
                cfg.signing.checkpoint_records,
                cfg.signing.checkpoint_interval,
                recovered.head.0,
            )
        });
        let settings = Settings {
            durability: cfg.durability,
            flush_interval: cfg.flush_interval,
            segment_bytes: limit,
            segment_max_age: cfg.segment_max_age,
            checkpoints,
            retention: Retention::new(&cfg.retention, sinks, acknowledged.clone()),
            max_bytes: cfg.retention.max_bytes.unwrap_or(0),
            replica,
            keys: back.keys,
        };
        let mut writer = Writer::new(
            dir.to_path_buf(),
            segment,
            settings,
            recovered.head,
            anchorer,
            lock,
        )
        .map_err(|source| AuditError::Io {
            action: "start the flusher thread for",
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(torn) = recovered.torn {
            let mut event = AuditEvent::now(EventKind::System);
            event.detail = Some(json!({
                "event": "audit_torn_tail_set_aside",
                "segment": torn.segment,
                "bytes": torn.bytes,
                "moved_to": torn.moved_to,
                "message": "the last line was incomplete (crash mid-write); its bytes were \
                            moved to the side file and the chain continues",
            }));
            writer.append_now(event)?;
        }
        if !interrupted.is_empty() {
            tracing::warn!(
                requests = interrupted.len(),
                "the previous run ended without stopping (killed or crashed) while requests \
                 were in flight; each is recorded as interrupted"
            );
            writer.append_all_now(interrupted)?;
        }
        writer.write_anchor().map_err(|source| AuditError::Io {
            action: "record the audit head in",
            path: dir.to_path_buf(),
            source,
        })?;
        let shared = writer.shared();
        let receipts = signer
            .as_ref()
            .map(|signer| BatchSigner::new(Arc::clone(signer)));
        if let Some(receipts) = &receipts {
            writer.sign_receipts(receipts.clone());
        }
        let (tx, rx) = mpsc::channel();
        let writer = Arc::new(Locked::new(Some(writer)));
        let thread_writer = Arc::clone(&writer);
        std::thread::Builder::new()
            .name("warden-audit".to_owned())
            .spawn(move || super::writer::run(thread_writer, rx))
            .map_err(|source| AuditError::Io {
                action: "start the writer thread for",
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                tx,
                shared,
                writer,
                receipts,
                signer,
                unauthenticated: Folder::new(
                    &cfg.unauthenticated,
                    &cfg.refusals,
                    std::time::Instant::now(),
                ),
                acknowledged,
            }),
        })
    }

    /// Appends; the returned future resolves with the record's sequence number once it is
    /// recorded: on disk (its group's fdatasync returned) in `disk` durability, handed to the
    /// operating system (its write returned) in `process` durability.
    ///
    /// In `process` durability, while the log is in its normal state, this call commits the
    /// record itself, on the calling thread, and the future is ready (`writer/inline.rs`);
    /// otherwise, and in `disk` durability, the record is handed to the writer thread by this
    /// call, not when the future is first polled: dropping the future does not withdraw it,
    /// and the future holds only the answer's receiver, not the event (the request path's
    /// state, which holds it across the wait, stays small).
    pub fn append(
        &self,
        event: AuditEvent,
    ) -> impl Future<Output = Result<u64, AuditError>> + Send + 'static {
        let shared = &self.inner.shared;
        let max_bytes = shared.max_bytes;
        let appended = if shared.full.load(std::sync::atomic::Ordering::Acquire) >= FULL_REFUSE {
            Appended::Full
        } else {
            match inline::append(&self.inner.writer, shared, event) {
                Inline::Committed { answer, wake } => {
                    if wake {
                        let _ = self.inner.tx.send(Msg::Wake);
                    }
                    Appended::Ready(answer)
                }
                Inline::Declined(event) => {
                    let (done, committed) = answer::waiter();
                    let sent = self.inner.tx.send(Msg::Append {
                        event,
                        done: Some(done),
                    });
                    match sent {
                        Ok(()) => Appended::Sent(committed),
                        Err(_) => Appended::Ready(Err(AuditError::Closed)),
                    }
                }
            }
        };
        async move {
            match appended {
                Appended::Full => Err(AuditError::Full { max_bytes }),
                Appended::Ready(answer) => answer,
                Appended::Sent(committed) => committed.await.map_err(|_| AuditError::Closed)?,
            }
        }
    }

    /// Whether the writer thread is between rounds, not holding its lock (tests: an append
    /// then commits inline, the log being in its normal state).
    #[cfg(test)]
    pub fn writer_idle(&self) -> bool {
        !self
            .inner
            .shared
            .busy
            .load(std::sync::atomic::Ordering::SeqCst)
            && self.inner.writer.try_lock().is_ok()
    }

    /// Appends without waiting (outcome records): the record goes to the writer's outbox and
    /// is committed with the next commit or within a few milliseconds. A record that cannot
    /// be written (the log is closed, or its commit fails) is counted in
    /// `warden_audit_records_lost_total`.
    pub fn append_detached(&self, event: AuditEvent) {
        let shared = &self.inner.shared;
        if shared.full.load(std::sync::atomic::Ordering::Acquire) == FULL_HARD {
            shared.stats.lost.inc();
            return;
        }
        match shared.outbox.push(event) {
            Pushed::Queued => {}
            Pushed::WakeWriter => {
                let _ = self.inner.tx.send(Msg::Wake);
            }
            Pushed::Closed => {
                shared.stats.lost.inc();
                tracing::error!("audit record lost: the audit log is closed");
            }
        }
    }

    /// Appends, without waiting, the record of a refusal made before any decision: of a caller
    /// never identified, recorded as it is while its source (`source_ip`) and refusal
    /// (`code`) are within `audit.unauthenticated` for the interval; of an identified agent,
    /// while it and its refusal are within `audit.refusals.per_agent`; else counted into the
    /// interval's summary record. Never for a decision.
    pub fn append_refusal(&self, event: AuditEvent) {
        let (record, summaries) = self
            .inner
            .unauthenticated
            .admit(&event, std::time::Instant::now());
        for summary in summaries {
            self.append_detached(summary);
        }
        if record {
            self.append_detached(event);
        }
    }

    /// Appends the summaries of folded refusals (`append_refusal`) of an interval
    /// that has ended: call it about once an interval, so that a flood that stopped is still
    /// summed up.
    pub fn append_folded_due(&self) {
        for summary in self.inner.unauthenticated.due(std::time::Instant::now()) {
            self.append_detached(summary);
        }
    }

    /// Commits everything queued, flushes it, and stops the writer (graceful shutdown).
    /// Refusals folded so far are summed up first.
    ///
    /// Records appended after `close` fail with [`AuditError::Closed`]. Closing twice is fine.
    pub async fn close(&self) -> Result<(), AuditError> {
        for summary in self.inner.unauthenticated.drain() {
            self.append_detached(summary);
        }
        let (done, closed) = oneshot::channel();
        if self.inner.tx.send(Msg::Close(done)).is_err() {
            return Ok(());
        }
        closed.await.unwrap_or(Ok(()))
    }

    /// The audit key, when the log is signed.
    pub fn signer(&self) -> Option<&Arc<Signer>> {
        self.inner.signer.as_ref()
    }

    /// Where the SIEM sinks' shippers report what their destinations acknowledged: with each
    /// sink's verified cursor at the start, the only acknowledgements retention trusts.
    pub fn acknowledged(&self) -> &Acknowledged {
        &self.inner.acknowledged
    }

    /// Queues the receipt of `receipt` (`x-warden-receipt`) for the next batch signed with
    /// the audit key; `None` for an unsigned log.
    pub fn receipt(&self, receipt: &Receipt) -> Option<Pending> {
        self.inner.receipts.as_ref().map(|r| r.queue(receipt))
    }

    /// Last committed seq and hash ((0, zeros) for an empty log).
    pub fn head(&self) -> (u64, Hash) {
        self.inner.shared.head()
    }

    /// Whether records can be committed: the writer runs and its last commit succeeded. After
    /// a failure it turns true again once a commit succeeds; an idle writer retries every
    /// second on its own.
    pub fn is_writable(&self) -> bool {
        use std::sync::atomic::Ordering::Acquire;
        let shared = &self.inner.shared;
        shared.alive.load(Acquire) && !shared.failing.load(Acquire)
    }

    /// Whether the log is full (`audit.retention.when_full: refuse`): decisions are refused
    /// until a SIEM sink catches up and retention deletes what it has received.
    pub fn is_full(&self) -> bool {
        use std::sync::atomic::Ordering::Acquire;
        self.inner.shared.full.load(Acquire) >= FULL_REFUSE
    }

    /// The writer's commit counters (for `/metrics`).
    pub fn stats(&self) -> &CommitStats {
        &self.inner.shared.stats
    }
}

/// What [`AuditLog::append`] did with a record.
enum Appended {
    /// Refused: the log is full.
    Full,
    /// Committed (or not) already: the answer.
    Ready(answer::Answer),
    /// Handed to the writer thread, which answers here.
    Sent(oneshot::Receiver<answer::Answer>),
}

/// Whether a writer holds the log in `dir` (a Warden is writing it). Takes a shared lock on
/// the lock file for an instant to find out; no lock file: no writer ever opened `dir`.
pub fn in_use(dir: &Path) -> std::io::Result<bool> {
    let file = match File::open(dir.join(LOCK_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Takes the directory's writer lock (released when the writer stops).
fn lock_dir(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join(LOCK_FILE);
    let file = crate::private_files::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| AuditError::Io {
            action: "create",
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(AuditError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(source)) => Err(AuditError::Io {
            action: "lock",
            path,
            source,
        }),
    }
}
