//! What can go wrong with the state store, each saying which store and what to do.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::workdir::FromWorkdir;

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
    /// A command was to act on the store of a gateway, and there is none where its
    /// configuration points: it would have made a new one the gateway never reads.
    #[error(
        "there is no state store at {}: a command acts on the store of the gateway it \
         manages, and no gateway has run with this one; pass --config (or WARDEN_CONFIG) with the \
         file the gateway runs with, and run the command in the gateway's working directory when \
         the file's paths are relative (or make data_dir absolute); or start the gateway once first",
        FromWorkdir(.path)
    )]
    Missing { path: PathBuf },
    /// The database file could not be created.
    #[error(
        "cannot create the state store {path}: {source}; check that Warden may write its \
         directory (state.sqlite)"
    )]
    Create {
        path: PathBuf,
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
    #[error("the state store {store} holds an unreadable {what}; restore it from a backup")]
    Corrupt { store: String, what: String },
    /// The store's thread could not be started.
    #[error("cannot start the thread of the state store {path}: {source}")]
    Thread {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The SQLite file's path no longer names the file the store opened.
    #[error(
        "the state store {} is no longer the file Warden opened (it, or its directory, was \
         moved, removed or replaced): what Warden wrote there now would be lost, so nothing is \
         read or written; put the file back where it was, or restart Warden to open the file \
         now at that path",
        path.display()
    )]
    Moved { path: PathBuf },
    /// The store's thread has stopped (the process is shutting down, or it panicked).
    #[error("the state store {store} is closed")]
    Closed { store: String },
    /// `state.postgres.url` could not be read from its source.
    #[error("cannot read state.postgres.url: {reason}")]
    PostgresUrl { reason: String },
    /// `state.postgres.url` is not a PostgreSQL connection URL (the message never quotes it).
    #[error(
        "state.postgres.url is not a PostgreSQL connection URL ({reason}); write it as \
         postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=require"
    )]
    PostgresUrlInvalid { reason: String },
    /// The TLS settings of `state.postgres.tls` cannot be used.
    #[error("cannot set up TLS for the PostgreSQL state store: {reason}; check state.postgres.tls")]
    PostgresTls { reason: String },
    /// `sslmode=verify-ca` without `state.postgres.tls.ca_file`.
    #[error(
        "state.postgres.tls.ca_file: state.postgres.url asks for sslmode=verify-ca, which checks \
         the server's certificate against the CA in state.postgres.tls.ca_file only (not the \
         system's roots: with the host name not verified, a certificate any public CA issued \
         to anyone would pass), and it is not set: set it (or sslrootcert=PATH in the URL) to \
         the PEM certificate of the CA that issued the server's certificate, or use \
         sslmode=verify-full"
    )]
    VerifyCaWithoutCaFile,
    /// `sslrootcert` in `state.postgres.url` and `state.postgres.tls.ca_file` name different
    /// roots.
    #[error(
        "state.postgres.tls.ca_file: state.postgres.url says sslrootcert={in_url}, and \
         state.postgres.tls.ca_file names {}: both say which CA the server's certificate must \
         chain to, and they differ; keep one of them (sslrootcert=PATH in the URL means the \
         same as ca_file: PATH)",
        ca_file.display()
    )]
    SslRootCertConflict { in_url: String, ca_file: PathBuf },
    /// `sslrootcert=system` with an `sslmode` that does not verify the server's host name.
    #[error(
        "state.postgres.url: sslrootcert=system trusts any certificate the system's CAs issued \
         for the host connected to, so it needs the host name verified: use \
         sslmode=verify-full (or require, which Warden verifies as fully, or leave sslmode \
         out), not sslmode={mode}; for sslmode=verify-ca name the CA's file instead \
         (sslrootcert=PATH or state.postgres.tls.ca_file)"
    )]
    SslRootCertSystemMode { mode: String },
    /// No connection to the database could be had (server down, refused login, TLS, timeout).
    #[error(
        "cannot reach the PostgreSQL state store {database}: {reason}; check that the server is \
         up and reachable, and the role, password and sslmode in state.postgres.url"
    )]
    PostgresConnect { database: String, reason: String },
    /// The database was migrated by a newer Warden, whose schema this one does not know.
    #[error(
        "the PostgreSQL state store {database} has schema version {found}, newer than the \
         {known} this Warden knows; run the Warden version that wrote it (every replica on the \
         same version), or restore a backup taken before the upgrade"
    )]
    PostgresTooNew {
        database: String,
        found: i64,
        known: usize,
    },
    /// A migration step failed; the database is left at the version before it.
    #[error(
        "the PostgreSQL state store {database} could not be migrated to schema version \
         {version}: {}; the role in state.postgres.url needs to create tables in its \
         database (docs/approvals.md, State store)",
        Causes(.source)
    )]
    PostgresMigrate {
        database: String,
        version: usize,
        source: tokio_postgres::Error,
    },
    /// A read or write failed.
    #[error(
        "the PostgreSQL state store {database} failed to {operation}: {}; check that the \
         server is up and that the role in state.postgres.url may read and write Warden's \
         tables (docs/approvals.md, State store)",
        Causes(.source)
    )]
    PostgresQuery {
        database: String,
        operation: &'static str,
        source: tokio_postgres::Error,
    },
    /// An operation took longer than `state.postgres.query_timeout` (a lock held by another
    /// session, a server overloaded or gone silent); its statement was cancelled.
    #[error(
        "the PostgreSQL state store {database} did not answer within {} \
         (state.postgres.query_timeout); the statement was cancelled; check the server's load \
         and the locks other sessions hold (pg_stat_activity)",
        humantime::format_duration(*timeout)
    )]
    PostgresTimeout { database: String, timeout: Duration },
    /// A new approval request would pass the most its principal may have pending
    /// (`NewApproval::pending_cap`); nothing was written.
    #[error(
        "{principal} has {pending} approvals pending, the most it may have \
         (approvals.max_pending_per_agent: {cap}); it may ask again once approvers decide or \
         they expire"
    )]
    TooManyPending {
        principal: String,
        pending: u64,
        cap: u32,
    },
}

/// An error with the errors that caused it, `: `-separated ("error communicating with the
/// server: Broken pipe (os error 32)"): `tokio-postgres` says only "db error" or "error
/// communicating with the server" and keeps what happened in its source. A cause whose text its
/// error already shows is not repeated.
pub struct Causes<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !shown.contains(&text) {
                write!(f, ": {text}")?;
                shown = text;
            }
            next = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error communicating with the server")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn an_error_is_shown_with_its_causes_each_once() {
        let broken = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "Broken pipe");
        assert_eq!(
            Causes(&Outer(broken())).to_string(),
            "error communicating with the server: Broken pipe"
        );
        assert_eq!(
            Causes(&Repeats(broken())).to_string(),
            "cannot write: Broken pipe"
        );
    }

    #[test]
    fn a_missing_store_at_a_relative_path_names_the_working_directory() {
        let message = StateError::Missing {
            path: PathBuf::from("warden-data/state.db"),
        }
        .to_string();
        let cwd = std::env::current_dir().unwrap();
        assert!(
            message.contains(&format!(
                "warden-data/state.db (relative to the working directory {})",
                cwd.display()
            )),
            "{message}"
        );
        assert!(message.contains("gateway's working directory"), "{message}");
    }
}
