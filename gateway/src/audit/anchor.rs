//! The head anchor, `head.json`: the last committed (seq, hash), so that a cut tail or an
//! edited last record shows.

use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

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

/// Replaces `head.json` in `dir` atomically (write a temporary file, then rename).
///
/// With `sync`, the new content is on disk before the rename, so a crash leaves either the old
/// or the new anchor, never an empty one.
pub fn write(dir: &Path, seq: u64, hash: &Hash, sync: bool) -> io::Result<()> {
    let anchor = Anchor {
        seq,
        hash: HexHash(*hash),
    };
    let mut text = serde_json::to_vec(&anchor).map_err(io::Error::other)?;
    text.push(b'\n');
    let tmp = dir.join(ANCHOR_TMP);
    let mut file = File::create(&tmp)?;
    file.write_all(&text)?;
    if sync {
        file.sync_data()?;
    }
    drop(file);
    fs::rename(&tmp, dir.join(ANCHOR_FILE))
}

/// Makes renames and new files in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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
        write(dir.path(), 9, &hash, true).unwrap();
        let anchor = read(dir.path()).unwrap().unwrap();
        assert_eq!(anchor.seq, 9);
        assert_eq!(anchor.hash, HexHash(hash));
        assert!(!dir.path().join(ANCHOR_TMP).exists());
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
