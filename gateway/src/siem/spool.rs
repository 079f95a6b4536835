//! The audit log read as a sink's spool: from the sink's cursor, segment after segment
//! (following rotation), never past the durable head (`head.json`), a bounded batch at a
//! time. A cursor whose segment retention removed resumes at the next segment, and records
//! already acknowledged (seq at or below the cursor's) are skipped wherever reading starts.
//! Records a sink had not acknowledged that are no longer in the log (removed with
//! `when_full: delete_unshipped`, or by hand) are collected for the shipper to record.
//! Check a saved cursor against the log (`cursor_check`) before resuming from it.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cursor::Cursor;
use crate::audit::read::{Record, segment_file, segments};

/// One record read from the spool, with where it ends.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The record and its id.
    pub record: Record,
    /// Its seq.
    pub seq: u64,
    /// The segment it is in.
    pub segment: u64,
    /// The byte offset after its line.
    pub end: u64,
    /// Its line's length.
    pub bytes: usize,
}

impl Entry {
    /// The cursor that acknowledges this record.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            seq: self.seq,
            segment: self.segment,
            offset: self.end,
            hash: self.record.id.clone(),
            time: self.record.value["time"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            mac: String::new(),
        }
    }

    /// For the sinks' tests: [`hostile_record`](crate::audit::shape::hostile_record) as the
    /// spool's third entry.
    #[cfg(test)]
    pub fn hostile() -> Entry {
        Entry {
            record: crate::audit::shape::hostile_record(),
            seq: 3,
            segment: 1,
            end: 10,
            bytes: 10,
        }
    }
}

/// Why the spool cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot read the audit log in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} at byte {offset}: not an audit record ({reason}); run `warden audit verify`")]
    Malformed {
        file: String,
        offset: u64,
        reason: String,
    },
}

/// A sink's reading position.
pub struct Spool {
    dir: PathBuf,
    sink: String,
    /// The segment read now (0 until the first one is found).
    segment: u64,
    /// The byte offset of the next line in it.
    offset: u64,
    /// The seq of the next record to hand out.
    next_seq: u64,
    /// No record read yet and no position known: the first record read starts the sink.
    fresh: bool,
    /// Ranges of seqs (first, last) found missing since the last `take_missing`.
    missing: Vec<(u64, u64)>,
}

impl Spool {
    /// A spool for `sink` in audit directory `dir`, positioned after `cursor`.
    pub fn new(dir: &Path, sink: &str, cursor: &Cursor) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            sink: sink.to_owned(),
            segment: cursor.segment,
            offset: cursor.offset,
            next_seq: cursor.seq + 1,
            fresh: cursor.seq == 0,
            missing: Vec::new(),
        }
    }

    /// The ranges of records this sink had not acknowledged that reading found gone.
    pub fn take_missing(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.missing)
    }

    /// The durable head: the last seq on disk (0 when the log has none yet).
    pub fn durable_head(&self) -> Result<u64, SpoolError> {
        crate::audit::read::durable_head(&self.dir)
            .map(Option::unwrap_or_default)
            .map_err(|source| SpoolError::Io {
                path: self.dir.join("head.json"),
                source,
            })
    }

    /// The seq of the next record this spool hands out.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Puts the position back to just after `cursor` (a batch that will be read again).
    pub fn rewind(&mut self, cursor: &Cursor) {
        *self = Spool::new(&self.dir, &self.sink, cursor);
    }

    /// Appends to `out` the records after the position, up to seq `head`, until `out` holds
    /// `max_events` records or `max_bytes` bytes of lines.
    pub fn read(
        &mut self,
        head: u64,
        max_events: usize,
        max_bytes: usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), SpoolError> {
        let mut bytes: usize = out.iter().map(|e| e.bytes).sum();
        while out.len() < max_events && bytes < max_bytes && self.next_seq <= head {
            if !self.find_segment()? {
                return Ok(());
            }
            let read = self.read_segment(head, max_events, max_bytes, &mut bytes, out)?;
            if read == SegmentEnd::Limit {
                return Ok(());
            }
            // The end of this segment's data with durable records still to come: they are in
            // the next segment once it exists (the writer finishes a segment before it starts
            // the next one).
            if !self.next_segment()? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Makes sure `self.segment` names an existing segment: the first one when none is
    /// chosen, the next one when retention removed it. `false` when the log has none.
    fn find_segment(&mut self) -> Result<bool, SpoolError> {
        if self.segment > 0 && self.dir.join(segment_file(self.segment)).exists() {
            return Ok(true);
        }
        let list = segments(&self.dir).map_err(|source| SpoolError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let Some(&(number, _)) = list.iter().find(|(n, _)| *n >= self.segment) else {
            return Ok(false);
        };
        if self.segment > 0 && number != self.segment {
            tracing::warn!(
                sink = %self.sink,
                from = %segment_file(self.segment),
                to = %segment_file(number),
                "the segment this sink's cursor points into was removed; resuming at the next segment"
            );
        }
        if number != self.segment {
            self.segment = number;
            self.offset = 0;
        }
        Ok(true)
    }

    /// Moves to the segment after this one, if there is one.
    fn next_segment(&mut self) -> Result<bool, SpoolError> {
        let list = segments(&self.dir).map_err(|source| SpoolError::Io {
            path: self.dir.clone(),
            source,
        })?;
        match list.iter().find(|(n, _)| *n > self.segment) {
            Some(&(number, _)) => {
                self.segment = number;
                self.offset = 0;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn read_segment(
        &mut self,
        head: u64,
        max_events: usize,
        max_bytes: usize,
        bytes: &mut usize,
        out: &mut Vec<Entry>,
    ) -> Result<SegmentEnd, SpoolError> {
        let name = segment_file(self.segment);
        let path = self.dir.join(&name);
        let io = |source| SpoolError::Io {
            path: path.clone(),
            source,
        };
        let mut file = match File::open(&path) {
            Ok(f) => f,
            // Removed between listing and opening: the next pass finds the next segment.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SegmentEnd::Data),
            Err(e) => return Err(io(e)),
        };
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut line = Vec::new();
        loop {
            if out.len() >= max_events || *bytes >= max_bytes || self.next_seq > head {
                return Ok(SegmentEnd::Limit);
            }
            // The data ends at the first NUL (space the writer reserved) or at a line not
            // finished yet.
            let buf = reader.fill_buf().map_err(io)?;
            if buf.first().is_none_or(|&b| b == 0) {
                return Ok(SegmentEnd::Data);
            }
            line.clear();
            reader.read_until(b'\n', &mut line).map_err(io)?;
            if line.last() != Some(&b'\n') || line.contains(&0) {
                return Ok(SegmentEnd::Data);
            }
            line.pop();
            let value: Value = match serde_json::from_slice(&line) {
                Ok(v) => v,
                Err(e) => {
                    return Err(SpoolError::Malformed {
                        file: name,
                        offset: self.offset,
                        reason: e.to_string(),
                    });
                }
            };
            let Some(seq) = value["seq"].as_u64() else {
                return Err(SpoolError::Malformed {
                    file: name,
                    offset: self.offset,
                    reason: "no seq".into(),
                });
            };
            if seq < self.next_seq {
                // Acknowledged already.
                self.offset += line.len() as u64 + 1;
                continue;
            }
            if seq > head {
                return Ok(SegmentEnd::Limit);
            }
            if seq > self.next_seq && !self.fresh {
                tracing::error!(
                    sink = %self.sink,
                    first_missing = self.next_seq,
                    next = seq,
                    "records this sink had not acknowledged are no longer in the log; going on with the next one"
                );
                self.missing.push((self.next_seq, seq - 1));
            }
            self.fresh = false;
            self.offset += line.len() as u64 + 1;
            self.next_seq = seq + 1;
            *bytes += line.len();
            out.push(Entry {
                record: Record {
                    value,
                    id: hex::encode(Sha256::digest(&line)),
                },
                seq,
                segment: self.segment,
                end: self.offset,
                bytes: line.len(),
            });
        }
    }
}

/// Why reading a segment stopped.
#[derive(Debug, PartialEq, Eq)]
enum SegmentEnd {
    /// A limit (batch size, durable head) was reached.
    Limit,
    /// The segment has no more data now.
    Data,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditLog;
    use crate::audit::config::AuditConfig;
    use crate::audit::event::{AuditEvent, EventKind};

    async fn append(log: &AuditLog, n: usize) {
        for i in 0..n {
            let mut e = AuditEvent::now(EventKind::Decision);
            e.principal.id = format!("agent-{i}").into();
            e.decision = "allow".into();
            log.append(e).await.unwrap();
        }
    }

    /// A closed log of 30 records in segments of 1500 bytes.
    async fn rotated_log() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            segment_bytes: 1500,
            ..AuditConfig::default()
        };
        let log = AuditLog::open(dir.path(), &config).unwrap();
        append(&log, 30).await;
        log.close().await.unwrap();
        dir
    }

    fn seqs(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.seq).collect()
    }

    #[tokio::test]
    async fn reads_in_batches_across_rotation_and_resumes_from_a_cursor() {
        let dir = rotated_log().await;
        assert!(segments(dir.path()).unwrap().len() > 2, "rotated");
        let mut spool = Spool::new(dir.path(), "s", &Cursor::default());
        let head = spool.durable_head().unwrap();
        assert_eq!(head, 30);
        let mut batch = Vec::new();
        spool.read(head, 7, usize::MAX, &mut batch).unwrap();
        assert_eq!(seqs(&batch), (1..=7).collect::<Vec<_>>());
        // Resume from the cursor of the 7th record, as after a restart.
        let cursor = batch[6].cursor();
        let mut spool = Spool::new(dir.path(), "s", &cursor);
        let mut rest = Vec::new();
        spool.read(head, 100, usize::MAX, &mut rest).unwrap();
        assert_eq!(seqs(&rest), (8..=30).collect::<Vec<_>>());
        // The ids are the lines' hashes, as `warden audit export` gives them.
        let mut all = Vec::new();
        crate::audit::read::Reader::new(dir.path())
            .each_new(|r| all.push(r.id))
            .unwrap();
        assert_eq!(all[7], rest[0].record.id);
    }

    #[tokio::test]
    async fn never_reads_past_the_durable_head() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), &AuditConfig::default()).unwrap();
        append(&log, 5).await;
        log.close().await.unwrap();
        let mut spool = Spool::new(dir.path(), "s", &Cursor::default());
        let mut batch = Vec::new();
        spool.read(3, 100, usize::MAX, &mut batch).unwrap();
        assert_eq!(seqs(&batch), [1, 2, 3]);
        spool.read(5, 100, usize::MAX, &mut batch).unwrap();
        assert_eq!(seqs(&batch), [1, 2, 3, 4, 5]);
    }

    #[tokio::test]
    async fn a_cursor_into_a_removed_segment_resumes_at_the_next_one() {
        let dir = rotated_log().await;
        let list = segments(dir.path()).unwrap();
        let mut spool = Spool::new(dir.path(), "s", &Cursor::default());
        let mut batch = Vec::new();
        spool.read(30, 2, usize::MAX, &mut batch).unwrap();
        let cursor = batch[1].cursor();
        assert_eq!(cursor.segment, list[0].0);
        // Retention removes the first segment.
        std::fs::remove_file(dir.path().join(&list[0].1)).unwrap();
        let mut spool = Spool::new(dir.path(), "s", &cursor);
        let mut rest = Vec::new();
        spool.read(30, 100, usize::MAX, &mut rest).unwrap();
        assert_eq!(rest[0].segment, list[1].0);
        assert_eq!(rest.last().unwrap().seq, 30);
    }

    #[tokio::test]
    async fn records_gone_before_they_were_read_are_reported_once_but_not_from_the_start() {
        let dir = rotated_log().await;
        let list = segments(dir.path()).unwrap();
        let mut spool = Spool::new(dir.path(), "s", &Cursor::default());
        let mut batch = Vec::new();
        spool.read(30, 2, usize::MAX, &mut batch).unwrap();
        let cursor = batch[1].cursor();
        // The rest of segment 1 and all of segment 2 go before the sink read them.
        std::fs::remove_file(dir.path().join(&list[0].1)).unwrap();
        std::fs::remove_file(dir.path().join(&list[1].1)).unwrap();
        let mut spool = Spool::new(dir.path(), "s", &cursor);
        let mut rest = Vec::new();
        spool.read(30, 100, usize::MAX, &mut rest).unwrap();
        let first = rest[0].seq;
        assert!(first > 3, "{first}");
        assert_eq!(spool.take_missing(), [(3, first - 1)]);
        assert!(spool.take_missing().is_empty());
        // A sink starting with no position starts at the oldest record kept: nothing missing.
        let mut spool = Spool::new(dir.path(), "s", &Cursor::default());
        let mut all = Vec::new();
        spool.read(30, 100, usize::MAX, &mut all).unwrap();
        assert_eq!(all[0].seq, first);
        assert!(spool.take_missing().is_empty());
    }
}
