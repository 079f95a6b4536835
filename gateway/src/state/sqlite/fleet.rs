//! [`FleetRepository`] on SQLite: the `budget_spend`, `budget_resets`, `rate_counts`, `session_labels`,
//! `session_counts`, `quarantine_denies` and `fleet_replicas` tables (one gateway and the CLI on one file; the same
//! counters as PostgreSQL's).

use futures_util::future::BoxFuture;
use rusqlite::{TransactionBehavior, params};

use super::{SqliteStore, fixed, query_error};
use crate::state::error::StateError;
use crate::state::fleet::{
    DenyWindow, FleetRepository, RESETS_KEPT_MS, RESETS_READ_MAX, RateCount, SessionCount,
    SessionLabel, SpendReset, SpendResetRecord, SpendRow, deny_times, deny_times_text,
};
use crate::state::health::Area;
use crate::state::pins::now_ms;
use crate::state::quarantine::Actor;

impl FleetRepository for SqliteStore {
    fn add_spend(&self, deltas: Vec<SpendRow>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Fleet,
            "add budget spend",
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
            deltas,
            |d, now| {
                (
                    d.scope,
                    d.name,
                    d.period,
                    d.index,
                    d.input_tokens,
                    d.output_tokens,
                    d.micro_usd,
                    now,
                )
            },
        ))
    }

    fn spend(&self, day: i64, month: i64) -> BoxFuture<'_, Result<Vec<SpendRow>, StateError>> {
        Box::pin(self.query(
            Area::Fleet,
            "read budget spend",
            "SELECT scope, name, period, period_index, input_tokens, output_tokens, \
             micro_usd FROM budget_spend \
             WHERE (period = 'day' AND period_index = ?1) \
                OR (period = 'month' AND period_index = ?2) \
             ORDER BY scope, name, period",
            fixed((day, month)),
            |row| {
                Ok(SpendRow {
                    scope: row.get(0)?,
                    name: row.get(1)?,
                    period: row.get(2)?,
                    index: row.get(3)?,
                    input_tokens: row.get(4)?,
                    output_tokens: row.get(5)?,
                    micro_usd: row.get(6)?,
                })
            },
        ))
    }

    fn reset_spend(
        &self,
        reset: SpendReset,
        (day, month): (i64, i64),
    ) -> BoxFuture<'_, Result<SpendResetRecord, StateError>> {
        Box::pin(self.run(Area::Fleet, move |conn, path| {
            let operation = "reset budget spend";
            let wipe = || -> rusqlite::Result<SpendResetRecord> {
                // The write lock first: records are numbered in the order they commit.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let at_ms = now_ms();
                tx.execute(
                    "DELETE FROM budget_spend \
                     WHERE (period = 'day' AND period_index < ?1) \
                        OR (period = 'month' AND period_index < ?2)",
                    params![day, month],
                )?;
                tx.execute(
                    "DELETE FROM budget_resets WHERE reset_at_ms < ?1",
                    params![at_ms.saturating_sub(RESETS_KEPT_MS)],
                )?;
                let accounts: i64 = tx.query_row(
                    "SELECT count(*) FROM (SELECT DISTINCT scope, name FROM budget_spend \
                     WHERE (?1 IS NULL OR scope = ?1) AND (?2 IS NULL OR name = ?2))",
                    params![reset.scope, reset.name],
                    |row| row.get(0),
                )?;
                tx.execute(
                    "DELETE FROM budget_spend WHERE (?1 IS NULL OR scope = ?1) \
                     AND (?2 IS NULL OR name = ?2)",
                    params![reset.scope, reset.name],
                )?;
                tx.execute(
                    "INSERT INTO budget_resets (scope, name, accounts, reset_by, \
                     reset_by_issuer, reset_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        reset.scope,
                        reset.name,
                        accounts,
                        reset.by.id,
                        reset.by.issuer,
                        at_ms
                    ],
                )?;
                let id = tx.last_insert_rowid();
                tx.commit()?;
                Ok(SpendResetRecord {
                    id,
                    reset,
                    accounts,
                    at_ms,
                })
            };
            wipe().map_err(query_error(path, operation))
        }))
    }

    fn spend_resets(
        &self,
        after_id: i64,
    ) -> BoxFuture<'_, Result<Vec<SpendResetRecord>, StateError>> {
        Box::pin(self.query(
            Area::Fleet,
            "read budget resets",
            "SELECT id, scope, name, accounts, reset_by, reset_by_issuer, reset_at_ms \
             FROM budget_resets WHERE id > ?1 ORDER BY id LIMIT ?2",
            fixed((after_id, RESETS_READ_MAX)),
            |row| {
                Ok(SpendResetRecord {
                    id: row.get(0)?,
                    reset: SpendReset {
                        scope: row.get(1)?,
                        name: row.get(2)?,
                        by: Actor::new(row.get::<_, String>(4)?, row.get::<_, String>(5)?),
                    },
                    accounts: row.get(3)?,
                    at_ms: row.get(6)?,
                })
            },
        ))
    }

    fn publish_counts(&self, counts: Vec<RateCount>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Fleet,
            "publish rate-limit counts",
            "INSERT INTO rate_counts (replica, bucket, admitted, interval_ns, \
             updated_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (replica, bucket) DO UPDATE SET \
             admitted = excluded.admitted, interval_ns = excluded.interval_ns, \
             updated_ms = excluded.updated_ms",
            counts,
            |c, _| (c.replica, c.bucket, c.admitted, c.interval_ns, c.updated_ms),
        ))
    }

    fn counts(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<RateCount>, StateError>> {
        Box::pin(self.query_tidied(
            Area::Fleet,
            "read rate-limit counts",
            (
                "DELETE FROM rate_counts WHERE updated_ms < ?1",
                fixed((since_ms,)),
            ),
            "SELECT replica, bucket, admitted, interval_ns, updated_ms FROM rate_counts",
            fixed(()),
            |row| {
                Ok(RateCount {
                    replica: row.get(0)?,
                    bucket: row.get(1)?,
                    admitted: row.get(2)?,
                    interval_ns: row.get(3)?,
                    updated_ms: row.get(4)?,
                })
            },
        ))
    }

    fn add_labels(&self, labels: Vec<SessionLabel>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Fleet,
            "store session labels",
            "INSERT INTO session_labels (session, label, expires_ms, updated_ms, \
             owner) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (session, label) DO UPDATE SET \
             expires_ms = max(expires_ms, excluded.expires_ms), \
             updated_ms = excluded.updated_ms, owner = excluded.owner",
            labels,
            |l, now| (l.session, l.label, l.expires_ms, now, l.owner),
        ))
    }

    fn labels(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<SessionLabel>, StateError>> {
        Box::pin(self.query_tidied(
            Area::Fleet,
            "read session labels",
            ("DELETE FROM session_labels WHERE expires_ms <= ?1", |now| {
                (now,)
            }),
            "SELECT session, label, expires_ms, updated_ms, owner FROM session_labels \
             WHERE updated_ms >= ?1 ORDER BY updated_ms",
            fixed((since_ms,)),
            |row| {
                Ok(SessionLabel {
                    session: row.get(0)?,
                    label: row.get(1)?,
                    expires_ms: row.get(2)?,
                    updated_ms: row.get(3)?,
                    owner: row.get(4)?,
                })
            },
        ))
    }

    fn publish_session_counts(
        &self,
        counts: Vec<SessionCount>,
    ) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Fleet,
            "publish session counts",
            "INSERT INTO session_counts (replica, session, actions, keys, \
             expires_ms, updated_ms, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (replica, session) DO UPDATE SET \
             actions = excluded.actions, keys = excluded.keys, \
             expires_ms = excluded.expires_ms, updated_ms = excluded.updated_ms, \
             owner = excluded.owner",
            counts,
            |c, now| {
                (
                    c.replica,
                    c.session,
                    c.actions,
                    c.keys,
                    c.expires_ms,
                    now,
                    c.owner,
                )
            },
        ))
    }

    fn session_counts(
        &self,
        replica: String,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<SessionCount>, StateError>> {
        Box::pin(self.query_tidied(
            Area::Fleet,
            "read session counts",
            ("DELETE FROM session_counts WHERE expires_ms <= ?1", |now| {
                (now,)
            }),
            "SELECT replica, session, actions, keys, expires_ms, updated_ms, owner \
             FROM session_counts WHERE updated_ms >= ?1 AND replica <> ?2 \
             ORDER BY updated_ms",
            fixed((since_ms, replica)),
            |row| {
                Ok(SessionCount {
                    replica: row.get(0)?,
                    session: row.get(1)?,
                    actions: row.get(2)?,
                    keys: row.get(3)?,
                    expires_ms: row.get(4)?,
                    updated_ms: row.get(5)?,
                    owner: row.get(6)?,
                })
            },
        ))
    }

    fn publish_denies(&self, windows: Vec<DenyWindow>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Quarantine,
            "publish recent denies",
            "INSERT INTO quarantine_denies (replica, agent, at_ms, fired_ms, \
             expires_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (replica, agent) DO UPDATE SET at_ms = excluded.at_ms, \
             fired_ms = excluded.fired_ms, expires_ms = excluded.expires_ms, \
             updated_ms = excluded.updated_ms",
            windows,
            |w, now| {
                (
                    w.replica,
                    w.agent,
                    deny_times_text(&w.at_ms),
                    w.fired_ms,
                    w.expires_ms,
                    now,
                )
            },
        ))
    }

    fn denies(&self, replica: String) -> BoxFuture<'_, Result<Vec<DenyWindow>, StateError>> {
        Box::pin(self.query_tidied(
            Area::Quarantine,
            "read recent denies",
            (
                "DELETE FROM quarantine_denies WHERE expires_ms <= ?1",
                |now| (now,),
            ),
            "SELECT replica, agent, at_ms, fired_ms, expires_ms FROM quarantine_denies \
             WHERE replica <> ?1",
            fixed((replica,)),
            |row| {
                Ok(DenyWindow {
                    replica: row.get(0)?,
                    agent: row.get(1)?,
                    at_ms: deny_times(&row.get::<_, String>(2)?),
                    fired_ms: row.get(3)?,
                    expires_ms: row.get(4)?,
                })
            },
        ))
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
