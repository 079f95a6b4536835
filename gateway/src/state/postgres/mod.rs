//! The state store in a PostgreSQL database (`state.postgres`), shared by several replicas.
//!
//! `tokio-postgres` with a `deadpool-postgres` pool, TLS by rustls (`tokio-postgres-rustls`;
//! `sslmode=verify-full` and `verify-ca` read by `tls.rs`).
//! The pool and its connections live on a runtime of their own, on a thread of its own
//! (`warden-state-pg`): every query is a task sent there, so the store works the same from
//! any of Warden's runtimes (each proxy worker runs its own) and no connection is tied to a
//! worker's event loop. The schema is migrated at start under an advisory lock
//! (`migrations.rs`). Changes of approvals are announced with `NOTIFY` in the transaction that
//! makes them; every store keeps one connection that `LISTEN`s (`listen.rs`), so an approval
//! decided on one replica wakes the requests held on every other.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, oneshot};
use tokio_postgres::GenericClient;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::approvals::{CHANGES_CAPACITY, Change};
use super::error::{Causes, StateError};
use super::health::{Area, StoreHealth};
use super::migrated::Migrated;

mod approvals;
mod bundle_floors;
mod canaries;
mod factors;
mod fleet;
mod kept;
mod listen;
mod migrations;
mod notices;
mod pins;
mod quarantine;
mod revocations;
mod sessions;
pub mod ssl_mode;
pub mod tls;

/// How to reach the database: what `state.postgres` says, with the URL read from its source.
pub struct PostgresOptions {
    /// The connection URL (holds the password: never logged, never in an error).
    pub url: zeroize::Zeroizing<String>,
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// Longest one operation (its statements, a transaction's included) may take once it has
    /// its connection.
    pub query_timeout: Duration,
    /// PEM certificates of a CA trusted besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// A handle on the PostgreSQL state store; cheap to clone. Its runtime ends with the last
/// handle.
#[derive(Clone)]
pub struct PostgresStore {
    /// `host:port/database` as user@…, for messages (no password).
    database: Arc<str>,
    pool: Pool,
    /// For cancelling a statement that outlives `query_timeout`.
    tls: MakeRustlsConnect,
    query_timeout: Duration,
    runtime: tokio::runtime::Handle,
    changes: broadcast::Sender<Change>,
    /// Quarantine changes announced by any replica.
    quarantine_changes: broadcast::Sender<()>,
    /// Token revocation changes announced by any replica.
    revocation_changes: broadcast::Sender<()>,
    /// What connecting did to the schema.
    migrated: Migrated,
    /// The outcomes of its operations.
    health: StoreHealth,
    _stop: Arc<oneshot::Sender<()>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects, brings the schema up to date (refusing a database from a newer Warden) and
    /// starts listening for changes.
    pub async fn connect(options: PostgresOptions) -> Result<PostgresStore, StateError> {
        let translated = tls::translate(&options.url);
        let ca_file = tls::ca_file(&translated, options.ca_file.as_deref())?;
        let url = &translated.url;
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StateError::PostgresUrlInvalid {
                    reason: e.to_string(),
                })?;
        config.connect_timeout(options.connect_timeout);
        config.application_name("warden");
        let database: Arc<str> = Arc::from(describe(&config));
        if let Some(warning) = ssl_mode::settle(url, &mut config, &database) {
            tracing::warn!("{warning}");
        }
        let tls = MakeRustlsConnect::new(
            tls::client_config(ca_file.as_deref(), translated.verify).await?,
        );

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StateError::PostgresConnect {
                database: database.to_string(),
                reason: format!("cannot start its runtime: {e}"),
            })?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("warden-state-pg".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StateError::PostgresConnect {
                database: database.to_string(),
                reason: format!("cannot start its thread: {e}"),
            })?;

        let manager = Manager::from_connect(
            config.clone(),
            notices::LoggingConnect { tls: tls.clone() },
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StateError::PostgresConnect {
                database: database.to_string(),
                reason: e.to_string(),
            })?;
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        let mut store = PostgresStore {
            database: Arc::clone(&database),
            pool,
            tls: tls.clone(),
            query_timeout: options.query_timeout,
            runtime: handle,
            changes,
            quarantine_changes: broadcast::channel(CHANGES_CAPACITY).0,
            revocation_changes: broadcast::channel(CHANGES_CAPACITY).0,
            migrated: Migrated { from: 0, to: 0 },
            health: StoreHealth::new(&database),
            _stop: Arc::new(stop),
        };
        let (pool, database) = (store.pool.clone(), Arc::clone(&store.database));
        store.migrated = store
            .spawn(async move {
                let mut client = get(&pool, &database).await?;
                migrations::migrate(&mut client, &database).await
            })
            .await?;
        let listening = listen::start(
            &store.runtime,
            listen::Connection {
                config,
                tls,
                database: Arc::clone(&store.database),
                health: store.health.clone(),
            },
            listen::Relays {
                approvals: store.changes.clone(),
                quarantine: store.quarantine_changes.clone(),
                revocations: store.revocation_changes.clone(),
            },
        );
        let database = Arc::clone(&store.database);
        store
            .spawn(async move {
                listening
                    .await
                    .map_err(|reason| StateError::PostgresConnect {
                        database: database.to_string(),
                        reason: format!("cannot listen for changes: {reason}"),
                    })
            })
            .await?;
        Ok(store)
    }

    /// The database, as `user@host:port/database`, for messages.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// What connecting did to the schema.
    pub fn migrated(&self) -> Migrated {
        self.migrated
    }

    /// The outcomes of its operations.
    pub fn health(&self) -> StoreHealth {
        self.health.clone()
    }

    /// Runs `work` on the store's runtime and returns its result.
    async fn spawn<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StateError>> + Send + 'static,
    ) -> Result<T, StateError> {
        self.runtime
            .spawn(work)
            .await
            .map_err(|_| StateError::Closed {
                store: self.database.to_string(),
            })?
    }

    /// Runs `work`, an operation about `area`, with a pooled connection on the store's runtime,
    /// within `query_timeout`: past it, the server is told to cancel the statement running (a
    /// lock waited for, a server too busy), `work` is given a moment to end with that, and the
    /// operation fails with [`StateError::PostgresTimeout`]. Its outcome goes to the store's
    /// [`StoreHealth`].
    async fn with_client<T, F, Fut>(&self, area: Area, work: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object, Arc<str>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StateError>> + Send,
    {
        let (pool, database) = (self.pool.clone(), Arc::clone(&self.database));
        let (tls, timeout) = (self.tls.clone(), self.query_timeout);
        let result = self
            .spawn(async move {
                let client = get(&pool, &database).await?;
                let cancel = client.cancel_token();
                let created = deadpool_postgres::Object::metrics(&client).created;
                {
                    let mut work = std::pin::pin!(work(client, Arc::clone(&database)));
                    if let Ok(done) = tokio::time::timeout(timeout, &mut work).await {
                        return done;
                    }
                    // Cancelled while `work` still holds the connection, so the cancellation
                    // reaches this statement and no later user's; a server that does not answer at
                    // all leaves the connection to its TCP timeouts.
                    let _ = tokio::time::timeout(CANCEL_WAIT, cancel.cancel_query(tls)).await;
                    let _ = tokio::time::timeout(CANCEL_WAIT, &mut work).await;
                }
                // Dropping `work` gave the connection back to the pool, perhaps with its statement
                // still running or a cancellation still on its way: it is taken out before anyone
                // else can get it (the store's runtime is single-threaded, so no one can in
                // between), closed rather than shared.
                pool.retain(|_, metrics| metrics.created != created);
                Err(StateError::PostgresTimeout {
                    database: database.to_string(),
                    timeout,
                })
            })
            .await;
        self.health.observe(area, result)
    }
}

/// A statement's parameter, owned: the statement runs on the store's runtime.
pub(super) type Param = Box<dyn tokio_postgres::types::ToSql + Send + Sync>;

/// `params` as `tokio-postgres` takes them.
fn borrowed(params: &[Param]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| &**p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// Operations of one statement, each run as [`PostgresStore::with_client`] runs one, an
/// operation about `area` whose errors say it failed to `operation`. Its parameters are made
/// by `params` of the time now, read on the store's runtime once the operation holds its
/// connection, not when it was asked for: it may wait for a connection (up to
/// `connect_timeout`), and what it compares with the time (an expiry) or records of it (a last
/// use) must be of the moment it takes effect. [`PostgresStore::run_locked`] reads it later
/// still, once it holds the row's lock.
impl PostgresStore {
    /// What `statement` answers ([`Execute`], [`QueryOpt`], [`Query`]).
    async fn run<S: Statement, const N: usize>(
        &self,
        area: Area,
        operation: &'static str,
        statement: S,
        params: impl FnOnce(i64) -> [Param; N] + Send + 'static,
    ) -> Result<S::Answer, StateError> {
        self.with_client(area, move |client, db| async move {
            let client: &tokio_postgres::Client = &client;
            statement
                .run(client, &borrowed(&params(super::pins::now_ms())))
                .await
                .map_err(query_error(&db, operation))
        })
        .await
    }

    /// What `statement` answers, run as [`locked_at_now`] runs it.
    async fn run_locked<S: Statement, const N: usize>(
        &self,
        area: Area,
        operation: &'static str,
        lock: (&'static str, Param),
        statement: S,
        params: impl FnOnce(i64) -> [Param; N] + Send + 'static,
    ) -> Result<S::Answer, StateError> {
        self.with_client(area, move |mut client, db| async move {
            let err = || query_error(&db, operation);
            let tx = client.transaction().await.map_err(err())?;
            let now = locked_at_now(&tx, lock).await.map_err(err())?;
            let answer = statement
                .run(&*tx, &borrowed(&params(now)))
                .await
                .map_err(err())?;
            tx.commit().await.map_err(err())?;
            Ok(answer)
        })
        .await
    }

    /// Runs `sql` once for each of `rows`, with the parameters `params` makes of it and the
    /// time now, in one transaction; nothing of it is kept when one fails.
    async fn execute_each<R: Send + 'static, const N: usize>(
        &self,
        area: Area,
        operation: &'static str,
        sql: &'static str,
        rows: Vec<R>,
        params: fn(R, i64) -> [Param; N],
    ) -> Result<(), StateError> {
        self.with_client(area, move |mut client, db| async move {
            let err = || query_error(&db, operation);
            let tx = client.transaction().await.map_err(err())?;
            let statement = tx.prepare_cached(sql).await.map_err(err())?;
            let now = super::pins::now_ms();
            for row in rows {
                tx.execute(&statement, &borrowed(&params(row, now)))
                    .await
                    .map_err(err())?;
            }
            tx.commit().await.map_err(err())
        })
        .await
    }
}

/// A statement for [`PostgresStore::run`] and [`PostgresStore::run_locked`], and what is
/// wanted of it: how many rows it changed ([`Execute`]), its row if any ([`QueryOpt`]), its
/// rows ([`Query`]).
trait Statement: Send + 'static {
    type Answer: Send + 'static;

    /// Runs it on `client` (a connection, or a transaction of one) with `params`.
    fn run<'a>(
        self,
        client: &'a (impl GenericClient + Sync),
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Self::Answer, tokio_postgres::Error>>;
}

/// How many rows the statement changed.
struct Execute(&'static str);

/// The row the statement answers, if any.
struct QueryOpt(&'static str);

/// The rows the statement answers.
struct Query(&'static str);

impl Statement for Execute {
    type Answer = u64;

    fn run<'a>(
        self,
        client: &'a (impl GenericClient + Sync),
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> BoxFuture<'a, Result<u64, tokio_postgres::Error>> {
        client.execute(self.0, params)
    }
}

impl Statement for QueryOpt {
    type Answer = Option<tokio_postgres::Row>;

    fn run<'a>(
        self,
        client: &'a (impl GenericClient + Sync),
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Self::Answer, tokio_postgres::Error>> {
        client.query_opt(self.0, params)
    }
}

impl Statement for Query {
    type Answer = Vec<tokio_postgres::Row>;

    fn run<'a>(
        self,
        client: &'a (impl GenericClient + Sync),
        params: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)],
    ) -> BoxFuture<'a, Result<Self::Answer, tokio_postgres::Error>> {
        client.query(self.0, params)
    }
}

/// The parameters of a statement that do not depend on the time, as the helpers above take
/// them.
fn fixed<const N: usize>(params: [Param; N]) -> impl FnOnce(i64) -> [Param; N] + Send + 'static {
    move |_| params
}

/// In transaction `tx`, takes the row lock `lock` names (a `SELECT … FOR UPDATE` of the row a
/// statement then changes, and its one parameter) and reads the time once it is held: another
/// replica's change of the row that held it meanwhile (a resume of the same session, a claim
/// of its refresh) is waited for before the time is read, so what the statement compares with
/// it (an expiry) or records of it (a last use) is of the moment it takes effect, as on SQLite
/// (whose clock is read once the file's write lock is held).
async fn locked_at_now(
    tx: &deadpool_postgres::Transaction<'_>,
    (lock, key): (&'static str, Param),
) -> Result<i64, tokio_postgres::Error> {
    tx.query(lock, &borrowed(std::slice::from_ref(&key)))
        .await?;
    Ok(super::pins::now_ms())
}

/// How long a cancellation, and the operation it cancels, may take to end.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// A connection from the pool.
async fn get(pool: &Pool, database: &str) -> Result<deadpool_postgres::Object, StateError> {
    pool.get().await.map_err(|e| StateError::PostgresConnect {
        database: database.to_owned(),
        reason: match e {
            deadpool_postgres::PoolError::Backend(e) => Causes(&e).to_string(),
            deadpool_postgres::PoolError::Timeout(_) => {
                "no connection within state.postgres.connect_timeout".into()
            }
            other => other.to_string(),
        },
    })
}

/// The error of `operation` failing on `database`.
pub(crate) fn query_error(
    database: &str,
    operation: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> StateError {
    let database = database.to_owned();
    move |source| StateError::PostgresQuery {
        database,
        operation,
        source,
    }
}

/// The warning `url` earns for letting connections to a database off this machine go in plain
/// text ([`ssl_mode`]), for `warden check`; nothing for a URL that does not parse (connecting
/// says why).
pub fn plain_text_warning(url: &str) -> Option<ssl_mode::PlainText> {
    let url = tls::translate(url).url;
    let mut config: tokio_postgres::Config = url.parse().ok()?;
    let database = describe(&config);
    ssl_mode::settle(&url, &mut config, &database)
}

/// [`plain_text_warning`] for `state.postgres` as configured, its URL read now when it comes
/// from an environment variable or a file (from Vault it is read at start, which warns then).
pub fn configured_plain_text(
    postgres: &super::config::PostgresConfig,
) -> Option<ssl_mode::PlainText> {
    plain_text_warning(&configured_url(postgres)?)
}

/// What makes `state.postgres`'s TLS settings unusable before connecting (`sslmode=verify-ca`
/// without a CA file, `sslrootcert` naming another CA file than `state.postgres.tls.ca_file`,
/// `sslrootcert=system` with a mode that does not verify the host name), for `warden check`;
/// its URL read as [`configured_plain_text`] reads it (from Vault, connecting at start refuses
/// it).
pub fn configured_tls_fault(postgres: &super::config::PostgresConfig) -> Option<StateError> {
    let translated = tls::translate(&configured_url(postgres)?);
    tls::ca_file(&translated, postgres.tls.ca_file.as_deref()).err()
}

/// `state.postgres.url` read from its environment variable or file; nothing from Vault or when
/// it cannot be read (starting says why).
fn configured_url(postgres: &super::config::PostgresConfig) -> Option<zeroize::Zeroizing<String>> {
    use crate::secrets::config::CredentialSource;
    Some(zeroize::Zeroizing::new(match &postgres.url {
        CredentialSource::Env(name) => std::env::var(name).ok()?,
        CredentialSource::File(path) => std::fs::read_to_string(path).ok()?,
        CredentialSource::Vault(_) => return None,
    }))
}

/// `user@host:port/database`: where the URL points, without its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{dbname}")
}

#[cfg(test)]
mod tests;

/// A revision other replicas read, and the channel its changes are announced on.
pub(super) struct Concern {
    pub revision: &'static str,
    pub channel: &'static str,
}

/// Bumps `concern`'s revision, announces the change to every replica (once committed) and
/// commits.
pub(super) async fn announce(
    tx: deadpool_postgres::Transaction<'_>,
    db: &str,
    operation: &'static str,
    concern: Concern,
) -> Result<(), StateError> {
    let err = || query_error(db, operation);
    tx.execute(
        "UPDATE revisions SET revision = revision + 1 WHERE concern = $1",
        &[&concern.revision],
    )
    .await
    .map_err(err())?;
    tx.execute("SELECT pg_notify($1, '')", &[&concern.channel])
        .await
        .map_err(err())?;
    tx.commit().await.map_err(err())
}
