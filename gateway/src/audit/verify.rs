//! `warden audit verify DIR`: walks every segment, recomputes the chain, and names the first
//! record that was edited, deleted, reordered, cut off or garbled.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::anchor::{self, ANCHOR_FILE, Anchor, AnchorReadError};
use super::chain::{Chain, Signatures};
use super::checkpoint::Keys;
use super::error::{
    Location, Problem, StaleSignature, TruncationEvidence, UnsignedStart, VerifyError,
};
use super::log::in_use;
use super::record::{ChainFields, GENESIS, Hash, to_hex};
use super::run_end::LastRun;
use super::segment::{Line, Lines, list_segments};

/// How to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The audit public keys checkpoints are checked with; none: only their chain facts are
    /// checked, not their signatures.
    pub keys: Keys,
    /// Fail when records are not covered by a signed checkpoint (and without keys).
    pub require_signed: bool,
    /// Fail when the last run has no `stop` record and no Warden is writing the log (the
    /// CLI's `--require-signed` sets it too).
    pub require_stopped: bool,
    /// With `require_signed`, accept the unsigned tails of runs that ended without their stop
    /// record (killed or crashed): reported, not failed.
    pub accept_crash_tails: bool,
    /// With `require_signed`, on a log a process is writing (it holds `audit.lock`): the
    /// records after the last checkpoint pass while the oldest of them is at most this old
    /// (a live writer signs them within `audit.signing.checkpoint_interval`); zero: never.
    pub live_window: Duration,
    /// Heads kept elsewhere (shipped to a SIEM, printed by an earlier verify): the log must
    /// still hold each, with the same hash.
    pub heads: Vec<Anchor>,
}

/// An intact log, as verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records in the log.
    pub records: u64,
    /// Segment files walked.
    pub segments: u64,
    /// Seq of the last record (0 for an empty log).
    pub head_seq: u64,
    /// Hash of the last record's line (zeros for an empty log).
    pub head_hash: [u8; 32],
    /// Signed checkpoints found (their signatures verified when `signatures_checked`).
    pub checkpoints: u64,
    /// Whether checkpoint signatures were checked (a key was given).
    pub signatures_checked: bool,
    /// Records no checkpoint covers: first and last seq of each range.
    pub unsigned: Vec<(u64, u64)>,
    /// Those of `unsigned` that are the tail of a run killed or crashed before its next
    /// checkpoint.
    pub crash_tails: Vec<(u64, u64)>,
    /// On a live log, the records after the last checkpoint were within `live_window`.
    pub live_tail: Option<(u64, u64)>,
    /// On a live log, its last signature is older than `live_window` (a warning here; an
    /// error with `require_signed`).
    pub stale_signature: Option<StaleSignature>,
    /// On a live log, its last run's start record is not signed and no signature within
    /// `live_window` accounts for it (a warning here; an error with `require_signed`).
    pub unsigned_start: Option<UnsignedStart>,
    /// Retention removed the log's beginning: the last seq removed, and the seq of the
    /// `retention` record that says so.
    pub removed: Option<(u64, u64)>,
    /// How the last run ended.
    pub last_run: LastRun,
    /// Heads given (`heads`) found in the log with their hash.
    pub heads_checked: u64,
    /// Heads given that retention removed, so that they could not be checked.
    pub heads_removed: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "audit log intact: {} records in {} segments, head seq {} hash {}",
            self.records,
            self.segments,
            self.head_seq,
            to_hex(&self.head_hash)
        )?;
        if let Some((last, by)) = self.removed {
            write!(
                f,
                "; seq 1 to {last} removed by retention (retention record seq {by})"
            )?;
        }
        write!(f, "; {} signed checkpoints", self.checkpoints)?;
        if !self.signatures_checked {
            f.write_str(
                " (signatures NOT checked: give --key or --jwks with the audit public key)",
            )?;
        }
        if self.unsigned.is_empty() {
            f.write_str(", every record covered")?;
        } else {
            write!(
                f,
                "; not covered by a checkpoint (unsigned): {}",
                super::error::ranges(&self.unsigned)
            )?;
        }
        if !self.crash_tails.is_empty() {
            write!(
                f,
                "; of which the tail of a run killed or crashed before its next checkpoint \
                 (its hash chain holds, no signature covers it): {}",
                super::error::ranges(&self.crash_tails)
            )?;
        }
        if let Some(tail) = self.live_tail {
            write!(
                f,
                "; of which written in the last moments of the live run, not signed yet: {}",
                super::error::ranges(&[tail])
            )?;
        }
        if self.heads_checked > 0 {
            write!(f, "; {} heads given found", self.heads_checked)?;
        }
        if self.heads_removed > 0 {
            write!(
                f,
                "; {} heads given not checked: retention removed their records",
                self.heads_removed
            )?;
        }
        if let Some(stale) = self.stale_signature {
            write!(f, "\nWARNING: {stale}")?;
        }
        if let Some(unsigned) = self.unsigned_start {
            write!(f, "\nWARNING: {unsigned}")?;
        }
        match self.last_run {
            LastRun::Stopped { stop } => {
                write!(f, "; the last run ended with its stop record (seq {stop})")
            }
            LastRun::Live => f.write_str(
                "; live: a process holds the log's lock (audit.lock), so its last run has not \
                 ended and how it ends is not proven here; for evidence verify a copy of the \
                 directory, with --head or --against-siem (docs/audit.md#a-cut-tail)",
            ),
            LastRun::Open { start } => write!(
                f,
                "\nWARNING: the last run {} has no stop record and no Warden is writing this \
                 log: Warden was killed or crashed, or the log was cut back (to a checkpoint, \
                 say). Compare it with what was shipped off the host: --against-siem, or \
                 --head SEQ:HASH (docs/audit.md#a-cut-tail)",
                super::error::started(&start)
            ),
        }
    }
}

/// Verifies the whole log in `dir`: every segment in order, then the head anchor; checkpoints
/// are checked for what they cover, not for their signatures.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    verify_with(dir, &VerifyOptions::default())
}

/// Verifies the whole log in `dir` as [`verify`] does, with checkpoint signatures checked
/// against `options.keys`, and unsigned records refused with `options.require_signed`.
pub fn verify_with(dir: &Path, options: &VerifyOptions) -> Result<VerifyReport, VerifyError> {
    if options.require_signed && options.keys.is_empty() {
        return Err(VerifyError::NoKey);
    }
    let segments = list_segments(dir).map_err(|source| VerifyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let anchor = match anchor::read(dir) {
        Ok(anchor) => anchor,
        Err(AnchorReadError::Io(source)) => {
            return Err(VerifyError::Io {
                path: dir.join(ANCHOR_FILE),
                source,
            });
        }
        Err(AnchorReadError::Malformed(reason)) => {
            return Err(VerifyError::Tampered {
                at: Location::file(ANCHOR_FILE),
                problem: Problem::Malformed(reason),
            });
        }
    };
    if segments.is_empty() && anchor.is_none() {
        return Err(VerifyError::NoLog {
            dir: dir.to_path_buf(),
        });
    }
    // A log whose first record is not seq 1 must be one retention shortened: walk it from
    // there, and find the `retention` record that removed what precedes it.
    let start = match segments.first() {
        Some((_, name)) => first_record(dir, name)?,
        None => None,
    };
    let mut chain = match start {
        Some((seq, prev, _)) if seq > 1 => {
            Chain::signed_from(anchor, options.keys.clone(), seq, prev)
        }
        _ => Chain::signed(anchor, options.keys.clone()),
    }
    .expecting(options.heads.clone());
    for (_, name) in &segments {
        let walked = chain.walk_segment(dir, name)?;
        if let Some(problem) = walked.tail_problem(name) {
            return Err(problem);
        }
    }
    let (head_seq, head_hash): (u64, Hash) = chain.head().unwrap_or((0, GENESIS));
    let (checkpoints, unsigned, crash_tails, trailing_since, signed) = match chain.signatures() {
        Some(signatures) => {
            signatures.finish(head_seq);
            let trailing_since = signatures.trailing_since(head_seq);
            (
                signatures.checkpoints,
                std::mem::take(&mut signatures.unsigned),
                std::mem::take(&mut signatures.crash_tails),
                trailing_since,
                Some(LastSigned::of(signatures)),
            )
        }
        None => (0, Vec::new(), Vec::new(), None, None),
    };
    // With keys, only a retention record under a valid checkpoint accounts for a removal: an
    // unsigned one could have been added by whoever deleted the segments.
    let signed_only = (!options.keys.is_empty()).then_some(unsigned.as_slice());
    let first_seq = start.as_ref().map_or(1, |(seq, _, _)| *seq);
    let removed = match start {
        Some((seq, prev, at)) if seq > 1 => Some(accounted(&chain, seq, &prev, at, signed_only)?),
        _ => None,
    };
    let heads_removed = options.heads.iter().filter(|h| h.seq < first_seq).count() as u64;
    let heads_ahead = options
        .heads
        .iter()
        .map(|h| h.seq)
        .filter(|&seq| seq > head_seq)
        .max();
    let live = in_use(dir).map_err(|source| VerifyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let last_run = chain.runs().last(live);
    // A live writer signs what it wrote within its checkpoint interval: only a recent
    // trailing range passes as not signed yet (a lock proves nothing more).
    let live_tail = unsigned
        .last()
        .copied()
        .filter(|(_, last)| live && *last == head_seq)
        .filter(|_| {
            trailing_since.is_some_and(|since| {
                SystemTime::now().duration_since(since).unwrap_or_default() <= options.live_window
            })
        });
    // It signs its run's start record at once: a live run whose start record no checkpoint
    // covers, with no signature within the window to account for it, was made up.
    let signed = signed.filter(|_| live);
    let unsigned_start = signed
        .and_then(|signed| signed.unsigned_start(options.live_window, !options.keys.is_empty()));
    // It also signs at least that often while idle: a live log whose last signature is old
    // may have been cut back to it (a log cut back to a checkpoint has no unsigned tail).
    let stale_signature = signed
        .filter(|_| unsigned_start.is_none())
        .and_then(|signed| signed.stale(options.live_window));
    let failing: Vec<(u64, u64)> = unsigned
        .iter()
        .copied()
        .filter(|range| Some(*range) != live_tail)
        .filter(|range| !(options.accept_crash_tails && crash_tails.contains(range)))
        .collect();
    match anchor {
        None => Err(VerifyError::AnchorMissing {
            dir: dir.to_path_buf(),
            records: chain.records(),
            head_seq,
        }),
        Some(anchor) if anchor.seq > head_seq => Err(VerifyError::Tampered {
            at: chain
                .last()
                .cloned()
                .unwrap_or_else(|| Location::file(ANCHOR_FILE)),
            problem: Problem::Truncated(TruncationEvidence::AnchorAhead {
                anchor_seq: anchor.seq,
            }),
        }),
        Some(_) if heads_ahead.is_some() => Err(VerifyError::Tampered {
            at: chain
                .last()
                .cloned()
                .unwrap_or_else(|| Location::file(ANCHOR_FILE)),
            problem: Problem::Truncated(TruncationEvidence::KnownHeadAhead {
                seq: heads_ahead.unwrap_or_default(),
            }),
        }),
        Some(_) if options.require_signed && !failing.is_empty() => Err(VerifyError::Unsigned {
            crash_tails: crash_tails
                .iter()
                .copied()
                .filter(|range| failing.contains(range))
                .collect(),
            unsigned: failing,
        }),
        Some(_)
            if options.require_signed
                && let Some(unsigned) = unsigned_start =>
        {
            Err(VerifyError::UnsignedStart { unsigned })
        }
        Some(_)
            if options.require_signed
                && let Some(stale) = stale_signature =>
        {
            Err(VerifyError::StaleSignature { stale })
        }
        Some(_) if options.require_stopped && matches!(last_run, LastRun::Open { .. }) => {
            Err(VerifyError::NotStopped {
                start: match last_run {
                    LastRun::Open { start } => start,
                    _ => None,
                },
                head_seq,
            })
        }
        Some(_) => Ok(VerifyReport {
            records: chain.records(),
            segments: segments.len() as u64,
            head_seq,
            head_hash,
            checkpoints,
            signatures_checked: !options.keys.is_empty(),
            unsigned,
            crash_tails,
            live_tail,
            stale_signature,
            unsigned_start,
            removed,
            last_run,
            heads_checked: options.heads.len() as u64 - heads_removed,
            heads_removed,
        }),
    }
}

/// When the log was last signed, and where its last run began.
#[derive(Debug, Clone, Copy)]
struct LastSigned {
    /// The last checkpoint's seq and time; `None` when the log holds none.
    checkpoint: Option<(u64, SystemTime)>,
    /// The seq of the last run's `start` record, if the log holds one.
    start: Option<u64>,
}

impl LastSigned {
    /// What the walk's checkpoints and start records say.
    fn of(signatures: &Signatures) -> LastSigned {
        LastSigned {
            checkpoint: signatures.last_checkpoint,
            start: signatures.last_start,
        }
    }

    /// The last checkpoint's seq and age.
    fn last(&self) -> Option<(u64, Duration)> {
        self.checkpoint.map(|(seq, at)| {
            let age = SystemTime::now().duration_since(at).unwrap_or_default();
            (seq, age)
        })
    }

    /// On a live log: a running Warden signs at least every checkpoint interval, idle or
    /// not, so its last signature is within `window`.
    fn stale(&self, window: Duration) -> Option<StaleSignature> {
        let (seq, age) = self.last()?;
        (age > window).then_some(StaleSignature { seq, age, window })
    }

    /// On a live log: a running Warden signs its run's start record at once, so a start
    /// record after the last checkpoint is accounted for only by a signature within
    /// `window` (a verify racing the write that holds both). A log without any checkpoint
    /// is held to it only when signatures are expected (`keys` given): an unsigned Warden
    /// signs nothing.
    fn unsigned_start(&self, window: Duration, keys: bool) -> Option<UnsignedStart> {
        let start = self.start?;
        if self.checkpoint.is_some_and(|(seq, _)| seq > start)
            || (self.checkpoint.is_none() && !keys)
        {
            return None;
        }
        let last_signature = self.last();
        if last_signature.is_some_and(|(_, age)| age <= window) {
            return None;
        }
        Some(UnsignedStart {
            start,
            last_signature,
            window,
        })
    }
}

/// The first record of segment `name`: its seq, its `prev`, and where it is.
fn first_record(dir: &Path, name: &str) -> Result<Option<(u64, Hash, Location)>, VerifyError> {
    let path = dir.join(name);
    let io_error = |source| VerifyError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::open(&path).map_err(io_error)?;
    let mut lines = Lines::new(file);
    let Some((line_no, Line::Complete(bytes))) = lines.next_line().map_err(io_error)? else {
        return Ok(None);
    };
    let at = Location::line(std::sync::Arc::from(name), line_no);
    // A malformed first line is reported by the walk, where it is read again.
    Ok(ChainFields::parse(bytes)
        .ok()
        .map(|fields| (fields.seq, fields.prev.0, at)))
}

/// The log starts at `seq`, chained to `prev`: a `retention` record must name a removed
/// segment that ended at `seq - 1` with that hash. Returns (`seq - 1`, the record's seq).
/// With `signed_only` (the unsigned ranges), the record must not be in one of them.
fn accounted(
    chain: &Chain,
    seq: u64,
    prev: &Hash,
    at: Location,
    signed_only: Option<&[(u64, u64)]>,
) -> Result<(u64, u64), VerifyError> {
    let unsigned =
        |by: u64| signed_only.is_some_and(|u| u.iter().any(|(a, b)| (*a..=*b).contains(&by)));
    let removed: Vec<_> = chain.removed().iter().filter(|r| !unsigned(r.by)).collect();
    if let Some(r) = removed
        .iter()
        .find(|r| r.last + 1 == seq && r.hash == *prev)
    {
        return Ok((r.last, r.by));
    }
    // What retention removed legitimately ends before what is missing.
    let first = removed
        .iter()
        .filter(|r| r.last < seq)
        .map(|r| r.last + 1)
        .max()
        .unwrap_or(1);
    Err(VerifyError::Tampered {
        at: Location {
            seq: Some(seq),
            ..at
        },
        problem: Problem::Deleted {
            first,
            last: seq - 1,
        },
    })
}
