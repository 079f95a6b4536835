//! What can go wrong with the audit log, as data a caller can match: appending, opening or
//! closing it ([`AuditError`]), and verifying it ([`VerifyError`], which names the first bad
//! record and what is wrong with it).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::anchor::ANCHOR_FILE;
use super::checkpoint::CheckpointProblem;

/// Why a record could not be appended, or the log not opened or closed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error from the OS.
        source: io::Error,
    },
    /// No replica id could be had (`audit.replica_id`).
    #[error(transparent)]
    ReplicaId(#[from] super::replica::ReplicaIdError),
    /// Another writer holds the directory.
    #[error(
        "the audit log in {} is in use by another process; stop it, or give this one its own \
         audit.dir",
        dir.display()
    )]
    Locked {
        /// The log directory.
        dir: PathBuf,
    },
    /// The existing log does not chain; appending to it would bury the damage.
    #[error(
        "refusing to append to the audit log in {}: {source}. Nothing was changed: run \
         `warden audit verify {}`, investigate, and move the log aside before starting again",
        dir.display(),
        dir.display()
    )]
    Damaged {
        /// The log directory.
        dir: PathBuf,
        /// The first bad record.
        source: VerifyError,
    },
    /// The record's group commit failed (disk full, I/O error): it was not acknowledged.
    #[error(
        "audit record not committed: writing {segment} failed: {source}; check free space and \
         the disk"
    )]
    Write {
        /// The segment being written.
        segment: String,
        /// The error from the OS, shared by every record of the failed commit.
        source: Arc<io::Error>,
    },
    /// The event could not be serialized.
    #[error("audit event cannot be serialized as JSON: {0}")]
    Unencodable(#[source] serde_json::Error),
    /// The log is at `audit.retention.max_bytes`, what is left has not reached every SIEM
    /// sink, and `when_full` is `refuse`: decisions are refused until a sink catches up.
    #[error(
        "the audit log is full: it is at audit.retention.max_bytes ({max_bytes} bytes) and a \
         SIEM sink has not received its oldest segments, so decisions are refused \
         (audit.retention.when_full: refuse); see warden_siem_lag_events for the sink that \
         lags, raise max_bytes, or choose when_full: delete_unshipped"
    )]
    Full {
        /// The bound.
        max_bytes: u64,
    },
    /// The log was closed (or its writer stopped).
    #[error("the audit log is closed; no more records can be written")]
    Closed,
}

/// Where a problem was found: a file, and in a segment the line and the record's seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File name inside the log directory.
    pub file: Arc<str>,
    /// 1-based line number, for segment files.
    pub line: Option<u64>,
    /// The record's seq, when it could be read.
    pub seq: Option<u64>,
}

impl Location {
    /// Line `line` of segment `file`, seq not read yet.
    pub fn line(file: Arc<str>, line: u64) -> Location {
        Location {
            file,
            line: Some(line),
            seq: None,
        }
    }

    /// A whole file (`head.json`).
    pub fn file(file: &str) -> Location {
        Location {
            file: Arc::from(file),
            line: None,
            seq: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        Ok(())
    }
}

/// How an edit was detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditEvidence {
    /// The record's hash is not the `prev` of the record after it.
    NextPrev {
        /// Seq of the record after it.
        next_seq: u64,
    },
    /// The first record of the log does not carry the all-zero `prev`.
    Genesis,
    /// The record's hash is not the one `head.json` recorded for its seq.
    Anchor,
    /// The record's hash is not the one a head kept elsewhere (`--head SEQ:HASH`) names.
    KnownHead,
}

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The record's content changed after it was written.
    Edited(EditEvidence),
    /// Records `first..=last` are missing before this one.
    Deleted {
        /// First missing seq.
        first: u64,
        /// Last missing seq.
        last: u64,
    },
    /// The record is out of order: `expected` should come here.
    Reordered {
        /// The seq that should be at this place.
        expected: u64,
        /// Where that seq was found further down the same segment, if it was.
        expected_line: Option<u64>,
    },
    /// The log ends early.
    Truncated(TruncationEvidence),
    /// The line is not an audit record.
    Malformed(String),
    /// A signed checkpoint does not hold: the records it covers were rewritten, or the
    /// checkpoint itself was forged or replaced.
    Checkpoint(CheckpointProblem),
}

/// How a cut was detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TruncationEvidence {
    /// The file ends with a line without newline: a write was torn or the file was cut.
    TornLine {
        /// Bytes in the incomplete line.
        bytes: u64,
    },
    /// The segment's data ends (zero bytes follow, the space the writer reserves ahead), but
    /// non-zero bytes lie further on: records were zeroed out, or bytes were written into the
    /// reserved space.
    DataAfterEnd {
        /// File offset of the first non-zero byte after the end.
        offset: u64,
        /// Bytes from there to the last non-zero byte.
        bytes: u64,
    },
    /// `head.json` records a later seq than the last record present.
    AnchorAhead {
        /// The seq `head.json` records.
        anchor_seq: u64,
    },
    /// A head kept elsewhere (`--head SEQ:HASH`) names a later seq than the last record
    /// present: the log was cut back after that head was taken.
    KnownHeadAhead {
        /// The seq the head names.
        seq: u64,
    },
}

impl Problem {
    /// One word for the problem: `edited`, `deleted`, `reordered`, `truncated`, `malformed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Edited(_) => "edited",
            Problem::Deleted { .. } => "deleted",
            Problem::Reordered { .. } => "reordered",
            Problem::Truncated(_) => "truncated",
            Problem::Malformed(_) => "malformed",
            Problem::Checkpoint(CheckpointProblem::Rewritten { .. }) => "edited",
            Problem::Checkpoint(CheckpointProblem::Malformed(_)) => "malformed",
            Problem::Checkpoint(_) => "forged",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Edited(EditEvidence::NextPrev { next_seq }) => write!(
                f,
                "record was edited after it was written: its hash does not match the \"prev\" \
                 of seq {next_seq}"
            ),
            Problem::Edited(EditEvidence::Genesis) => f.write_str(
                "record was edited after it was written: the first record's \"prev\" must be \
                 64 zeros",
            ),
            Problem::Edited(EditEvidence::Anchor) => write!(
                f,
                "record was edited after it was written: its hash does not match the one \
                 recorded in {ANCHOR_FILE}"
            ),
            Problem::Edited(EditEvidence::KnownHead) => f.write_str(
                "record was edited or replaced after it was written: its hash does not match \
                 the one the head given with --head names for its seq",
            ),
            Problem::Deleted { first, last } if first == last => {
                write!(
                    f,
                    "a record was deleted before this one: seq {first} is missing"
                )
            }
            Problem::Deleted { first, last } => write!(
                f,
                "records were deleted before this one: seq {first} to {last} are missing"
            ),
            Problem::Reordered {
                expected,
                expected_line: Some(line),
            } => write!(
                f,
                "records were reordered: seq {expected} was expected here; it is at line {line}"
            ),
            Problem::Reordered {
                expected,
                expected_line: None,
            } => write!(
                f,
                "records were reordered: seq goes backwards where seq {expected} was expected"
            ),
            Problem::Truncated(TruncationEvidence::TornLine { bytes }) => write!(
                f,
                "the log was truncated: the last line is incomplete ({bytes} bytes without a \
                 newline)"
            ),
            Problem::Truncated(TruncationEvidence::DataAfterEnd { offset, bytes }) => write!(
                f,
                "the log was truncated: its data ends here (zero bytes follow), but {bytes} \
                 bytes of data lie after the zeros at offset {offset}: records were zeroed out \
                 or written past the end"
            ),
            Problem::Truncated(TruncationEvidence::AnchorAhead { anchor_seq }) => write!(
                f,
                "the log was truncated: {ANCHOR_FILE} records seq {anchor_seq} but the log ends \
                 here"
            ),
            Problem::Truncated(TruncationEvidence::KnownHeadAhead { seq }) => write!(
                f,
                "the log was cut back: the head given with --head names seq {seq}, but the log \
                 ends here (its {ANCHOR_FILE} can be rewritten, a head kept elsewhere cannot)"
            ),
            Problem::Malformed(reason) => write!(f, "not a valid audit record: {reason}"),
            Problem::Checkpoint(problem) => problem.fmt(f),
        }
    }
}

/// Why a log did not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A record (or `head.json`) shows tampering or damage; `at` is the first such place.
    #[error("{at}: {problem}")]
    Tampered {
        /// The first bad record.
        at: Location,
        /// What is wrong with it.
        problem: Problem,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}; check the path and its permissions", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error from the OS.
        source: io::Error,
    },
    /// The directory holds no log.
    #[error(
        "no audit log in {}: no audit-NNNNNN.jsonl segment and no {ANCHOR_FILE}; check the \
         directory (config key audit.dir)",
        dir.display()
    )]
    NoLog {
        /// The directory given.
        dir: PathBuf,
    },
    /// The records chain and their checkpoints hold, but some are not covered by a signed
    /// checkpoint, and `--require-signed` was given.
    #[error(
        "records not covered by a signed checkpoint: {}. They chain correctly, but whoever \
         can write the files could have added them; compare them with the SIEM's copy{}",
        ranges(unsigned),
        crash_note(crash_tails)
    )]
    Unsigned {
        /// The uncovered ranges (first and last seq).
        unsigned: Vec<(u64, u64)>,
        /// Those that are the tail of a run killed or crashed before its next checkpoint.
        crash_tails: Vec<(u64, u64)>,
    },
    /// `--require-signed` without a key to check signatures with.
    #[error(
        "cannot require signed records without the audit public key: give --key FILE (the \
         PEM public key) or --jwks FILE|URL (the admin listener's \
         /.well-known/warden-audit-keys.json)"
    )]
    NoKey,
    /// The records chain and their checkpoints hold, but the last run has no `stop` record,
    /// no Warden holds the log, and it was required (`--require-signed`).
    #[error(
        "the last run {} has no stop record, and no Warden is writing this log: Warden was \
         killed or crashed at seq {head_seq}, or the log was cut back to there (to a \
         checkpoint, say). The records present chain and are signed; compare the log with \
         what was shipped off the host: --against-siem SINK, or --head SEQ:HASH with a head \
         kept elsewhere (docs/audit.md#a-cut-tail)",
        started(start)
    )]
    NotStopped {
        /// The last run's start record, if the log holds one.
        start: Option<u64>,
        /// Seq of the last record.
        head_seq: u64,
    },
    /// A process holds the log's lock, but its last signature is older than the live window
    /// a running Warden keeps, and signed records were required (`--require-signed`).
    #[error("{stale}")]
    StaleSignature {
        /// The last checkpoint and how old it is.
        stale: StaleSignature,
    },
    /// A process holds the log's lock, but its last run's start record is not signed and no
    /// signature within the live window accounts for it, and signed records were required
    /// (`--require-signed`).
    #[error("{unsigned}")]
    UnsignedStart {
        /// The start record and the log's last signature.
        unsigned: UnsignedStart,
    },
    /// The records chain correctly but there is no anchor to check the tail against.
    #[error(
        "{}: {ANCHOR_FILE} is missing, so records cut from the end cannot be detected; the \
         {records} records present chain correctly up to seq {head_seq}. If the log was \
         copied, copy {ANCHOR_FILE} with it",
        dir.display()
    )]
    AnchorMissing {
        /// The directory given.
        dir: PathBuf,
        /// Records that chain correctly.
        records: u64,
        /// Seq of the last of them.
        head_seq: u64,
    },
}

/// A live log (a process holds `audit.lock`) whose last signature is older than
/// `--live-window`: a running Warden signs at least every `audit.signing.checkpoint_interval`,
/// idle or not, so the log may have been cut back to that checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleSignature {
    /// Seq of the last checkpoint.
    pub seq: u64,
    /// How old it is.
    pub age: std::time::Duration,
    /// The `--live-window` it is older than.
    pub window: std::time::Duration,
}

impl fmt::Display for StaleSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a process holds this log's lock (audit.lock), so it should be a running Warden's, \
             and a running Warden signs a checkpoint at least every \
             audit.signing.checkpoint_interval (10s by default), idle or not; but this log's \
             last signature (the checkpoint at seq {}) is {} old, more than --live-window ({}): \
             the log may have been cut back to that checkpoint (or its Warden cannot write). \
             Verify a copy of the directory, with --head SEQ:HASH or --against-siem \
             (docs/audit.md#a-cut-tail)",
            self.seq,
            humantime::format_duration(whole_seconds(self.age)),
            humantime::format_duration(self.window)
        )
    }
}

/// A live log (a process holds `audit.lock`) whose last run's `start` record no checkpoint
/// covers, while its last signature is older than `--live-window` (or it has none): a Warden
/// signs its start record at once, in the same write, so such a start record was added by
/// someone else, as the start of a run they made up on a log cut back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsignedStart {
    /// Seq of the start record.
    pub start: u64,
    /// The last checkpoint's seq and age; `None` when the log holds none.
    pub last_signature: Option<(u64, std::time::Duration)>,
    /// The `--live-window` the signature is older than.
    pub window: std::time::Duration,
}

impl fmt::Display for UnsignedStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a process holds this log's lock (audit.lock), so it should be a running Warden's, \
             and a running Warden signs its run's start record at once (a checkpoint in the \
             same write); but the last run's start record (seq {}) is not signed, and ",
            self.start
        )?;
        match self.last_signature {
            Some((seq, age)) => write!(
                f,
                "the log's last signature (the checkpoint at seq {seq}) is {} old, more than \
                 --live-window ({})",
                humantime::format_duration(whole_seconds(age)),
                humantime::format_duration(self.window)
            )?,
            None => f.write_str("the log holds no signature at all")?,
        }
        f.write_str(
            ": the start record was added by someone else, to a log cut back (to an old \
             checkpoint, say). Verify a copy of the directory, with --head SEQ:HASH or \
             --against-siem (docs/audit.md#a-cut-tail)",
        )
    }
}

/// `d` without its fraction of a second (for messages).
fn whole_seconds(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(d.as_secs())
}

/// Where the last run started, in words.
pub fn started(start: &Option<u64>) -> String {
    match start {
        Some(seq) => format!("(started at seq {seq})"),
        None => "(no start record in the log)".to_owned(),
    }
}

/// `1-10, 12-12` as `seq 1 to 10, seq 12`.
pub fn ranges(ranges: &[(u64, u64)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                format!("seq {a}")
            } else {
                format!("seq {a} to {b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl VerifyError {
    /// The problem, when the log was read and found bad.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            VerifyError::Tampered { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What the error about unsigned records says of those that are a crashed run's tail.
fn crash_note(crash_tails: &[(u64, u64)]) -> String {
    if crash_tails.is_empty() {
        return String::new();
    }
    format!(
        ". {} the tail of a run that ended without its stop record (Warden killed or crashed \
         before its next checkpoint): once checked against the SIEM's copy, accept it with \
         --accept-unsigned-crash-tail",
        ranges(crash_tails)
    )
}
