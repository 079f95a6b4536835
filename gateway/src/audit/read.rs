//! Reading the log back for people and tools (`warden audit tail`, `export`, `search`): the
//! records of every segment in order, each with the hash of its line (its stable id), and new
//! ones as they are written. A torn last line (a write in progress) is left for the next
//! look.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use super::record::{hash_line, to_hex};
use super::segment::{list_segments, segment_name};

/// One record as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The record, as written.
    pub value: Value,
    /// The SHA-256 of its line, hex: the id every copy of it shares (SIEMs deduplicate on it).
    pub id: String,
}

impl Record {
    /// When it was written.
    pub fn time(&self) -> Option<SystemTime> {
        self.value["time"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
    }
}

/// Why the log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the audit log in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} line {line}: not a record: {reason}")]
    Malformed {
        file: String,
        line: u64,
        reason: String,
    },
}

/// A reading position in the log: the segment and the byte after the last complete line
/// read.
pub struct Reader {
    dir: PathBuf,
    segment: Option<u64>,
    offset: u64,
    line: u64,
}

impl Reader {
    /// A reader at the start of the log in `dir`.
    pub fn new(dir: &Path) -> Reader {
        Reader {
            dir: dir.to_path_buf(),
            segment: None,
            offset: 0,
            line: 0,
        }
    }

    /// The records written since the last call (all of them, the first time).
    pub fn next_batch(&mut self) -> Result<Vec<Record>, ReadError> {
        let mut out = Vec::new();
        self.each_new(|r| out.push(r))?;
        Ok(out)
    }

    /// Hands each record written since the last call to `each`, one segment in memory at a
    /// time (a log of many segments is never read whole).
    pub fn each_new(&mut self, mut each: impl FnMut(Record)) -> Result<(), ReadError> {
        let io = |source| ReadError::Io {
            path: self.dir.clone(),
            source,
        };
        let segments = list_segments(&self.dir).map_err(io)?;
        for (number, name) in segments {
            if self.segment.is_some_and(|current| number < current) {
                continue;
            }
            if self.segment != Some(number) {
                self.segment = Some(number);
                self.offset = 0;
                self.line = 0;
            }
            let mut out = Vec::new();
            self.read_segment(&name, &mut out)?;
            out.into_iter().for_each(&mut each);
        }
        Ok(())
    }

    fn read_segment(&mut self, name: &str, out: &mut Vec<Record>) -> Result<(), ReadError> {
        let path = self.dir.join(name);
        let io = |source| ReadError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        // The data ends at the first NUL (space the writer reserved).
        let data = bytes
            .iter()
            .position(|&b| b == 0)
            .map_or(&bytes[..], |nul| &bytes[..nul]);
        let mut start = 0;
        while let Some(end) = data[start..].iter().position(|&b| b == b'\n') {
            let line = &data[start..start + end];
            self.line += 1;
            let value = serde_json::from_slice(line).map_err(|e| ReadError::Malformed {
                file: name.to_owned(),
                line: self.line,
                reason: e.to_string(),
            })?;
            out.push(Record {
                value,
                id: to_hex(&hash_line(line)),
            });
            start += end + 1;
        }
        self.offset += start as u64;
        Ok(())
    }
}

/// The name of segment `number`, for messages.
pub fn segment_file(number: u64) -> String {
    segment_name(number)
}

/// The segments in `dir`, oldest first, as (number, file name).
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, String)>> {
    list_segments(dir)
}

/// The durable head named by `head.json` in `dir`: the last record known to be on disk
/// (`None` when there is no anchor yet). Readers that must never pass what is on disk (the
/// SIEM shipper) read no further than this.
pub fn durable_head(dir: &Path) -> std::io::Result<Option<u64>> {
    super::anchor::read(dir)
        .map(|anchor| anchor.map(|a| a.seq))
        .map_err(|e| match e {
            super::anchor::AnchorReadError::Io(e) => e,
            super::anchor::AnchorReadError::Malformed(m) => {
                std::io::Error::new(std::io::ErrorKind::InvalidData, m)
            }
        })
}

/// Which records to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Principal id.
    pub agent: Option<String>,
    /// Cedar action (`llm:chat`, `mcp:call_tool`).
    pub action: Option<String>,
    /// Decision (`allow`, `deny`, `rejected`) or record kind (`outcome`, `system`).
    pub decision: Option<String>,
    /// Written at or after.
    pub since: Option<SystemTime>,
    /// Written before.
    pub until: Option<SystemTime>,
}

impl Filter {
    /// Whether `record` passes.
    pub fn keeps(&self, record: &Record) -> bool {
        let v = &record.value;
        let same = |want: &Option<String>, have: &Value| {
            want.as_deref().is_none_or(|w| have.as_str() == Some(w))
        };
        if !same(&self.agent, &v["principal"]["id"]) || !same(&self.action, &v["action"]) {
            return false;
        }
        if let Some(d) = &self.decision
            && v["decision"].as_str() != Some(d)
            && v["kind"].as_str() != Some(d)
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(time) = record.time() else {
                return false;
            };
            if self.since.is_some_and(|s| time < s) || self.until.is_some_and(|u| time >= u) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::config::AuditConfig;
    use crate::audit::event::{AuditEvent, EventKind};
    use crate::audit::log::AuditLog;

    #[tokio::test]
    async fn records_are_read_in_order_with_their_ids_and_new_ones_as_they_come() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), &AuditConfig::default()).unwrap();
        for agent in ["a", "b"] {
            let mut e = AuditEvent::now(EventKind::Decision);
            e.principal.id = agent.into();
            e.decision = "allow".into();
            log.append(e).await.unwrap();
        }
        let mut reader = Reader::new(dir.path());
        let first = reader.next_batch().unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].value["principal"]["id"], "a");
        assert_eq!(first[0].id.len(), 64);
        assert_ne!(first[0].id, first[1].id);
        assert!(reader.next_batch().unwrap().is_empty());
        let mut e = AuditEvent::now(EventKind::Decision);
        e.principal.id = "c".into();
        e.decision = "deny".into();
        log.append(e).await.unwrap();
        let next = reader.next_batch().unwrap();
        assert_eq!(next.len(), 1);
        let deny = Filter {
            decision: Some("deny".into()),
            ..Default::default()
        };
        assert!(deny.keeps(&next[0]) && !deny.keeps(&first[0]));
        let b = Filter {
            agent: Some("b".into()),
            ..Default::default()
        };
        assert!(b.keeps(&first[1]) && !b.keeps(&first[0]));
        log.close().await.unwrap();
    }
}
