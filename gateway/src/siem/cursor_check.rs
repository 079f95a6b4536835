//! Whether a sink's cursor belongs to the log it is about to resume in: the line that ends
//! at the cursor's offset is the record it acknowledged (same seq, same hash), or, when
//! retention removed that segment, the log goes on after it (the next segment's first record
//! comes later and chains to it when it is the very next one). A cursor left over from
//! another log (one moved aside without `cursors/`) fails here, and the sink ships from the
//! oldest record kept instead of skipping the new log's first records.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cursor::{Cursor, CursorError, CursorKey, Loaded};
use crate::audit::read::{segment_file, segments};

/// The most bytes one record's line is looked for in, backwards from the cursor's offset.
const MAX_LINE: u64 = 64 * 1024 * 1024;

/// What a sink's saved cursor is worth against the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// No cursor saved: the sink ships from the oldest record kept.
    Missing,
    /// Written by Warden with this audit key and matching the log: the sink's destination
    /// acknowledged every record up to its `seq`, and shipping resumes after it.
    Trusted(Cursor),
    /// Not to be trusted: the seq it claims, and why.
    Untrusted { claimed: u64, why: String },
}

/// The saved cursor of `sink` in the audit directory `dir`, judged with `key` (`None`: an
/// unsigned log, whose cursors are never trusted): authentic and matching the log, or not.
pub fn saved(dir: &Path, sink: &str, key: Option<&CursorKey>) -> Result<Saved, CursorError> {
    Ok(match Cursor::load(dir, sink, key)? {
        Loaded::Missing => Saved::Missing,
        Loaded::Authentic(cursor) => match check(dir, &cursor) {
            Ok(()) => Saved::Trusted(cursor),
            Err(why) => Saved::Untrusted {
                claimed: cursor.seq,
                why: format!("it does not match the audit log: {why}"),
            },
        },
        Loaded::Unauthentic(cursor) => Saved::Untrusted {
            claimed: cursor.seq,
            why: "it was not written by Warden with this audit key (no valid mac)".to_owned(),
        },
    })
}

/// Checks `cursor` against the log in `dir`; `Err` says why it does not match.
pub fn check(dir: &Path, cursor: &Cursor) -> Result<(), String> {
    if cursor.seq == 0 {
        return Ok(());
    }
    let hash = hex::decode(&cursor.hash)
        .ok()
        .filter(|h| h.len() == 32)
        .ok_or("it names no record hash")?;
    let name = segment_file(cursor.segment);
    match File::open(dir.join(&name)) {
        Ok(file) => {
            let line = line_ending_at(file, cursor.offset)
                .map_err(|e| format!("cannot read {name}: {e}"))?
                .ok_or_else(|| format!("{name} has no record ending at byte {}", cursor.offset))?;
            if Sha256::digest(&line)[..] != hash[..] {
                return Err(format!(
                    "the record ending at byte {} of {name} is not the one it acknowledged",
                    cursor.offset
                ));
            }
            let seq = serde_json::from_slice::<Value>(&line)
                .ok()
                .and_then(|v| v["seq"].as_u64());
            if seq != Some(cursor.seq) {
                return Err(format!(
                    "the record ending at byte {} of {name} is not seq {}",
                    cursor.offset, cursor.seq
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => after_removed(dir, cursor, &hash),
        Err(e) => Err(format!("cannot read {name}: {e}")),
    }
}

/// The cursor's segment is gone: the log must go on after it.
fn after_removed(dir: &Path, cursor: &Cursor, hash: &[u8]) -> Result<(), String> {
    let name = segment_file(cursor.segment);
    let list = segments(dir).map_err(|e| format!("cannot list the audit log: {e}"))?;
    if cursor.segment == 0 || list.iter().any(|(n, _)| *n < cursor.segment) {
        return Err(format!("{name} is not in the log but older segments are"));
    }
    let Some((_, next)) = list.iter().find(|(n, _)| *n > cursor.segment) else {
        return Err(format!("the log ends before {name}"));
    };
    let mut line = Vec::new();
    File::open(dir.join(next))
        .and_then(|f| BufReader::new(f).read_until(b'\n', &mut line))
        .map_err(|e| format!("cannot read {next}: {e}"))?;
    let first: Value = serde_json::from_slice(line.trim_ascii_end())
        .map_err(|e| format!("{next} does not begin with a record: {e}"))?;
    let seq = first["seq"].as_u64().unwrap_or(0);
    if seq <= cursor.seq {
        return Err(format!(
            "{next} begins at seq {seq}, not after seq {}",
            cursor.seq
        ));
    }
    let prev = first["prev"].as_str().and_then(|p| hex::decode(p).ok());
    if seq == cursor.seq + 1 && prev.as_deref() != Some(hash) {
        return Err(format!(
            "{next} begins with seq {seq}, which does not chain to the record it acknowledged"
        ));
    }
    Ok(())
}

/// The line (without its newline) that ends exactly at `offset`; `None` when no complete
/// record line ends there.
fn line_ending_at(mut file: File, offset: u64) -> std::io::Result<Option<Vec<u8>>> {
    if offset == 0 || file.metadata()?.len() < offset {
        return Ok(None);
    }
    let mut window = 4096u64;
    loop {
        let start = offset.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0; (offset - start) as usize];
        file.read_exact(&mut buf)?;
        if buf.pop() != Some(b'\n') {
            return Ok(None);
        }
        match buf.iter().rposition(|&b| b == b'\n') {
            Some(i) => return Ok(Some(buf.split_off(i + 1)).filter(|l| valid(l))),
            None if start == 0 => return Ok(Some(buf).filter(|l| valid(l))),
            None if window >= MAX_LINE => return Ok(None),
            None => window *= 8,
        }
    }
}

fn valid(line: &[u8]) -> bool {
    !line.is_empty() && !line.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::audit::config::AuditConfig;
    use crate::audit::event::{AuditEvent, EventKind};
    use crate::siem::spool::{Entry, Spool};

    /// A closed log of `n` records in segments of 1500 bytes, and every record's cursor.
    async fn log(dir: &Path, n: usize) -> Vec<Cursor> {
        let config = AuditConfig {
            segment_bytes: 1500,
            ..AuditConfig::default()
        };
        let log = AuditLog::open(dir, &config).unwrap();
        for _ in 0..n {
            log.append(AuditEvent::now(EventKind::System))
                .await
                .unwrap();
        }
        log.close().await.unwrap();
        let mut spool = Spool::new(dir, "s", &Cursor::default());
        let mut all = Vec::new();
        spool
            .read(n as u64, usize::MAX, usize::MAX, &mut all)
            .unwrap();
        all.iter().map(Entry::cursor).collect()
    }

    #[tokio::test]
    async fn a_cursor_of_this_log_matches_even_once_its_segment_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let cursors = log(dir.path(), 30).await;
        for c in &cursors {
            check(dir.path(), c).unwrap();
        }
        // Retention removes the first segment: a cursor at its last record, or within it,
        // still belongs to this log (what was after it is missing, not the cursor wrong).
        let first = cursors[0].segment;
        let last_of_first = cursors.iter().rfind(|c| c.segment == first).unwrap();
        std::fs::remove_file(dir.path().join(segment_file(first))).unwrap();
        check(dir.path(), last_of_first).unwrap();
        check(dir.path(), &cursors[0]).unwrap();
    }

    #[tokio::test]
    async fn a_cursor_of_another_log_does_not_match() {
        let old = tempfile::tempdir().unwrap();
        let new = tempfile::tempdir().unwrap();
        let stale = log(old.path(), 30).await;
        let _ = log(new.path(), 5).await;
        // Beyond the new log's end, and within it (same seq, other records).
        let e = check(new.path(), stale.last().unwrap()).unwrap_err();
        assert!(e.contains("is not in the log"), "{e}");
        let e = check(new.path(), &stale[2]).unwrap_err();
        assert!(e.contains("not the one it acknowledged"), "{e}");
        // An offset in the middle of a line.
        let mid = Cursor {
            offset: stale[2].offset - 3,
            ..stale[2].clone()
        };
        assert!(check(old.path(), &mid).is_err());
        // A segment the log does not hold while it holds older ones.
        let later = Cursor {
            segment: 99,
            ..stale[2].clone()
        };
        assert!(check(old.path(), &later).is_err());
    }
}
