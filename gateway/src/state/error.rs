//! What can go wrong with the state store, each saying which store and what to do.

use std::path::PathBuf;

/// A failure of the state store. Callers that make security decisions treat every variant as
/// a refusal (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory that holds the store could not be created.
    #[error(
        "cannot create {dir}, the directory of the state store: {source}; create it or set \
         state.sqlite to a writable path"
    )]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// The database file could not be opened or set up (permissions, not a database, disk).
    #[error(
        "cannot open the state store {path}: {source}; check that the file is a Warden state \
         store and that Warden may read and write it and its directory (state.sqlite)"
    )]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// SQLite would not switch the file to write-ahead logging.
    #[error(
        "the state store {path} cannot use write-ahead logging (journal mode is {mode:?}); keep \
         it on a local file system (not a network share)"
    )]
    NoWal { path: PathBuf, mode: String },
    /// The file was written by a newer Warden, whose schema this one does not know.
    #[error(
        "the state store {path} has schema version {found}, newer than the {known} this Warden \
         knows; run the Warden version that wrote it, or restore a backup taken before the upgrade"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    /// A migration step failed; the store is left at the version before it.
    #[error("the state store {path} could not be migrated to schema version {version}: {source}")]
    Migrate {
        path: PathBuf,
        version: usize,
        source: rusqlite::Error,
    },
    /// A read or write failed.
    #[error("the state store {path} failed to {operation}: {source}")]
    Query {
        path: PathBuf,
        operation: &'static str,
        source: rusqlite::Error,
    },
    /// A stored value is not what this Warden wrote (edited by hand, or damaged).
    #[error("the state store {path} holds an unreadable {what}; restore it from a backup")]
    Corrupt { path: PathBuf, what: String },
    /// The store's thread could not be started.
    #[error("cannot start the thread of the state store {path}: {source}")]
    Thread {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The store's thread has stopped (the process is shutting down, or it panicked).
    #[error("the state store {path} is closed")]
    Closed { path: PathBuf },
}
