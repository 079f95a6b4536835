//! The head anchor, `head.json`: the last committed (seq, hash), so that a cut tail or an
//! edited last record shows; and the keys the log named up to that record (`keys`: the last
//! checkpoint's key id, the last `start` record's agent-token key id), so that a start
//! compares its keys with them without reading the log back to that `start` record.

use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::faults::Faults;
use super::last_keys::LastKeys;
use super::record::{Hash, HexHash};

/// File name of the head anchor inside the log directory.
pub const ANCHOR_FILE: &str = "head.json";
const ANCHOR_TMP: &str = "head.json.tmp";

/// The last committed record, as the writer last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Sequence number of the last committed record (0: empty log).
    pub seq: u64,
    /// Hash of that record's line (zeros for an empty log).
    pub hash: HexHash,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    /// `SEQ:HASH`, as `warden audit verify` prints a head and a checkpoint's `detail.to` and
    /// `detail.hash` name one.
    fn from_str(text: &str) -> Result<Anchor, String> {
        let (seq, hash) = text.split_once(':').ok_or_else(|| {
            format!("{text:?} is not SEQ:HASH (a seq, a colon, 64 lower-case hex digits)")
        })?;
        let seq = seq
            .parse::<u64>()
            .ok()
            .filter(|&seq| seq > 0)
            .ok_or_else(|| format!("{seq:?} in {text:?} is not a seq (a whole number from 1)"))?;
        let hash = super::record::from_hex(hash).ok_or_else(|| {
            format!("{hash:?} in {text:?} is not a SHA-256 hash (64 lower-case hex digits)")
        })?;
        Ok(Anchor {
            seq,
            hash: HexHash(hash),
        })
    }
}

/// Why `head.json` could not be used.
#[derive(Debug)]
pub enum AnchorReadError {
    /// It could not be read.
    Io(io::Error),
    /// It is not a valid anchor; the text says why.
    Malformed(String),
}

/// Reads `head.json` in `dir`; `Ok(None)` when there is none.
pub fn read(dir: &Path) -> Result<Option<Anchor>, AnchorReadError> {
    let bytes = match fs::read(dir.join(ANCHOR_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AnchorReadError::Io(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AnchorReadError::Malformed(format!("{e}")))
}

/// `head.json` as written: the anchor, and the keys named up to its record.
#[derive(Serialize)]
struct Head<'a> {
    #[serde(flatten)]
    anchor: Anchor,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<&'a LastKeys>,
}

/// The keys `head.json` names, as of its record.
#[derive(Deserialize)]
struct NamedKeys {
    seq: u64,
    #[serde(default)]
    keys: Option<LastKeys>,
}

/// The keys `head.json` in `dir` names and the seq of the record they are as of; `None` when
/// it cannot be read or names none (written before head.json named keys).
pub fn read_keys(dir: &Path) -> Option<(u64, LastKeys)> {
    let bytes = fs::read(dir.join(ANCHOR_FILE)).ok()?;
    let named: NamedKeys = serde_json::from_slice(&bytes).ok()?;
    Some((named.seq, named.keys?))
}

/// Replaces `head.json` in `dir` atomically (write a temporary file, flush it, then rename), so
/// a crash leaves either the old or the new anchor, never an empty one. `keys` are those the
/// log named up to record `seq`.
pub fn write(dir: &Path, seq: u64, hash: &Hash, keys: Option<&LastKeys>) -> io::Result<()> {
    let head = Head {
        anchor: Anchor {
            seq,
            hash: HexHash(*hash),
        },
        keys,
    };
    let mut text = serde_json::to_vec(&head).map_err(io::Error::other)?;
    text.push(b'\n');
    let tmp = dir.join(ANCHOR_TMP);
    let mut file = crate::private_files::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(&text)?;
    file.sync_data()?;
    drop(file);
    fs::rename(&tmp, dir.join(ANCHOR_FILE))
}

/// Makes renames and new files in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `head.json` on a thread of its own while the log runs, so the writer never waits for
/// it: an anchor write (a new file, its fdatasync, a rename) takes milliseconds on some disks
/// (1.3 ms at p50, 5 ms at worst, measured on the VM in docs/performance.md), and every
/// decision waiting for a commit would wait that long too. The writer posts each head it wants
/// recorded; only the latest posted one is written. Only committed heads are posted, so the
/// anchor never runs ahead of the log (in `process` durability: only heads known to be on
/// disk).
pub struct Anchorer {
    shared: Arc<(Mutex<Posted>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Posted {
    head: Option<(u64, Hash, LastKeys)>,
    stop: bool,
}

impl Anchorer {
    /// Starts the anchor thread for the log in `dir`.
    pub fn spawn(dir: PathBuf, faults: Arc<Faults>) -> io::Result<Anchorer> {
        let shared = Arc::new((Mutex::new(Posted::default()), Condvar::new()));
        let thread = std::thread::Builder::new()
            .name("warden-audit-anchor".into())
            .spawn({
                let shared = shared.clone();
                move || run_anchorer(&dir, &faults, &shared)
            })?;
        Ok(Anchorer {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for head (`seq`, `hash`) to be recorded, with `keys`, those named up to it;
    /// replaces a head posted earlier and not yet written.
    pub fn post(&self, seq: u64, hash: Hash, keys: LastKeys) {
        lock(&self.shared.0).head = Some((seq, hash, keys));
        self.shared.1.notify_one();
    }

    /// Stops the thread once a write in progress ends; a head still waiting is dropped (the
    /// writer records the final head itself, after this returns).
    pub fn stop(&mut self) {
        lock(&self.shared.0).stop = true;
        self.shared.1.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Anchorer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock(posted: &Mutex<Posted>) -> MutexGuard<'_, Posted> {
    posted
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run_anchorer(dir: &Path, faults: &Faults, shared: &(Mutex<Posted>, Condvar)) {
    let mut failing = false;
    loop {
        let (seq, hash, keys) = {
            let mut posted = lock(&shared.0);
            loop {
                if posted.stop {
                    return;
                }
                if let Some(head) = posted.head.take() {
                    break head;
                }
                posted = shared
                    .1
                    .wait(posted)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        faults.before_anchor();
        match write(dir, seq, &hash, Some(&keys)) {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, dir = %dir.display(), "cannot update the audit head anchor; will retry");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::hash_line;

    #[test]
    fn anchor_round_trips_and_absence_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read(dir.path()), Ok(None)));
        let hash = hash_line(b"line");
        write(dir.path(), 9, &hash, None).unwrap();
        let anchor = read(dir.path()).unwrap().unwrap();
        assert_eq!(anchor.seq, 9);
        assert_eq!(anchor.hash, HexHash(hash));
        assert!(!dir.path().join(ANCHOR_TMP).exists());
        assert!(read_keys(dir.path()).is_none(), "no keys named");

        let keys = LastKeys {
            audit: Some(super::super::last_keys::KeyAt {
                seq: 8,
                key_id: "audit-kid".into(),
            }),
            token: None,
        };
        write(dir.path(), 9, &hash, Some(&keys)).unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap(), anchor);
        assert_eq!(read_keys(dir.path()), Some((9, keys)));
    }

    #[test]
    fn a_head_given_as_seq_colon_hash_parses_and_bad_ones_say_what_is_wrong() {
        let hash = hash_line(b"line");
        let head: Anchor = format!("12:{}", crate::audit::record::to_hex(&hash))
            .parse()
            .unwrap();
        assert_eq!(
            head,
            Anchor {
                seq: 12,
                hash: HexHash(hash)
            }
        );
        let hex = "a".repeat(64);
        for (bad, says) in [
            ("12", "not SEQ:HASH"),
            (&*format!("x:{hex}"), "not a seq"),
            (&*format!("0:{hex}"), "not a seq"),
            ("12:abc", "not a SHA-256 hash"),
        ] {
            let error = bad.parse::<Anchor>().unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn garbage_anchor_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ANCHOR_FILE), b"{\"seq\":").unwrap();
        assert!(matches!(
            read(dir.path()),
            Err(AnchorReadError::Malformed(_))
        ));
    }
}
