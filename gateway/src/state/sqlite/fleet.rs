//! [`FleetRepository`] on SQLite: the `budget_spend`, `rate_counts`, `session_labels`,
//! `session_counts`, `quarantine_denies` and `fleet_replicas` tables (one gateway and the CLI on one file; the same
//! counters as PostgreSQL's).

use futures_util::future::BoxFuture;
use rusqlite::{TransactionBehavior, params};

use super::{SqliteStore, query_error};
use crate::state::error::StateError;
use crate::state::fleet::{
    DenyWindow, FleetRepository, RateCount, SessionCount, SessionLabel, SpendRow, deny_times,
    deny_times_text,
};
use crate::state::health::Area;
use crate::state::pins::now_ms;

impl FleetRepository for SqliteStore {
    fn add_spend(&self, deltas: Vec<SpendRow>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let operation = "add budget spend";
            let now = now_ms();
            let mut add = || -> rusqlite::Result<()> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut statement = tx.prepare_cached(
                        "INSERT INTO budget_spend (scope, name, period, period_index, \
                         input_tokens, output_tokens, micro_usd, updated_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                         ON CONFLICT (scope, name, period, period_index) DO UPDATE SET \
                         input_tokens = CASE WHEN excluded.input_tokens \
                           > 9223372036854775807 - input_tokens \
                           THEN 9223372036854775807 \
                           ELSE input_tokens + excluded.input_tokens END, \
                         output_tokens = CASE WHEN excluded.output_tokens \
                           > 9223372036854775807 - output_tokens \
                           THEN 9223372036854775807 \
                           ELSE output_tokens + excluded.output_tokens END, \
                         micro_usd = CASE WHEN excluded.micro_usd \
                           > 9223372036854775807 - micro_usd \
                           THEN 9223372036854775807 \
                           ELSE micro_usd + excluded.micro_usd END, \
                         updated_ms = excluded.updated_ms",
                    )?;
                    for d in &deltas {
                        statement.execute(params![
                            d.scope,
                            d.name,
                            d.period,
                            d.index,
                            d.input_tokens,
                            d.output_tokens,
                            d.micro_usd,
                            now
                        ])?;
                    }
                }
                tx.commit()
            };
            add().map_err(query_error(path, operation))
        }))
    }

    fn spend(&self, day: i64, month: i64) -> BoxFuture<'_, Result<Vec<SpendRow>, StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let operation = "read budget spend";
            let mut statement = conn
                .prepare_cached(
                    "SELECT scope, name, period, period_index, input_tokens, output_tokens, \
                     micro_usd FROM budget_spend \
                     WHERE (period = 'day' AND period_index = ?1) \
                        OR (period = 'month' AND period_index = ?2) \
                     ORDER BY scope, name, period",
                )
                .map_err(query_error(path, operation))?;
            let rows = statement
                .query_map(params![day, month], |row| {
                    Ok(SpendRow {
                        scope: row.get(0)?,
                        name: row.get(1)?,
                        period: row.get(2)?,
                        index: row.get(3)?,
                        input_tokens: row.get(4)?,
                        output_tokens: row.get(5)?,
                        micro_usd: row.get(6)?,
                    })
                })
                .map_err(query_error(path, operation))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(query_error(path, operation))
        }))
    }

    fn reset_spend(
        &self,
        scope: Option<String>,
        name: Option<String>,
        (day, month): (i64, i64),
    ) -> BoxFuture<'_, Result<u64, StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let operation = "reset budget spend";
            let mut reset = || -> rusqlite::Result<u64> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    "DELETE FROM budget_spend \
                     WHERE (period = 'day' AND period_index < ?1) \
                        OR (period = 'month' AND period_index < ?2)",
                    params![day, month],
                )?;
                let n = tx.execute(
                    "DELETE FROM budget_spend WHERE (?1 IS NULL OR scope = ?1) \
                     AND (?2 IS NULL OR name = ?2)",
                    params![scope, name],
                )?;
                tx.commit()?;
                Ok(n as u64)
            };
            reset().map_err(query_error(path, operation))
        }))
    }

    fn publish_counts(&self, counts: Vec<RateCount>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let mut publish = || -> rusqlite::Result<()> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut statement = tx.prepare_cached(
                        "INSERT INTO rate_counts (replica, bucket, admitted, interval_ns, \
                         updated_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
                         ON CONFLICT (replica, bucket) DO UPDATE SET \
                         admitted = excluded.admitted, interval_ns = excluded.interval_ns, \
                         updated_ms = excluded.updated_ms",
                    )?;
                    for c in &counts {
                        statement.execute(params![
                            c.replica,
                            c.bucket,
                            c.admitted,
                            c.interval_ns,
                            c.updated_ms
                        ])?;
                    }
                }
                tx.commit()
            };
            publish().map_err(query_error(path, "publish rate-limit counts"))
        }))
    }

    fn counts(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<RateCount>, StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let operation = "read rate-limit counts";
            conn.execute(
                "DELETE FROM rate_counts WHERE updated_ms < ?1",
                params![since_ms],
            )
            .map_err(query_error(path, operation))?;
            let mut statement = conn
                .prepare_cached(
                    "SELECT replica, bucket, admitted, interval_ns, updated_ms FROM rate_counts",
                )
                .map_err(query_error(path, operation))?;
            let rows = statement
                .query_map([], |row| {
                    Ok(RateCount {
                        replica: row.get(0)?,
                        bucket: row.get(1)?,
                        admitted: row.get(2)?,
                        interval_ns: row.get(3)?,
                        updated_ms: row.get(4)?,
                    })
                })
                .map_err(query_error(path, operation))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(query_error(path, operation))
        }))
    }

    fn add_labels(&self, labels: Vec<SessionLabel>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let now = now_ms();
            let mut add = || -> rusqlite::Result<()> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut statement = tx.prepare_cached(
                        "INSERT INTO session_labels (session, label, expires_ms, updated_ms, \
                         owner) VALUES (?1, ?2, ?3, ?4, ?5) \
                         ON CONFLICT (session, label) DO UPDATE SET \
                         expires_ms = max(expires_ms, excluded.expires_ms), \
                         updated_ms = excluded.updated_ms, owner = excluded.owner",
                    )?;
                    for l in &labels {
                        statement.execute(params![
                            l.session,
                            l.label,
                            l.expires_ms,
                            now,
                            l.owner
                        ])?;
                    }
                }
                tx.commit()
            };
            add().map_err(query_error(path, "store session labels"))
        }))
    }

    fn labels(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<SessionLabel>, StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let operation = "read session labels";
            let now = now_ms();
            conn.execute(
                "DELETE FROM session_labels WHERE expires_ms <= ?1",
                params![now],
            )
            .map_err(query_error(path, operation))?;
            let mut statement = conn
                .prepare_cached(
                    "SELECT session, label, expires_ms, updated_ms, owner FROM session_labels \
                     WHERE updated_ms >= ?1 ORDER BY updated_ms",
                )
                .map_err(query_error(path, operation))?;
            let rows = statement
                .query_map(params![since_ms], |row| {
                    Ok(SessionLabel {
                        session: row.get(0)?,
                        label: row.get(1)?,
                        expires_ms: row.get(2)?,
                        updated_ms: row.get(3)?,
                        owner: row.get(4)?,
                    })
                })
                .map_err(query_error(path, operation))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(query_error(path, operation))
        }))
    }

    fn publish_session_counts(
        &self,
        counts: Vec<SessionCount>,
    ) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let now = now_ms();
            let mut publish = || -> rusqlite::Result<()> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut statement = tx.prepare_cached(
                        "INSERT INTO session_counts (replica, session, actions, keys, \
                         expires_ms, updated_ms, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                         ON CONFLICT (replica, session) DO UPDATE SET \
                         actions = excluded.actions, keys = excluded.keys, \
                         expires_ms = excluded.expires_ms, updated_ms = excluded.updated_ms, \
                         owner = excluded.owner",
                    )?;
                    for c in &counts {
                        statement.execute(params![
                            c.replica,
                            c.session,
                            c.actions,
                            c.keys,
                            c.expires_ms,
                            now,
                            c.owner
                        ])?;
                    }
                }
                tx.commit()
            };
            publish().map_err(query_error(path, "publish session counts"))
        }))
    }

    fn session_counts(
        &self,
        replica: String,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<SessionCount>, StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let operation = "read session counts";
            conn.execute(
                "DELETE FROM session_counts WHERE expires_ms <= ?1",
                params![now_ms()],
            )
            .map_err(query_error(path, operation))?;
            let mut statement = conn
                .prepare_cached(
                    "SELECT replica, session, actions, keys, expires_ms, updated_ms, owner \
                     FROM session_counts WHERE updated_ms >= ?1 AND replica <> ?2 \
                     ORDER BY updated_ms",
                )
                .map_err(query_error(path, operation))?;
            let rows = statement
                .query_map(params![since_ms, replica], |row| {
                    Ok(SessionCount {
                        replica: row.get(0)?,
                        session: row.get(1)?,
                        actions: row.get(2)?,
                        keys: row.get(3)?,
                        expires_ms: row.get(4)?,
                        updated_ms: row.get(5)?,
                        owner: row.get(6)?,
                    })
                })
                .map_err(query_error(path, operation))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(query_error(path, operation))
        }))
    }

    fn publish_denies(&self, windows: Vec<DenyWindow>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.run(Area::Quarantine, move |conn, path| {
            let now = now_ms();
            let mut publish = || -> rusqlite::Result<()> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut statement = tx.prepare_cached(
                        "INSERT INTO quarantine_denies (replica, agent, at_ms, fired_ms, \
                         expires_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                         ON CONFLICT (replica, agent) DO UPDATE SET at_ms = excluded.at_ms, \
                         fired_ms = excluded.fired_ms, expires_ms = excluded.expires_ms, \
                         updated_ms = excluded.updated_ms",
                    )?;
                    for w in &windows {
                        statement.execute(params![
                            w.replica,
                            w.agent,
                            deny_times_text(&w.at_ms),
                            w.fired_ms,
                            w.expires_ms,
                            now
                        ])?;
                    }
                }
                tx.commit()
            };
            publish().map_err(query_error(path, "publish recent denies"))
        }))
    }

    fn denies(&self, replica: String) -> BoxFuture<'_, Result<Vec<DenyWindow>, StateError>> {
        Box::pin(self.run(Area::Quarantine, move |conn, path| {
            let operation = "read recent denies";
            conn.execute(
                "DELETE FROM quarantine_denies WHERE expires_ms <= ?1",
                params![now_ms()],
            )
            .map_err(query_error(path, operation))?;
            let mut statement = conn
                .prepare_cached(
                    "SELECT replica, agent, at_ms, fired_ms, expires_ms FROM quarantine_denies \
                     WHERE replica <> ?1",
                )
                .map_err(query_error(path, operation))?;
            let rows = statement
                .query_map(params![replica], |row| {
                    Ok(DenyWindow {
                        replica: row.get(0)?,
                        agent: row.get(1)?,
                        at_ms: deny_times(&row.get::<_, String>(2)?),
                        fired_ms: row.get(3)?,
                        expires_ms: row.get(4)?,
                    })
                })
                .map_err(query_error(path, operation))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(query_error(path, operation))
        }))
    }

    fn seen(
        &self,
        replica: String,
        now_ms: i64,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let mut seen = || -> rusqlite::Result<u64> {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute(
                    "INSERT INTO fleet_replicas (replica, seen_ms) VALUES (?1, ?2) \
                     ON CONFLICT (replica) DO UPDATE SET seen_ms = excluded.seen_ms",
                    params![replica, now_ms],
                )?;
                tx.execute(
                    "DELETE FROM fleet_replicas WHERE seen_ms < ?1",
                    params![since_ms],
                )?;
                let n: i64 =
                    tx.query_row("SELECT count(*) FROM fleet_replicas", [], |r| r.get(0))?;
                tx.commit()?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            seen().map_err(query_error(path, "mark this replica seen"))
        }))
    }
}
