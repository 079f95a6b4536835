//! The schema, versioned in the binary: migration N brings the file from version N-1 to N
//! (`PRAGMA user_version`). Never edit a released step; add the next one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::state::error::StateError;

/// Every step, in order; the schema version is the number of steps applied.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: tool-definition pins, and the revision counters other processes poll.
    "CREATE TABLE tool_pins (
        server              TEXT    NOT NULL,
        tool                TEXT    NOT NULL,
        first_seen_ms       INTEGER NOT NULL,
        approved_digest     TEXT,
        approved_json       TEXT,
        approved_at_ms      INTEGER,
        approved_by         TEXT,
        pending_digest      TEXT,
        pending_json        TEXT,
        pending_since_ms    INTEGER,
        PRIMARY KEY (server, tool)
    ) STRICT;
    CREATE TABLE revisions (
        concern   TEXT    PRIMARY KEY,
        revision  INTEGER NOT NULL
    ) STRICT;
    INSERT INTO revisions (concern, revision) VALUES ('pins', 0);",
];

/// Applies the steps the file lacks, each in its own transaction with its version; refuses a
/// file from a newer Warden. Two processes opening one file at once: the write lock taken
/// before reading the version makes the second see the first's work.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StateError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|source| StateError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let Ok(applied) = usize::try_from(version) else {
            return Err(too_new(path, version));
        };
        if applied > MIGRATIONS.len() {
            return Err(too_new(path, version));
        }
        let Some(step) = MIGRATIONS.get(applied) else {
            return Ok(());
        };
        let next = applied + 1;
        let failed = |source| StateError::Migrate {
            path: path.to_path_buf(),
            version: next,
            source,
        };
        tx.execute_batch(step).map_err(failed)?;
        tx.execute_batch(&format!("PRAGMA user_version = {next}"))
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
}

fn too_new(path: &Path, found: i64) -> StateError {
    StateError::TooNew {
        path: path.to_path_buf(),
        found,
        known: MIGRATIONS.len(),
    }
}
