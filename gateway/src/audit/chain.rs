//! The hash chain check shared by `verify` and recovery on open: each record's `seq` is one
//! more than the previous one's and its `prev` is the previous line's hash.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use super::anchor::Anchor;
use super::checkpoint::{Checkpoint, CheckpointProblem, Keys, RetiredSigner};
use super::error::{EditEvidence, Location, Problem, TruncationEvidence, VerifyError};
use super::event::AuditEvent;
use super::record::{ChainFields, ChainKind, GENESIS, Hash, hash_line};
use super::run_end::Runs;
use super::segment::{Line, Lines, Stray};

/// Walks records in order and finds the first one that breaks the chain.
pub struct Chain {
    /// The seq the next record must carry; `None` accepts any (resuming mid-log).
    next_seq: Option<u64>,
    /// The hash the next record's `prev` must carry.
    prev: Hash,
    /// The last accepted record.
    last: Option<Location>,
    /// Checked when the record with the anchor's seq goes by.
    anchor: Option<Anchor>,
    records: u64,
    /// Checkpoints checked on the way (`verify`), if they are.
    signatures: Option<Signatures>,
    /// What `retention` records on the way say was removed: each segment's last seq and
    /// hash, with the seq of the record that says so.
    removed: Vec<Removed>,
    /// Heads kept elsewhere (`--head`): each record's hash is checked when its seq goes by.
    heads: Vec<Anchor>,
    /// Where runs start and stop.
    runs: Runs,
}

/// A segment a `retention` record says was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Its last record's seq.
    pub last: u64,
    /// Its last record's hash.
    pub hash: Hash,
    /// The seq of the `retention` record.
    pub by: u64,
}

/// What the checkpoints on the way covered.
#[derive(Debug, Default)]
pub struct Signatures {
    /// The keys signatures are checked with; none: only the chain facts are.
    pub keys: Keys,
    /// The first seq no checkpoint covered yet (0: the first record's).
    next_unsigned: u64,
    /// Ranges of records no checkpoint covers, in order.
    pub unsigned: Vec<(u64, u64)>,
    /// Those of `unsigned` that are the tail of a run that ended without its stop record
    /// (killed or crashed before its next checkpoint), before the next run's writer began.
    pub crash_tails: Vec<(u64, u64)>,
    /// When the first record of the range not covered yet was written.
    first_unsigned_time: Option<std::time::SystemTime>,
    /// The seq of the last `stop` record seen.
    last_stop: Option<u64>,
    /// The seq of the last `start` record seen.
    pub last_start: Option<u64>,
    /// The seq of the last checkpoint seen, and when it was signed.
    pub last_checkpoint: Option<(u64, std::time::SystemTime)>,
    /// Checkpoints found.
    pub checkpoints: u64,
    /// The keys that signed checkpoints, in the order they took over, each with the seq of
    /// its first checkpoint: the last one signs now, the others are retired.
    key_since: Vec<(String, u64)>,
}

impl Signatures {
    /// Checks checkpoints against `keys`.
    pub fn new(keys: Keys) -> Signatures {
        Signatures {
            keys,
            ..Signatures::default()
        }
    }

    /// When the first record after the last checkpoint was written (`None` when every
    /// record is covered, or its time is unreadable).
    pub fn trailing_since(&self, head_seq: u64) -> Option<std::time::SystemTime> {
        self.unsigned
            .last()
            .filter(|(_, last)| *last == head_seq)
            .and(self.first_unsigned_time)
    }

    /// Ends the walk at `head_seq`: what no checkpoint covered at the end is unsigned.
    pub fn finish(&mut self, head_seq: u64) {
        if self.next_unsigned != 0 && self.next_unsigned <= head_seq {
            self.unsigned.push((self.next_unsigned, head_seq));
            self.next_unsigned = head_seq + 1;
        }
    }

    /// A record at `seq`, of top-level `kind`, went by.
    fn record(
        &mut self,
        seq: u64,
        prev: &Hash,
        kind: ChainKind,
        line: &[u8],
    ) -> Result<(), Problem> {
        if self.next_unsigned == 0 {
            self.next_unsigned = seq;
        }
        if seq == self.next_unsigned {
            self.first_unsigned_time = record_time(line);
        }
        if kind == ChainKind::System {
            match super::run_end::Boundary::of(line) {
                Some(super::run_end::Boundary::Stop) => self.last_stop = Some(seq),
                Some(super::run_end::Boundary::Start) => {
                    self.last_start = Some(seq);
                }
                None => {}
            }
        }
        if kind != ChainKind::Checkpoint {
            return Ok(());
        }
        let event: AuditEvent = serde_json::from_slice(line)
            .map_err(|e| Problem::Malformed(format!("checkpoint record: {e}")))?;
        let checkpoint = Checkpoint::of(&event).map_err(Problem::Checkpoint)?;
        checkpoint
            .check(seq, prev, &event.time, &self.keys)
            .map_err(Problem::Checkpoint)?;
        self.signed_by(&checkpoint.key_id, seq)
            .map_err(Problem::Checkpoint)?;
        if checkpoint.from > self.next_unsigned {
            let range = (self.next_unsigned, checkpoint.from - 1);
            self.unsigned.push(range);
            // Written before this checkpoint's writer began: the previous run's tail. A run
            // that stopped cleanly ends with its stop record and the checkpoint after it, so
            // what follows those was added while no Warden was writing; otherwise the run
            // was killed or crashed before it could sign these.
            let stopped = self
                .last_stop
                .is_some_and(|stop| stop + 2 == self.next_unsigned);
            if !stopped {
                self.crash_tails.push(range);
            }
        }
        self.next_unsigned = seq + 1;
        self.checkpoints += 1;
        self.last_checkpoint = Some((seq, event.time.0));
        Ok(())
    }
}

impl Signatures {
    /// A checkpoint at `seq` signed by `kid`: refused when a newer key took over from it.
    fn signed_by(&mut self, kid: &str, seq: u64) -> Result<(), CheckpointProblem> {
        match self.key_since.last() {
            Some((current, _)) if current == kid => Ok(()),
            Some((newer, since)) if self.key_since.iter().any(|(k, _)| k == kid) => {
                Err(CheckpointProblem::RetiredKey(Box::new(RetiredSigner {
                    kid: kid.to_owned(),
                    newer: newer.clone(),
                    since: *since,
                })))
            }
            _ => {
                self.key_since.push((kid.to_owned(), seq));
                Ok(())
            }
        }
    }
}

/// The `time` of a record's line.
fn record_time(line: &[u8]) -> Option<std::time::SystemTime> {
    #[derive(serde::Deserialize)]
    struct Time<'a> {
        time: &'a str,
    }
    serde_json::from_slice::<Time<'_>>(line)
        .ok()
        .and_then(|t| humantime::parse_rfc3339(t.time).ok())
}

/// What one record did to the chain.
enum Step {
    /// It continues the chain.
    Accepted,
    /// Its seq jumps ahead: records are missing here, or were moved further down.
    Gap {
        at: Location,
        expected: u64,
        got: u64,
    },
}

/// A segment's end, as read.
pub struct Walked {
    /// Bytes up to the end of the last complete line.
    pub complete_len: u64,
    /// Bytes after the last newline (a torn write), if any.
    pub torn: Option<TornTail>,
    /// Non-zero bytes in the zero-filled space after the data, if any.
    pub stray: Option<Stray>,
    /// The line number the next record would have had.
    pub next_line: u64,
}

impl Walked {
    /// Where the unused bytes after the last complete line end: the end of a torn line or of
    /// stray bytes, whichever is further; `None` when only zeros follow.
    pub fn unused_end(&self) -> Option<u64> {
        let torn_end = self.torn.map(|t| self.complete_len + t.bytes);
        torn_end.max(self.stray.map(|s| s.end))
    }

    /// Why segment `name` does not end cleanly, if it does not: a torn last line, or data
    /// after the zeros.
    pub fn tail_problem(&self, name: &str) -> Option<VerifyError> {
        let (line, evidence) = match (self.torn, self.stray) {
            (Some(torn), _) => (
                torn.line,
                TruncationEvidence::TornLine { bytes: torn.bytes },
            ),
            (None, Some(stray)) => (
                self.next_line,
                TruncationEvidence::DataAfterEnd {
                    offset: stray.offset,
                    bytes: stray.end - stray.offset,
                },
            ),
            (None, None) => return None,
        };
        Some(VerifyError::Tampered {
            at: Location::line(Arc::from(name), line),
            problem: Problem::Truncated(evidence),
        })
    }
}

/// Bytes after the last newline of a segment.
#[derive(Debug, Clone, Copy)]
pub struct TornTail {
    /// The line number they would have had.
    pub line: u64,
    /// How many bytes.
    pub bytes: u64,
}

impl Chain {
    /// A chain that must start at seq 1 with the genesis `prev` (a whole log).
    pub fn from_genesis(anchor: Option<Anchor>) -> Chain {
        Chain {
            next_seq: Some(1),
            prev: GENESIS,
            last: None,
            anchor,
            records: 0,
            signatures: None,
            removed: Vec::new(),
            heads: Vec::new(),
            runs: Runs::default(),
        }
    }

    /// Also checks that each of `heads` (kept elsewhere) is the hash of its seq's record.
    pub fn expecting(self, heads: Vec<Anchor>) -> Chain {
        Chain { heads, ..self }
    }

    /// Where runs started and stopped, along the records walked.
    pub fn runs(&self) -> &Runs {
        &self.runs
    }

    /// A whole log whose beginning retention removed: it starts at `seq`, chained to `prev`
    /// (what a `retention` record must then account for, see [`Chain::removed`]).
    pub fn signed_from(anchor: Option<Anchor>, keys: Keys, seq: u64, prev: Hash) -> Chain {
        Chain {
            next_seq: Some(seq),
            prev,
            ..Chain::signed(anchor, keys)
        }
    }

    /// The segments `retention` records walked so far say were removed.
    pub fn removed(&self) -> &[Removed] {
        &self.removed
    }

    /// A whole log whose checkpoints are checked with `keys`.
    pub fn signed(anchor: Option<Anchor>, keys: Keys) -> Chain {
        Chain {
            signatures: Some(Signatures::new(keys)),
            ..Chain::from_genesis(anchor)
        }
    }

    /// What the checkpoints covered, once the walk is done.
    pub fn signatures(&mut self) -> Option<&mut Signatures> {
        self.signatures.as_mut()
    }

    /// A chain that accepts its first record as given (one segment, read on open).
    pub fn resume(anchor: Option<Anchor>) -> Chain {
        Chain {
            next_seq: None,
            ..Chain::from_genesis(anchor)
        }
    }

    /// Records accepted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Seq and hash of the last accepted record, or `None` if none was.
    pub fn head(&self) -> Option<(u64, Hash)> {
        let seq = self.last.as_ref()?.seq?;
        Some((seq, self.prev))
    }

    /// The last accepted record.
    pub fn last(&self) -> Option<&Location> {
        self.last.as_ref()
    }

    fn push(&mut self, line: &[u8], mut at: Location) -> Result<Step, VerifyError> {
        let fields = ChainFields::parse(line).map_err(|reason| VerifyError::Tampered {
            at: at.clone(),
            problem: Problem::Malformed(reason),
        })?;
        at.seq = Some(fields.seq);
        if let Some(expected) = self.next_seq {
            if fields.seq > expected {
                return Ok(Step::Gap {
                    at,
                    expected,
                    got: fields.seq,
                });
            }
            if fields.seq < expected {
                return Err(VerifyError::Tampered {
                    at,
                    problem: Problem::Reordered {
                        expected,
                        expected_line: None,
                    },
                });
            }
            if fields.prev.0 != self.prev {
                return Err(match self.last.take() {
                    Some(last) => VerifyError::Tampered {
                        at: last,
                        problem: Problem::Edited(EditEvidence::NextPrev {
                            next_seq: fields.seq,
                        }),
                    },
                    None => VerifyError::Tampered {
                        at,
                        problem: Problem::Edited(EditEvidence::Genesis),
                    },
                });
            }
        }
        if let Some(signatures) = &mut self.signatures
            && let Err(problem) = signatures.record(fields.seq, &fields.prev.0, fields.kind, line)
        {
            return Err(VerifyError::Tampered { at, problem });
        }
        self.runs.record(fields.seq, fields.kind, line);
        if fields.kind == ChainKind::Retention {
            let event: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| VerifyError::Tampered {
                    at: at.clone(),
                    problem: Problem::Malformed(format!("retention record: {e}")),
                })?;
            let by = fields.seq;
            self.removed.extend(
                super::retention::removed_ends(&event["detail"])
                    .into_iter()
                    .map(|(last, hash)| Removed { last, hash, by }),
            );
        }
        let hash = hash_line(line);
        if let Some(anchor) = self.anchor
            && anchor.seq == fields.seq
            && anchor.hash.0 != hash
        {
            return Err(VerifyError::Tampered {
                at,
                problem: Problem::Edited(EditEvidence::Anchor),
            });
        }
        if self
            .heads
            .iter()
            .any(|head| head.seq == fields.seq && head.hash.0 != hash)
        {
            return Err(VerifyError::Tampered {
                at,
                problem: Problem::Edited(EditEvidence::KnownHead),
            });
        }
        let Some(next_seq) = fields.seq.checked_add(1) else {
            return Err(VerifyError::Tampered {
                at,
                problem: Problem::Malformed("seq is out of range".to_owned()),
            });
        };
        self.next_seq = Some(next_seq);
        self.prev = hash;
        self.last = Some(at);
        self.records += 1;
        Ok(Step::Accepted)
    }

    /// Checks every complete line of segment `name` in `dir`; stops at the first bad record.
    pub fn walk_segment(&mut self, dir: &Path, name: &str) -> Result<Walked, VerifyError> {
        let path = dir.join(name);
        let io_error = |source| VerifyError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_error)?;
        let file_name: Arc<str> = Arc::from(name);
        let mut lines = Lines::new(file);
        let mut torn = None;
        while let Some((line_no, line)) = lines.next_line().map_err(io_error)? {
            let bytes = match line {
                Line::Complete(bytes) => bytes,
                Line::Torn(bytes) => {
                    torn = Some(TornTail {
                        line: line_no,
                        bytes: bytes.len() as u64,
                    });
                    break;
                }
            };
            let at = Location::line(file_name.clone(), line_no);
            if let Step::Gap { at, expected, got } = self.push(bytes, at)? {
                let problem = classify_gap(&mut lines, expected, got).map_err(io_error)?;
                return Err(VerifyError::Tampered { at, problem });
            }
        }
        let stray = lines.stray().map_err(io_error)?;
        Ok(Walked {
            complete_len: lines.complete_len(),
            torn,
            stray,
            next_line: lines.line_no() + u64::from(torn.is_none()),
        })
    }
}

/// A seq jumped from `expected` to `got`: the missing records are either further down this
/// segment (reordered) or gone (deleted).
fn classify_gap(lines: &mut Lines, expected: u64, got: u64) -> std::io::Result<Problem> {
    while let Some((line_no, line)) = lines.next_line()? {
        let Line::Complete(bytes) = line else { break };
        if let Ok(fields) = ChainFields::parse(bytes)
            && (expected..got).contains(&fields.seq)
        {
            return Ok(Problem::Reordered {
                expected,
                expected_line: Some(line_no),
            });
        }
    }
    Ok(Problem::Deleted {
        first: expected,
        last: got - 1,
    })
}
