//! Recovery on open: find the chain head in the last segment, set a torn tail aside.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::anchor::{self, ANCHOR_FILE, AnchorReadError};
use super::chain::Chain;
use super::error::{AuditError, Location, Problem, TruncationEvidence, VerifyError};
use super::record::{GENESIS, Hash};
use super::segment::list_segments;

/// Where appending resumes.
pub struct Recovered {
    /// Segment to append to (0: none exists yet).
    pub segment: u64,
    /// Its length once a torn tail is set aside.
    pub len: u64,
    /// Last (seq, hash) of the chain.
    pub head: (u64, Hash),
    /// A torn tail that was set aside.
    pub torn: Option<TornSetAside>,
}

/// A torn tail moved out of a segment.
pub struct TornSetAside {
    /// The segment it was cut from.
    pub segment: String,
    /// Its size.
    pub bytes: u64,
    /// The side file now holding it.
    pub moved_to: String,
}

fn io_error(action: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> AuditError {
    move |source| AuditError::Io {
        action,
        path,
        source,
    }
}

fn damaged(dir: &Path, source: VerifyError) -> AuditError {
    AuditError::Damaged {
        dir: dir.to_path_buf(),
        source,
    }
}

/// Reads the log in `dir` to find where appending resumes; sets a torn tail aside.
///
/// Only the last segment holding records is read; `warden audit verify` checks the rest.
pub fn recover(dir: &Path) -> Result<Recovered, AuditError> {
    let segments = list_segments(dir).map_err(io_error("list", dir.to_path_buf()))?;
    let anchor = match anchor::read(dir) {
        Ok(anchor) => anchor,
        Err(AnchorReadError::Io(source)) => {
            return Err(AuditError::Io {
                action: "read",
                path: dir.join(ANCHOR_FILE),
                source,
            });
        }
        Err(AnchorReadError::Malformed(reason)) => {
            tracing::warn!(dir = %dir.display(), %reason, "audit head anchor is unreadable; it will be rewritten from the log");
            None
        }
    };
    let Some(&(last_number, ref last_name)) = segments.last() else {
        if let Some(anchor) = anchor.filter(|a| a.seq > 0) {
            return Err(damaged(
                dir,
                VerifyError::Tampered {
                    at: Location::file(ANCHOR_FILE),
                    problem: Problem::Truncated(TruncationEvidence::AnchorAhead {
                        anchor_seq: anchor.seq,
                    }),
                },
            ));
        }
        return Ok(Recovered {
            segment: 0,
            len: 0,
            head: (0, GENESIS),
            torn: None,
        });
    };

    let mut chain = Chain::resume(anchor);
    let walked = chain
        .walk_segment(dir, last_name)
        .map_err(|e| damaged(dir, e))?;
    // A segment without complete records (just rotated, or only a torn write): the head is
    // in an earlier one, which must end cleanly.
    for (_, name) in segments.iter().rev().skip(1) {
        if chain.records() > 0 {
            break;
        }
        chain = Chain::resume(anchor);
        let earlier = chain.walk_segment(dir, name).map_err(|e| damaged(dir, e))?;
        if let Some(problem) = earlier.tail_problem(name) {
            return Err(damaged(dir, problem));
        }
    }
    let head = chain.head().unwrap_or((0, GENESIS));
    if let Some(anchor) = anchor
        && anchor.seq > head.0
    {
        return Err(damaged(
            dir,
            VerifyError::Tampered {
                at: chain
                    .last()
                    .cloned()
                    .unwrap_or_else(|| Location::file(ANCHOR_FILE)),
                problem: Problem::Truncated(TruncationEvidence::AnchorAhead {
                    anchor_seq: anchor.seq,
                }),
            },
        ));
    }
    let torn = match walked.unused_end() {
        Some(end) => Some(set_aside(dir, last_name, walked.complete_len, end)?),
        None => None,
    };
    Ok(Recovered {
        segment: last_number,
        len: walked.complete_len,
        head,
        torn,
    })
}

/// Moves the bytes from `keep` to `end` in segment `name` (a torn write, possibly with parts of
/// it beyond zeros) to `<name>.torn-<unix ms>`, then cuts the segment at `keep`.
fn set_aside(dir: &Path, name: &str, keep: u64, end: u64) -> Result<TornSetAside, AuditError> {
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io_error("open", path.clone()))?;
    let mut tail = Vec::with_capacity(usize::try_from(end - keep).unwrap_or(0));
    file.seek(SeekFrom::Start(keep))
        .and_then(|_| (&mut file).take(end - keep).read_to_end(&mut tail))
        .map_err(io_error("read the torn tail of", path.clone()))?;
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let moved_to = format!("{name}.torn-{millis}");
    let side = dir.join(&moved_to);
    let mut side_file = crate::private_files::options()
        .write(true)
        .create_new(true)
        .open(&side)
        .map_err(io_error("create", side.clone()))?;
    side_file
        .write_all(&tail)
        .and_then(|()| side_file.sync_all())
        .map_err(io_error("write", side.clone()))?;
    anchor::sync_dir(dir).map_err(io_error("sync", dir.to_path_buf()))?;
    file.set_len(keep)
        .and_then(|()| file.sync_all())
        .map_err(io_error("cut the torn tail of", path))?;
    tracing::warn!(segment = name, bytes = tail.len(), moved_to = %moved_to, "audit log had a torn last line (crash mid-write); it was set aside");
    Ok(TornSetAside {
        segment: name.to_owned(),
        bytes: tail.len() as u64,
        moved_to,
    })
}
