//! `warden audit verify DIR`: walks every segment, recomputes the chain, and names the first
//! record that was edited, deleted, reordered, cut off or garbled.

use std::fmt;
use std::path::Path;

use super::anchor::{self, ANCHOR_FILE, AnchorReadError};
use super::chain::Chain;
use super::error::{Location, Problem, TruncationEvidence, VerifyError};
use super::record::{GENESIS, Hash, to_hex};
use super::segment::list_segments;

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
        )
    }
}

/// Verifies the whole log in `dir`: every segment in order, then the head anchor.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
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
    let mut chain = Chain::from_genesis(anchor);
    for (_, name) in &segments {
        let walked = chain.walk_segment(dir, name)?;
        if let Some(problem) = walked.tail_problem(name) {
            return Err(problem);
        }
    }
    let (head_seq, head_hash): (u64, Hash) = chain.head().unwrap_or((0, GENESIS));
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
        Some(_) => Ok(VerifyReport {
            records: chain.records(),
            segments: segments.len() as u64,
            head_seq,
            head_hash,
        }),
    }
}
