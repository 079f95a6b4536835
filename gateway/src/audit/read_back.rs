//! The log read back once at start, from its newest record towards its last run's `start`
//! record, for the two things a start needs from it: the keys the log last named (compared
//! with this start's keys, `last_keys.rs`) and the requests the last run left in flight
//! (recorded as interrupted, `interrupted.rs`).
//!
//! The walk goes back one segment at a time, keeping a few numbers per record, and ends as
//! soon as both are known:
//! - the requests in flight, at the last run's first boundary from its end: its `start`
//!   record, or a `stop` record (a run that stopped left nothing in flight);
//! - the audit key, at the newest checkpoint, always read from the log (a signed log closes
//!   every segment with one, so it is at most one segment back; an unsigned log, which has
//!   none, is read back whole): head.json is neither chained nor signed, so its `keys.audit`
//!   is not trusted;
//! - the agent-token key, at the last `start` record, or, sooner, at the record `head.json`
//!   anchors when it names the keys as of that record (written since head.json holds them):
//!   only the records after it are read for it. Logs whose head.json names no keys are read
//!   back to the last `start` record, every segment when retention removed it.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::anchor;
use super::error::AuditError;
use super::event::{AuditEvent, EventKind, Timestamp};
use super::last_keys::{KeyAt, LastKeys};
use super::segment::{Line, Lines, list_segments};

/// What the log's end says about its last run.
#[derive(Debug, Default)]
pub struct ReadBack {
    /// The keys the log last named.
    pub keys: LastKeys,
    /// The decision records of the last run that no outcome record follows, each with its
    /// seq, oldest first: the requests a killed run left in flight.
    pub unfinished: Vec<(u64, AuditEvent)>,
    /// When the log's last record was written (`None`: the log is empty).
    pub last_time: Option<Timestamp>,
}

/// The fields of a record the walk looks at.
#[derive(Deserialize)]
struct Peek {
    seq: u64,
    time: Timestamp,
    kind: EventKind,
    #[serde(default)]
    decision_id: String,
    #[serde(default)]
    detail: Option<PeekDetail>,
}

#[derive(Deserialize)]
struct PeekDetail {
    #[serde(default)]
    event: Option<String>,
    /// A checkpoint's key id.
    #[serde(default)]
    key_id: Option<String>,
    /// A `start` record's agent-token key id.
    #[serde(default)]
    token_key_id: Option<String>,
}

/// One record, as much of it as the walk needs.
struct Entry {
    seq: u64,
    time: Timestamp,
    kind: EventKind,
    decision_id: String,
    /// `start` or `stop`, for a `system` record marking one.
    boundary: Option<Boundary>,
    /// A checkpoint's key id.
    key_id: Option<String>,
    /// A `start` record's agent-token key id.
    token_key_id: Option<String>,
    /// Where its line is, to read a decision back whole.
    offset: u64,
    len: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Boundary {
    Start,
    Stop,
}

/// Reads the log in `dir` back (see the module's doc); nothing for a missing or empty log.
pub fn read(dir: &Path) -> Result<ReadBack, AuditError> {
    let io = |action: &'static str, path: PathBuf| {
        move |source| AuditError::Io {
            action,
            path,
            source,
        }
    };
    let segments = match list_segments(dir) {
        Ok(segments) => segments,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReadBack::default()),
        Err(e) => return Err(io("list", dir.to_path_buf())(e)),
    };
    // head.json's keys, as of its record: a head.json that cannot be read, or names no keys,
    // leaves them to the walk (recovery, at open, says what is wrong with it).
    let anchored = anchor::read_keys(dir);
    let mut back = ReadBack::default();
    let mut keys = Keys::default();
    // Outcomes seen later in the run whose decisions the walk has not reached yet.
    let mut outcomes: HashMap<String, u32> = HashMap::new();
    let mut run_read = false;
    for (_, name) in segments.iter().rev() {
        let path = dir.join(name);
        let entries = read_entries(&path).map_err(io("read", path.clone()))?;
        let mut decisions = Vec::new();
        for entry in entries.iter().rev() {
            back.last_time.get_or_insert(entry.time);
            keys.see(entry, anchored.as_ref());
            if run_read {
                continue;
            }
            if entry.boundary.is_some() {
                run_read = true;
                continue;
            }
            match entry.kind {
                EventKind::Outcome if !entry.decision_id.is_empty() => {
                    *outcomes.entry(entry.decision_id.clone()).or_default() += 1;
                }
                EventKind::Decision if !entry.decision_id.is_empty() => {
                    match outcomes.get_mut(&entry.decision_id) {
                        Some(n) if *n > 1 => *n -= 1,
                        Some(_) => {
                            outcomes.remove(&entry.decision_id);
                        }
                        None => decisions.push(entry),
                    }
                }
                _ => {}
            }
        }
        read_decisions(&path, &decisions, &mut back.unfinished)
            .map_err(io("read", path.clone()))?;
        if run_read && keys.done {
            break;
        }
    }
    back.unfinished.sort_by_key(|(seq, _)| *seq);
    back.keys = keys.found;
    Ok(back)
}

/// The keys found so far, newest first.
#[derive(Default)]
struct Keys {
    found: LastKeys,
    /// The agent-token key is known: from the last `start` record, or from head.json.
    token_known: bool,
    /// Nothing older can change what was found.
    done: bool,
}

impl Keys {
    /// Takes in `entry`, the newest record not seen yet; `anchored` is head.json's record
    /// and the keys as of it.
    ///
    /// The audit key is always the newest checkpoint's, read from the log itself: head.json
    /// is covered by neither the chain nor a signature, so a `keys.audit` edited there (with
    /// the key file swapped) must not pass for the key the log was signed with. A signed log
    /// closes every segment with a checkpoint, so it is at most one segment back. head.json
    /// serves only for the agent-token key, whose `start` record retention may have removed.
    fn see(&mut self, entry: &Entry, anchored: Option<&(u64, LastKeys)>) {
        if self.done {
            return;
        }
        if entry.kind == EventKind::Checkpoint
            && self.found.audit.is_none()
            && let Some(kid) = &entry.key_id
        {
            self.found.audit = Some(KeyAt {
                seq: entry.seq,
                key_id: kid.clone(),
            });
        }
        if !self.token_known {
            if let Some((seq, named)) = anchored
                && entry.seq <= *seq
            {
                // head.json names the token key as of its record: a start record after it
                // comes first.
                self.found.token = named.token.clone();
                self.token_known = true;
            } else if entry.boundary == Some(Boundary::Start) {
                self.found.token = entry.token_key_id.as_ref().map(|kid| KeyAt {
                    seq: entry.seq,
                    key_id: kid.clone(),
                });
                self.token_known = true;
            }
        }
        self.done = self.token_known && self.found.audit.is_some();
    }
}

/// Every complete record of segment `path`, in file order.
fn read_entries(path: &Path) -> std::io::Result<Vec<Entry>> {
    let mut lines = Lines::new(File::open(path)?);
    let mut entries = Vec::new();
    loop {
        let offset = lines.complete_len();
        let Some((_, Line::Complete(bytes))) = lines.next_line()? else {
            break;
        };
        // A line that does not read as a record is left to `warden audit verify`: recovery
        // checks the chain of the log's end.
        let Ok(peek) = serde_json::from_slice::<Peek>(bytes) else {
            continue;
        };
        let detail = peek.detail.unwrap_or(PeekDetail {
            event: None,
            key_id: None,
            token_key_id: None,
        });
        let boundary = match (peek.kind, detail.event.as_deref()) {
            (EventKind::System, Some("start")) => Some(Boundary::Start),
            (EventKind::System, Some("stop")) => Some(Boundary::Stop),
            _ => None,
        };
        entries.push(Entry {
            seq: peek.seq,
            time: peek.time,
            kind: peek.kind,
            decision_id: peek.decision_id,
            boundary,
            key_id: detail.key_id,
            token_key_id: detail.token_key_id,
            offset,
            len: bytes.len(),
        });
    }
    Ok(entries)
}

/// Reads the decision records `decisions` (entries of segment `path`) back whole.
fn read_decisions(
    path: &Path,
    decisions: &[&Entry],
    out: &mut Vec<(u64, AuditEvent)>,
) -> std::io::Result<()> {
    if decisions.is_empty() {
        return Ok(());
    }
    let file = File::open(path)?;
    for entry in decisions {
        let mut line = vec![0; entry.len];
        file.read_exact_at(&mut line, entry.offset)?;
        if let Ok(event) = serde_json::from_slice::<AuditEvent>(&line) {
            out.push((entry.seq, event));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ed25519_dalek::SigningKey;
    use serde_json::json;

    use super::*;
    use crate::audit::config::AuditConfig;
    use crate::audit::log::AuditLog;
    use crate::audit::signer::Signer;

    fn system(detail: serde_json::Value) -> AuditEvent {
        let mut event = AuditEvent::now(EventKind::System);
        event.detail = Some(detail);
        event
    }

    /// One run of a Warden signing with `signer`: a start record naming agent-token key
    /// `token`, then `records` others, in segments of a few records each.
    async fn run(dir: &Path, signer: &Arc<Signer>, token: &str, records: usize) {
        let cfg = AuditConfig {
            segment_bytes: 600,
            ..AuditConfig::default()
        };
        let log = AuditLog::open_signed(dir, &cfg, signer.clone(), Vec::new()).unwrap();
        log.append(system(json!({"event": "start", "token_key_id": token})))
            .await
            .unwrap();
        for _ in 0..records {
            log.append(system(json!({"event": "reload"})))
                .await
                .unwrap();
        }
        log.close().await.unwrap();
    }

    fn signer() -> Arc<Signer> {
        Arc::new(Signer::new(SigningKey::from_bytes(&[7; 32])))
    }

    #[tokio::test]
    async fn keys_come_from_head_json_when_retention_removed_the_start_record() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        let signer = signer();
        run(&dir, &signer, "token-a", 20).await;
        let segments = list_segments(&dir).unwrap();
        assert!(segments.len() > 3, "several segments");
        let start = read(&dir)
            .unwrap()
            .keys
            .token
            .expect("the start record's key");
        assert_eq!(start.key_id, "token-a");

        // Retention removes the oldest segments, the start record's among them.
        for (_, name) in &segments[..2] {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
        let keys = read(&dir).unwrap().keys;
        assert_eq!(keys.token, Some(start.clone()), "from head.json");
        assert_eq!(keys.audit.unwrap().key_id, signer.key_id());

        // A log written before head.json named keys is read back to its last start record:
        // here, none is left.
        let head = anchor::read(&dir).unwrap().unwrap();
        anchor::write(&dir, head.seq, &head.hash.0, None).unwrap();
        let keys = read(&dir).unwrap().keys;
        assert_eq!(keys.token, None, "the walk finds no start record");
        assert_eq!(keys.audit.unwrap().key_id, signer.key_id());
    }

    #[tokio::test]
    async fn records_after_the_anchored_head_name_the_keys_before_head_json_does() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        let signer = signer();
        run(&dir, &signer, "token-a", 3).await;
        let first = std::fs::read(dir.join(anchor::ANCHOR_FILE)).unwrap();
        run(&dir, &signer, "token-b", 3).await;
        assert_eq!(read(&dir).unwrap().keys.token.unwrap().key_id, "token-b");

        // head.json lags behind the log (the second run was killed before it was updated):
        // the second run's start record, after the anchored head, still counts.
        std::fs::write(dir.join(anchor::ANCHOR_FILE), first).unwrap();
        assert_eq!(read(&dir).unwrap().keys.token.unwrap().key_id, "token-b");
    }

    #[tokio::test]
    async fn an_audit_key_edited_in_head_json_does_not_pass_the_key_check() {
        use crate::audit::last_keys::{StartKeys, check};
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        let signer = signer();
        run(&dir, &signer, "token-a", 3).await;
        // Someone who can write the audit directory and the key file swaps the key and
        // names the new one in head.json, whose record (the closing checkpoint) is the last.
        let (seq, mut named) = anchor::read_keys(&dir).expect("head.json names the keys");
        let at = named.audit.clone().expect("the last checkpoint's key");
        assert_eq!(at.key_id, signer.key_id());
        named.audit = Some(KeyAt {
            seq: at.seq,
            key_id: "swapped".into(),
        });
        let head = anchor::read(&dir).unwrap().unwrap();
        anchor::write(&dir, seq, &head.hash.0, Some(&named)).unwrap();

        let keys = read(&dir).unwrap().keys;
        assert_eq!(
            keys.audit,
            Some(at),
            "the log's own checkpoint, not head.json"
        );
        assert_eq!(keys.token.unwrap().key_id, "token-a");
        let swapped = StartKeys {
            audit: ("swapped", vec![]),
            token: Some(("token-a", vec![])),
        };
        let refused = check(&read(&dir).unwrap().keys, &swapped, &dir).unwrap_err();
        assert!(refused.to_string().contains(signer.key_id()), "{refused}");

        // Nor does a head.json that names no audit key at all.
        named.audit = None;
        anchor::write(&dir, seq, &head.hash.0, Some(&named)).unwrap();
        assert!(check(&read(&dir).unwrap().keys, &swapped, &dir).is_err());
    }

    #[test]
    fn a_missing_log_reads_back_as_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let back = read(&tmp.path().join("audit")).unwrap();
        assert_eq!(back.keys, LastKeys::default());
        assert!(back.unfinished.is_empty() && back.last_time.is_none());
    }
}
