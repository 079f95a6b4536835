//! A sink's durable cursor: `<audit dir>/cursors/<sink>.json`, the last record the sink's
//! destination acknowledged. `seq` is the contract retention reads (segments whose records
//! are all at or below every sink's `seq` may go); `segment` and `offset` say where the next
//! record starts, `hash` is the acknowledged record's id. Replaced atomically: temporary file,
//! fsync, rename, fsync of the directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The directory of the cursors, below the audit directory.
pub const CURSOR_DIR: &str = "cursors";

/// Where a sink stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last seq acknowledged (0: none yet).
    pub seq: u64,
    /// The segment number the next record is read from (0: the first there is).
    #[serde(default)]
    pub segment: u64,
    /// The byte offset in `segment` after the acknowledged record's line.
    #[serde(default)]
    pub offset: u64,
    /// The id (SHA-256 of the line, hex) of the acknowledged record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    /// When the acknowledged record was written (RFC 3339), for the lag metrics.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
}

/// Why a cursor cannot be read or saved.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("cannot {action} the SIEM cursor {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the SIEM cursor {path} is not a cursor ({reason}); move it aside to ship this sink again from the start of the log"
    )]
    Malformed { path: PathBuf, reason: String },
}

/// The cursor file of `sink` in audit directory `dir`.
pub fn path(dir: &Path, sink: &str) -> PathBuf {
    dir.join(CURSOR_DIR).join(format!("{sink}.json"))
}

impl Cursor {
    /// The cursor of `sink`, or the start of the log when it has none.
    pub fn load(dir: &Path, sink: &str) -> Result<Cursor, CursorError> {
        let path = path(dir, sink);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CursorError::Malformed {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Cursor::default()),
            Err(source) => Err(CursorError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Replaces the cursor file of `sink` with this one, durably.
    pub fn save(&self, dir: &Path, sink: &str) -> Result<(), CursorError> {
        let path = path(dir, sink);
        let cursors = dir.join(CURSOR_DIR);
        let io = |action, source| CursorError::Io {
            action,
            path: path.clone(),
            source,
        };
        crate::private_files::create_dir_all(&cursors)
            .map_err(|e| io("create the directory of", e))?;
        let temp = cursors.join(format!(".{sink}.json.tmp"));
        let bytes = serde_json::to_vec(self).map_err(|e| io("encode", e.into()))?;
        let mut file = crate::private_files::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| io("write", e))?;
        file.write_all(&bytes).map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("flush", e))?;
        drop(file);
        std::fs::rename(&temp, &path).map_err(|e| io("replace", e))?;
        std::fs::File::open(&cursors)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("flush the directory of", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_cursor_is_read_back_and_a_missing_one_is_the_start() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Cursor::load(dir.path(), "s").unwrap(), Cursor::default());
        let cursor = Cursor {
            seq: 42,
            segment: 3,
            offset: 1234,
            hash: "ab".repeat(32),
            time: "2026-12-01T00:00:00Z".into(),
        };
        cursor.save(dir.path(), "s").unwrap();
        assert_eq!(Cursor::load(dir.path(), "s").unwrap(), cursor);
        // The contract retention reads: `{"seq": N}` in cursors/<sink>.json.
        let text = std::fs::read_to_string(dir.path().join("cursors/s.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["seq"], 42);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("cursors"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["s.json"]);
    }

    #[test]
    fn a_damaged_cursor_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cursors")).unwrap();
        std::fs::write(dir.path().join("cursors/s.json"), "{nope").unwrap();
        let e = Cursor::load(dir.path(), "s").unwrap_err().to_string();
        assert!(e.contains("move it aside"), "{e}");
    }
}
