//! The store's tests, run on both backends: each test is a function of a [`Backend`], and
//! `on_both_backends!` makes a SQLite and a PostgreSQL test of it
//! (`state::tests::sqlite::…`, `state::tests::postgres::…`). The PostgreSQL tests need the
//! cluster `tests/run` starts (`WARDEN_TEST_PG_URL`); each creates a database named after
//! itself, so they run in parallel. Without the cluster they fail and say to use tests/run.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use tracing_subscriber::Layer as _;

use super::Store;
use super::postgres::{PostgresOptions, PostgresStore};
use super::sqlite::SqliteStore;

/// Where a test's store is: a SQLite file of its own, or a PostgreSQL database of its own.
pub(super) enum Backend {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        url: String,
    },
}

impl Backend {
    /// A new SQLite file in a directory of the test's own.
    pub(super) async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("state.db");
        Backend::Sqlite { _dir: dir, path }
    }

    /// A new database on the run's cluster, named after the test.
    pub(super) async fn postgres(test: &str) -> Backend {
        Backend::Postgres {
            url: fresh_database(test).await,
        }
    }

    /// A new handle on the store: another process on the file, another replica on the
    /// database.
    pub(super) async fn open(&self) -> Store {
        match self {
            Backend::Sqlite { path, .. } => Store::sqlite(SqliteStore::open(path).await.unwrap()),
            Backend::Postgres { url } => Store::postgres(
                PostgresStore::connect(options(url))
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
        }
    }

    /// Runs `sql` on the store behind the repositories' back (as an operator with the
    /// database's own client would).
    pub(super) async fn execute(&self, sql: &str) {
        match self {
            Backend::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Backend::Postgres { url } => {
                psql(url, sql).await;
            }
        }
    }
}

/// What is logged at `level` and above, on any thread, while the guard lives.
///
/// The capture is a process-wide subscriber, set once, that hands each event to every live
/// capture. A per-test `set_default` subscriber misses events when the test runs beside
/// others: while it is the only dispatcher tracing knows, a callsite first reached on another
/// thread (another test opening its store) caches its interest from *that* thread's
/// subscriber — none — as "never", and `rebuild_interest_cache` on such a thread sets the
/// global max level to OFF; the capture then sees nothing. A global subscriber is what every
/// thread sees, spawn_blocking and runtime workers included. Events of other tests arrive too:
/// a test picks its own lines out (by its store's name).
pub(super) fn capture_logs(level: tracing::Level) -> (CaptureGuard, CapturedLogs) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_thread_ids(true)
            .with_writer(Router)
            .with_filter(
                tracing_subscriber::filter::DynFilterFn::new(|meta, _| {
                    live_captures().iter().any(|(l, _)| meta.level() <= l)
                })
                // Asked per event, never cached: what is enabled changes as captures come
                // and go.
                .with_callsite_filter(|_| tracing::subscriber::Interest::sometimes()),
            );
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber)
            .expect("the state tests' log capture is the process's only global subscriber");
    });
    let captured = CapturedLogs::default();
    let capture = std::sync::Arc::new((level, captured.clone()));
    CAPTURES
        .lock()
        .unwrap()
        .push(std::sync::Arc::downgrade(&capture));
    (CaptureGuard { _capture: capture }, captured)
}

/// A live capture: its level and its text.
type Capture = (tracing::Level, CapturedLogs);

/// The captures alive (dropped ones are pruned).
static CAPTURES: std::sync::Mutex<Vec<std::sync::Weak<Capture>>> =
    std::sync::Mutex::new(Vec::new());

fn live_captures() -> Vec<(tracing::Level, CapturedLogs)> {
    let mut captures = CAPTURES.lock().unwrap();
    captures.retain(|c| c.strong_count() > 0);
    captures
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .map(|c| (c.0, c.1.clone()))
        .collect()
}

/// Ends its capture when dropped.
pub(super) struct CaptureGuard {
    _capture: std::sync::Arc<Capture>,
}

/// Writes each formatted event to the captures whose level admits it.
struct Router;

/// One event's line, for the captures of `level` and above.
struct Routed(tracing::Level);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Router {
    type Writer = Routed;

    fn make_writer(&'a self) -> Routed {
        Routed(tracing::Level::TRACE)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Routed {
        Routed(*meta.level())
    }
}

impl std::io::Write for Routed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for (level, mut captured) in live_captures() {
            if self.0 <= level {
                captured.write_all(buf)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log text [`capture_logs`] gathers.
#[derive(Clone, Default)]
pub(super) struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything logged so far.
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines logged on the calling thread (a current-thread runtime's tasks included).
    pub(super) fn this_thread(&self) -> String {
        let id = format!("{:?}", std::thread::current().id());
        let mut lines = String::new();
        for line in self.text().lines().filter(|l| l.contains(&id)) {
            lines.push_str(line);
            lines.push('\n');
        }
        lines
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How the tests connect to `url`.
pub(super) fn options(url: &str) -> PostgresOptions {
    PostgresOptions {
        url: zeroize::Zeroizing::new(url.to_owned()),
        pool_size: 4,
        connect_timeout: std::time::Duration::from_secs(10),
        query_timeout: std::time::Duration::from_secs(10),
        ca_file: None,
    }
}

/// Creates (again) the database of test `test` on the cluster tests/run started; its URL.
pub(super) async fn fresh_database(test: &str) -> String {
    let test = test.to_owned();
    // Here, so that without the cluster the test fails with what to do.
    let pg = warden_e2e::postgres::Postgres::from_env();
    tokio::task::spawn_blocking(move || {
        let name = database_name(&test);
        pg.query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        pg.query(&format!("CREATE DATABASE {name}"));
        format!(
            "postgres://{}:{}@{}/{name}?sslmode=disable",
            pg.superuser(),
            pg.password(),
            pg.host_port()
        )
    })
    .await
    .unwrap()
}

/// Drops the database of test `test`, whoever is connected to it.
pub(super) async fn drop_database(test: &str) {
    let pg = warden_e2e::postgres::Postgres::from_env();
    let name = database_name(test);
    tokio::task::spawn_blocking(move || {
        pg.query(&format!("DROP DATABASE {name} WITH (FORCE)"));
    })
    .await
    .unwrap();
}

/// Runs `sql` as the cluster's superuser in the database of `url`.
pub(super) async fn psql(url: &str, sql: &str) -> String {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(
            std::env::var_os("WARDEN_TEST_PSQL").unwrap_or_else(|| "psql".into()),
        )
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &url,
            "-c",
            &sql,
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
    .await
    .unwrap()
}

/// A database name for `test`: readable, unique, within PostgreSQL's 63 bytes.
fn database_name(test: &str) -> String {
    let digest = hex::encode(&Sha256::digest(test.as_bytes())[..4]);
    let short: String = test.chars().take(40).collect();
    format!("warden_{short}_{digest}")
}

/// Holds a lock from another connection until `until_ms`, as another replica's transaction
/// would, and returns once it is held: on SQLite the whole store (a write transaction); on
/// PostgreSQL what `lock` (statements run in a transaction) takes, held once this database's
/// `pg_locks` has a row `l` of another session matching `held`.
pub(super) async fn hold_lock(
    backend: &Backend,
    lock: &str,
    held: &str,
    until_ms: i64,
) -> tokio::task::JoinHandle<()> {
    use std::time::{Duration, Instant};
    let held_for =
        move || Duration::from_millis(u64::try_from(until_ms - super::pins::now_ms()).unwrap_or(0));
    match backend {
        Backend::Sqlite { path, .. } => {
            let path = path.clone();
            let (locked, is_locked) = tokio::sync::oneshot::channel();
            let holding = tokio::task::spawn_blocking(move || {
                let mut conn = rusqlite::Connection::open(path).unwrap();
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .unwrap();
                locked.send(()).unwrap();
                std::thread::sleep(held_for());
                tx.commit().unwrap();
            });
            is_locked.await.unwrap();
            holding
        }
        Backend::Postgres { url } => {
            let seconds = held_for().as_secs_f64();
            let sql = format!("BEGIN; {lock}; SELECT pg_sleep({seconds}); COMMIT;");
            let holding = {
                let url = url.clone();
                tokio::spawn(async move {
                    psql(&url, &sql).await;
                })
            };
            let probe = format!(
                "SELECT count(*) FROM pg_locks l WHERE ({held}) \
                 AND l.pid <> pg_backend_pid() \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while psql(url, &probe).await == "0" {
                assert!(Instant::now() < deadline, "the lock was never taken");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            holding
        }
    }
}

/// A SQLite and a PostgreSQL test of each `async fn name(backend: Backend)` named.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::state::tests::Backend::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(
                        crate::state::tests::Backend::postgres(concat!(
                            module_path!(),
                            "::",
                            stringify!($name)
                        ).trim_start_matches("warden::state::tests::").replace("::", "_").as_str())
                        .await,
                    )
                    .await
                }
            )*
        }
    };
}

mod approvals;
mod bundle_floors;
mod canaries;
mod factors;
mod fleet;
mod pins;
mod quarantine;
mod revocations;
mod sessions;
