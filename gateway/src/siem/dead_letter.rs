//! Records a destination rejected for good (a mapping error, a malformed event), kept in
//! `<audit dir>/dead-letter/<sink>.jsonl` with the reason, one JSON object a line, flushed
//! before the sink's cursor moves past them: never silently dropped.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::spool::Entry;

/// The directory of the dead-letter files, below the audit directory.
pub const DEAD_LETTER_DIR: &str = "dead-letter";

/// Longest reason kept.
const REASON_MAX: usize = 1024;

/// Why a dead letter could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the dead-letter file {path}: {source}")]
pub struct DeadLetterError {
    path: PathBuf,
    source: std::io::Error,
}

/// The dead-letter file of `sink` in audit directory `dir`.
pub fn path(dir: &Path, sink: &str) -> PathBuf {
    dir.join(DEAD_LETTER_DIR).join(format!("{sink}.jsonl"))
}

/// Appends `entries` with their reasons to the dead-letter file of `sink`, durably.
pub fn write(dir: &Path, sink: &str, entries: &[(&Entry, &str)]) -> Result<(), DeadLetterError> {
    let path = path(dir, sink);
    let err = |source| DeadLetterError {
        path: path.clone(),
        source,
    };
    crate::private_files::create_dir_all(&dir.join(DEAD_LETTER_DIR)).map_err(err)?;
    let mut text = Vec::new();
    let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    for (entry, reason) in entries {
        let reason: String = reason.chars().take(REASON_MAX).collect();
        let line = json!({
            "time": time,
            "sink": sink,
            "seq": entry.seq,
            "id": entry.record.id,
            "reason": reason,
            "record": entry.record.value,
        });
        serde_json::to_writer(&mut text, &line).map_err(|e| err(e.into()))?;
        text.push(b'\n');
    }
    let mut file = crate::private_files::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(err)?;
    file.write_all(&text).map_err(err)?;
    file.sync_data().map_err(err)
}
