//! A sink's durable cursor: `<audit dir>/cursors/<sink>.json`, the last record the sink's
//! destination acknowledged. `seq` is the contract retention reads (segments whose records
//! are all at or below every sink's `seq` may go); `segment` and `offset` say where the next
//! record starts, `hash` is the acknowledged record's id, `mac` authenticates the rest
//! (HMAC-SHA256 under a key derived from the audit key, over the sink's name and every
//! field): a cursor without a valid `mac` was not written by Warden and is not trusted
//! (shipping restarts from the oldest record kept). Replaced atomically: temporary file,
//! fsync, rename, fsync of the directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

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
    /// HMAC-SHA256 (hex) of the sink's name and the fields above, under the cursor key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

/// The key that authenticates cursors: derived from the audit key
/// ([`Signer::derive_key`](crate::audit::signer::Signer::derive_key)).
#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

/// The purpose the cursor key is derived for.
const PURPOSE: &str = "warden siem cursor v1";

impl CursorKey {
    /// The cursor key of the audit key `signer`.
    pub fn of(signer: &crate::audit::signer::Signer) -> CursorKey {
        CursorKey(signer.derive_key(PURPOSE))
    }

    fn mac(&self, sink: &str, cursor: &Cursor) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        let text = format!(
            "{sink}\n{}\n{}\n{}\n{}\n{}",
            cursor.seq, cursor.segment, cursor.offset, cursor.hash, cursor.time
        );
        mac.update(text.as_bytes());
        mac
    }
}

/// A cursor as read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No cursor: the sink starts at the oldest record kept.
    Missing,
    /// A cursor Warden wrote with this audit key.
    Authentic(Cursor),
    /// A cursor whose `mac` is missing or wrong: written by something else (or under another
    /// audit key); not trusted.
    Unauthentic(Cursor),
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
    /// The cursor of `sink`, checked with `key` (`None`: an unsigned log, whose cursors are
    /// never trusted).
    pub fn load(dir: &Path, sink: &str, key: Option<&CursorKey>) -> Result<Loaded, CursorError> {
        let path = path(dir, sink);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let cursor: Cursor =
                    serde_json::from_slice(&bytes).map_err(|e| CursorError::Malformed {
                        path,
                        reason: e.to_string(),
                    })?;
                let authentic = key.is_some_and(|key| {
                    hex::decode(&cursor.mac)
                        .is_ok_and(|mac| key.mac(sink, &cursor).verify_slice(&mac).is_ok())
                });
                Ok(if authentic {
                    Loaded::Authentic(cursor)
                } else {
                    Loaded::Unauthentic(cursor)
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Loaded::Missing),
            Err(source) => Err(CursorError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Replaces the cursor file of `sink` with this one, durably, authenticated with `key`.
    pub fn save(&self, dir: &Path, sink: &str, key: Option<&CursorKey>) -> Result<(), CursorError> {
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
        let mut cursor = self.clone();
        cursor.mac = key.map_or_else(String::new, |key| {
            hex::encode(key.mac(sink, &cursor).finalize().into_bytes())
        });
        let bytes = serde_json::to_vec(&cursor).map_err(|e| io("encode", e.into()))?;
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

    fn key() -> CursorKey {
        CursorKey::of(&crate::audit::signer::Signer::new(
            ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        ))
    }

    fn cursor() -> Cursor {
        Cursor {
            seq: 42,
            segment: 3,
            offset: 1234,
            hash: "ab".repeat(32),
            time: "2026-12-01T00:00:00Z".into(),
            mac: String::new(),
        }
    }

    #[test]
    fn a_saved_cursor_is_read_back_and_a_missing_one_is_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        assert_eq!(
            Cursor::load(dir.path(), "s", Some(&key)).unwrap(),
            Loaded::Missing
        );
        let cursor = cursor();
        cursor.save(dir.path(), "s", Some(&key)).unwrap();
        let Loaded::Authentic(read) = Cursor::load(dir.path(), "s", Some(&key)).unwrap() else {
            panic!("a cursor Warden saved is not authentic");
        };
        assert_eq!(
            Cursor {
                mac: String::new(),
                ..read
            },
            cursor
        );
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
        let e = Cursor::load(dir.path(), "s", None).unwrap_err().to_string();
        assert!(e.contains("move it aside"), "{e}");
    }

    #[test]
    fn a_cursor_written_without_the_key_or_for_another_sink_is_not_authentic() {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        // What anyone who can write the directory can write: every field, no valid mac.
        let mut forged = serde_json::to_value(cursor()).unwrap();
        forged["mac"] = "00".repeat(32).into();
        std::fs::create_dir_all(dir.path().join("cursors")).unwrap();
        std::fs::write(dir.path().join("cursors/s.json"), forged.to_string()).unwrap();
        assert!(matches!(
            Cursor::load(dir.path(), "s", Some(&key)).unwrap(),
            Loaded::Unauthentic(c) if c.seq == 42
        ));
        // A genuine cursor moved to another sink's name, or a field changed, fails too.
        cursor().save(dir.path(), "s", Some(&key)).unwrap();
        std::fs::rename(
            dir.path().join("cursors/s.json"),
            dir.path().join("cursors/t.json"),
        )
        .unwrap();
        assert!(matches!(
            Cursor::load(dir.path(), "t", Some(&key)).unwrap(),
            Loaded::Unauthentic(_)
        ));
        cursor().save(dir.path(), "s", Some(&key)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("cursors/s.json")).unwrap();
        std::fs::write(
            dir.path().join("cursors/s.json"),
            text.replace("\"seq\":42", "\"seq\":4200"),
        )
        .unwrap();
        assert!(matches!(
            Cursor::load(dir.path(), "s", Some(&key)).unwrap(),
            Loaded::Unauthentic(_)
        ));
        // An unsigned log trusts no cursor.
        cursor().save(dir.path(), "u", None).unwrap();
        assert!(matches!(
            Cursor::load(dir.path(), "u", None).unwrap(),
            Loaded::Unauthentic(_)
        ));
    }
}
