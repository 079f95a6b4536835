//! The state store in one SQLite file (`state.sqlite`, default `<data_dir>/state.db`).
//!
//! One connection, owned by a thread of its own (`warden-state`): every read and write is a
//! job sent to that thread, and the caller awaits its answer, so no tokio worker ever blocks on
//! the file, whichever runtime it runs on (Warden's proxy workers each run their own). The file
//! is in write-ahead-log mode, so `warden tools …` in another process reads and writes it while
//! `warden serve` runs (`busy_timeout` waits out the other's transaction). Commits are
//! synchronous (`synchronous = FULL`): an approval, once answered, survives a lost machine.
//!
//! rusqlite (bundled SQLite) rather than sqlx: writes are rare and small, a dedicated thread is
//! all the concurrency they need, and it keeps the store independent of any one async
//! runtime. PostgreSQL (`state/postgres/`) implements the same repository traits.
//!
//! Approval changes are announced to this process's watchers by the writes themselves; the
//! store's thread also polls the approvals revision while someone watches, so a change made by
//! another process on the file (the CLI) wakes them too.
//!
//! The open connection goes on reading and writing its file after the file (or its directory)
//! is moved, removed or replaced: what it writes then would be gone at the next start, and the
//! file now at the path is not what it reads. So before each operation the thread checks that
//! the path still names the file it opened (device and inode), and fails the operation while it
//! does not (`StateError::Moved`, which the store's health counts): the store is down until the
//! file is back where it was.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{broadcast, oneshot};

use super::approvals::{ANY, CHANGES_CAPACITY, Change};
use super::error::StateError;
use super::health::{Area, StoreHealth};
use super::migrated::Migrated;
use super::pins::now_ms;

mod approvals;
mod bundle_floors;
mod canaries;
mod factors;
mod fleet;
mod kept;
mod migrations;
mod pins;
mod quarantine;
mod revocations;
mod sessions;

/// How often the store's thread looks for approvals changed by another process on the file,
/// while someone watches.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long a transaction waits for another process's transaction on the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An operation: given the connection, or why the store cannot be used.
type Job = Box<dyn FnOnce(Result<&mut Connection, StateError>) + Send>;

/// A handle on the SQLite state store; cheap to clone. The store's thread ends when the last
/// handle is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    path: Arc<Path>,
    jobs: mpsc::Sender<Job>,
    /// Approval changes: announced by this process's writes, and by the store's thread when
    /// the approvals revision moved without them (another process wrote).
    changes: broadcast::Sender<Change>,
    /// The approvals revision this process last saw.
    seen_revision: Arc<AtomicI64>,
    /// What opening it did to its schema.
    migrated: Migrated,
    /// The outcomes of its operations.
    health: StoreHealth,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store at `path` (creating the file and its directory if needed), brings its
    /// schema up to date and starts its thread.
    pub async fn open(path: &Path) -> Result<SqliteStore, StateError> {
        let path: Arc<Path> = Arc::from(path);
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = oneshot::channel();
        let thread_path = Arc::clone(&path);
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        let seen_revision = Arc::new(AtomicI64::new(-1));
        let (thread_changes, thread_seen) = (changes.clone(), Arc::clone(&seen_revision));
        std::thread::Builder::new()
            .name("warden-state".into())
            .spawn(move || {
                let (mut conn, opened) = match open_file(&thread_path) {
                    Ok((conn, migrated)) => {
                        thread_seen
                            .store(approvals_revision(&conn).unwrap_or(-1), Ordering::SeqCst);
                        let _ = ready.send(Ok(migrated));
                        // Taken once the file is open: what it is from now on.
                        (conn, identity(&thread_path))
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                // Polled every POLL_INTERVAL, between jobs however busy the store is.
                let mut polled = Instant::now();
                loop {
                    match queue.recv_timeout(POLL_INTERVAL.saturating_sub(polled.elapsed())) {
                        Ok(job) => match still_there(&thread_path, opened) {
                            Ok(()) => job(Ok(&mut conn)),
                            Err(moved) => job(Err(moved)),
                        },
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    if polled.elapsed() >= POLL_INTERVAL {
                        polled = Instant::now();
                        if thread_changes.receiver_count() > 0
                            && still_there(&thread_path, opened).is_ok()
                        {
                            poll_changes(&conn, &thread_changes, &thread_seen);
                        }
                    }
                }
            })
            .map_err(|source| StateError::Thread {
                path: path.to_path_buf(),
                source,
            })?;
        let migrated = opened.await.map_err(|_| StateError::Closed {
            store: path.display().to_string(),
        })??;
        Ok(SqliteStore {
            health: StoreHealth::new(&path.display().to_string()),
            path,
            jobs,
            changes,
            seen_revision,
            migrated,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What opening the store did to its schema.
    pub fn migrated(&self) -> Migrated {
        self.migrated
    }

    /// The outcomes of its operations.
    pub fn health(&self) -> StoreHealth {
        self.health.clone()
    }

    /// Runs `job`, an operation about `area`, on the store's thread (given the connection and
    /// the file's path, for its errors) and returns its result; its outcome goes to the store's
    /// [`StoreHealth`].
    pub(crate) async fn run<T, F>(&self, area: Area, job: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Path) -> Result<T, StateError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let path = Arc::clone(&self.path);
        let sent = self.jobs.send(Box::new(
            move |conn: Result<&mut Connection, StateError>| {
                let _ = answer.send(conn.and_then(|conn| job(conn, &path)));
            },
        ));
        let result = match sent {
            Ok(()) => answered.await.unwrap_or_else(|_| Err(self.closed())),
            Err(_) => Err(self.closed()),
        };
        self.health.observe(area, result)
    }

    fn closed(&self) -> StateError {
        StateError::Closed {
            store: self.path.display().to_string(),
        }
    }
}

/// Operations of one statement, each run as [`SqliteStore::run`] runs one, an operation about
/// `area` whose errors say it failed to `operation`. Its parameters are made by `params` of
/// the time now, read on the store's thread when the statement runs (see [`at_now`]), not when
/// the operation was asked for: it may wait behind the store's other jobs and another
/// process's transaction, and what it compares with the time (an expiry) or records of it (a
/// last use) must be of the moment it takes effect. Statements go through the connection's
/// cache of prepared statements.
impl SqliteStore {
    /// What `run` gives of `sql`'s prepared statement (from the connection's cache) and its
    /// parameters, made by `params` of the time now ([`at_now`]): the one body of the
    /// operations below, which differ only in the call they make on the statement.
    async fn statement<T, P, M, R>(
        &self,
        area: Area,
        operation: &'static str,
        sql: &'static str,
        params: M,
        run: R,
    ) -> Result<T, StateError>
    where
        T: Send + 'static,
        P: rusqlite::Params,
        M: FnOnce(i64) -> P + Send + 'static,
        R: FnOnce(&mut rusqlite::CachedStatement<'_>, P) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run(area, move |conn, path| {
            at_now(conn, sql, |conn, now| {
                run(&mut conn.prepare_cached(sql)?, params(now))
            })
            .map_err(query_error(path, operation))
        })
        .await
    }

    /// How many rows `sql` changed.
    async fn execute<P, M>(
        &self,
        area: Area,
        operation: &'static str,
        sql: &'static str,
        params: M,
    ) -> Result<usize, StateError>
    where
        P: rusqlite::Params,
        M: FnOnce(i64) -> P + Send + 'static,
    {
        self.statement(area, operation, sql, params, |statement, params| {
            statement.execute(params)
        })
        .await
    }

    /// The row `sql` answers, as `read` reads it; one it does not answer is an error.
    async fn query_one<T, P, M, F>(
        &self,
        area: Area,
        operation: &'static str,
        sql: &'static str,
        params: M,
        read: F,
    ) -> Result<T, StateError>
    where
        T: Send + 'static,
        P: rusqlite::Params,
        M: FnOnce(i64) -> P + Send + 'static,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.statement(area, operation, sql, params, |statement, params| {
            statement.query_row(params, read)
        })
        .await
    }

    /// The row `sql` answers, if any, as `read` reads it.
    async fn query_opt<T, P, M, F>(
        &self,
        area: Area,
        operation: &'static str,
        sql: &'static str,
        params: M,
        read: F,
    ) -> Result<Option<T>, StateError>
    where
        T: Send + 'static,
        P: rusqlite::Params,
        M: FnOnce(i64) -> P + Send + 'static,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.statement(area, operation, sql, params, |statement, params| {
            statement.query_row(params, read).optional()
        })
        .await
    }

    /// The rows `sql` answers, each as `read` reads it.
    async fn query<T, P, M, F>(
        &self,
        area: Area,
        operation: &'static str,
        sql: &'static str,
        params: M,
        read: F,
    ) -> Result<Vec<T>, StateError>
    where
        T: Send + 'static,
        P: rusqlite::Params,
        M: FnOnce(i64) -> P + Send + 'static,
        F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.statement(area, operation, sql, params, |statement, params| {
            statement.query_map(params, read)?.collect()
        })
        .await
    }

    /// The rows `sql` answers, each as `read` reads it, once `tidy` (a statement and what
    /// makes its parameters of the time now) has removed the rows past their time, in the
    /// same transaction and at the same time now.
    async fn query_tidied<T, Q, N, P, M, F>(
        &self,
        area: Area,
        operation: &'static str,
        tidy: (&'static str, N),
        sql: &'static str,
        params: M,
        read: F,
    ) -> Result<Vec<T>, StateError>
    where
        T: Send + 'static,
        Q: rusqlite::Params,
        N: FnOnce(i64) -> Q + Send + 'static,
        P: rusqlite::Params,
        M: FnOnce(i64) -> P + Send + 'static,
        F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run(area, move |conn, path| {
            let (tidy, tidy_params) = tidy;
            at_now(conn, tidy, |conn, now| {
                conn.prepare_cached(tidy)?.execute(tidy_params(now))?;
                rows(conn, sql, params(now), read)
            })
            .map_err(query_error(path, operation))
        })
        .await
    }

    /// Runs `sql` once for each of `rows`, with the parameters `params` makes of it and the
    /// time now (read once the write lock is held), in one immediate transaction; nothing of
    /// it is kept when one fails.
    async fn execute_each<R, P>(
        &self,
        area: Area,
        operation: &'static str,
        sql: &'static str,
        rows: Vec<R>,
        params: fn(R, i64) -> P,
    ) -> Result<(), StateError>
    where
        R: Send + 'static,
        P: rusqlite::Params + 'static,
    {
        self.run(area, move |conn, path| {
            let each = || -> rusqlite::Result<()> {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let now = now_ms();
                {
                    let mut statement = tx.prepare_cached(sql)?;
                    for row in rows {
                        statement.execute(params(row, now))?;
                    }
                }
                tx.commit()
            };
            each().map_err(query_error(path, operation))
        })
        .await
    }
}

/// The parameters of a statement that do not depend on the time, as the helpers above take
/// them.
fn fixed<P: Send + 'static>(params: P) -> impl FnOnce(i64) -> P + Send + 'static {
    move |_| params
}

/// Runs `run` on `conn` with the time now (milliseconds since the epoch), read as late as it
/// can be: when `sql` writes, in an immediate transaction once it holds the file's write lock
/// (after any wait for another process's transaction, as the approvals' writes read it), then
/// committed; when `sql` only reads, as it runs.
fn at_now<T>(
    conn: &mut Connection,
    sql: &str,
    run: impl FnOnce(&Connection, i64) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    if conn.prepare_cached(sql)?.readonly() {
        return run(conn, now_ms());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let done = run(&tx, now_ms())?;
    tx.commit()?;
    Ok(done)
}

/// The rows `sql` answers on `conn`, each as `read` reads it.
fn rows<T, P, F>(conn: &Connection, sql: &str, params: P, read: F) -> rusqlite::Result<Vec<T>>
where
    P: rusqlite::Params,
    F: FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
{
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(params, read)?;
    rows.collect()
}

/// The device and inode of the file at `path`; `None` when there is none.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Refuses when `path` no longer names the file that was `opened`.
fn still_there(path: &Path, opened: Option<(u64, u64)>) -> Result<(), StateError> {
    if opened.is_some() && identity(path) == opened {
        return Ok(());
    }
    Err(StateError::Moved {
        path: path.to_path_buf(),
    })
}

/// The approvals revision: it moves with every change of an approval, by any process.
fn approvals_revision(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT revision FROM revisions WHERE concern = 'approvals'",
        [],
        |row| row.get(0),
    )
}

/// Announces "any approval may have changed" when the approvals revision moved since this
/// process last saw it: another process wrote.
fn poll_changes(conn: &Connection, changes: &broadcast::Sender<Change>, seen: &AtomicI64) {
    match approvals_revision(conn) {
        Ok(revision) => {
            if seen.swap(revision, Ordering::SeqCst) != revision {
                let _ = changes.send(Arc::from(ANY));
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the approvals revision of the state store");
        }
    }
}

/// Opens (or creates) the file, sets it up for shared, durable use and migrates it.
fn open_file(path: &Path) -> Result<(Connection, Migrated), StateError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_files::create_dir_all(dir).map_err(|source| StateError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    let open = |source| StateError::Open {
        path: path.to_path_buf(),
        source,
    };
    create_private(path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(open)?;
    // The busy timeout first: switching to WAL itself waits for other connections.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(open)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StateError::NoWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .map_err(open)?;
    let migrated = migrations::migrate(&mut conn, path)?;
    Ok((conn, migrated))
}

/// Creates the store's file `0600` if it does not exist, before SQLite would create it `0644`
/// (less the umask); its `-wal` and `-shm` files take the same mode from it. What the store
/// holds (approvals, approvers' enrolments, canary tokens) is for Warden's user alone. An
/// existing file keeps its mode, with a warning when other users may read it.
fn create_private(path: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::PermissionsExt;
    let created = crate::private_files::options()
        .write(true)
        .create_new(true)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                    "the state store is readable by other users; run chmod 600 on it and its \
                     -wal and -shm files"
                );
            }
            Ok(())
        }
        Err(source) => Err(StateError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The error of `operation` failing on the store at `path`.
pub(crate) fn query_error(
    path: &Path,
    operation: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Query {
        path,
        operation,
        source,
    }
}

#[cfg(test)]
mod tests;

/// Runs `change` in one immediate transaction; bumps the revision of `concern` (which other
/// processes on the file poll) when it answers that it changed something.
pub(super) fn write_bumping(
    conn: &mut Connection,
    concern: &str,
    change: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<bool>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if change(&tx)? {
        tx.execute(
            "UPDATE revisions SET revision = revision + 1 WHERE concern = ?1",
            [concern],
        )?;
    }
    tx.commit()
}
