//! [`FleetRepository`] on PostgreSQL: the `budget_spend`, `budget_resets`, `rate_counts`, `session_labels`,
//! `session_counts`, `quarantine_denies` and `fleet_replicas` tables every replica adds to and reads on its tick.

use futures_util::future::BoxFuture;

use super::{PostgresStore, query_error};
use crate::state::error::StateError;
use crate::state::fleet::{
    DenyWindow, FleetRepository, RESETS_KEPT_MS, RESETS_READ_MAX, RateCount, SessionCount,
    SessionLabel, SpendReset, SpendResetRecord, SpendRow, deny_times, deny_times_text,
};
use crate::state::health::Area;
use crate::state::pins::now_ms;
use crate::state::quarantine::Actor;

impl FleetRepository for PostgresStore {
    fn add_spend(&self, deltas: Vec<SpendRow>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Fleet,
            "add budget spend",
            "INSERT INTO budget_spend (scope, name, period, period_index, \
             input_tokens, output_tokens, micro_usd, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (scope, name, period, period_index) DO UPDATE SET \
             input_tokens = CASE WHEN excluded.input_tokens \
             > 9223372036854775807 - budget_spend.input_tokens \
             THEN 9223372036854775807 \
             ELSE budget_spend.input_tokens + excluded.input_tokens END, \
             output_tokens = CASE WHEN excluded.output_tokens \
             > 9223372036854775807 - budget_spend.output_tokens \
             THEN 9223372036854775807 \
             ELSE budget_spend.output_tokens + excluded.output_tokens END, \
             micro_usd = CASE WHEN excluded.micro_usd \
             > 9223372036854775807 - budget_spend.micro_usd \
             THEN 9223372036854775807 \
             ELSE budget_spend.micro_usd + excluded.micro_usd END, \
             updated_ms = excluded.updated_ms",
            deltas,
            |d, now| {
                [
                    Box::new(d.scope),
                    Box::new(d.name),
                    Box::new(d.period),
                    Box::new(d.index),
                    Box::new(d.input_tokens),
                    Box::new(d.output_tokens),
                    Box::new(d.micro_usd),
                    Box::new(now),
                ]
            },
        ))
    }

    fn spend(&self, day: i64, month: i64) -> BoxFuture<'_, Result<Vec<SpendRow>, StateError>> {
        Box::pin(self.with_client(Area::Fleet, move |client, db| async move {
            let rows = client
                .query(
                    "SELECT scope, name, period, period_index, input_tokens, output_tokens, \
                     micro_usd FROM budget_spend \
                     WHERE (period = 'day' AND period_index = $1) \
                        OR (period = 'month' AND period_index = $2) \
                     ORDER BY scope, name, period",
                    &[&day, &month],
                )
                .await
                .map_err(query_error(&db, "read budget spend"))?;
            Ok(rows
                .into_iter()
                .map(|row| SpendRow {
                    scope: row.get(0),
                    name: row.get(1),
                    period: row.get(2),
                    index: row.get(3),
                    input_tokens: row.get(4),
                    output_tokens: row.get(5),
                    micro_usd: row.get(6),
                })
                .collect())
        }))
    }

    fn reset_spend(
        &self,
        reset: SpendReset,
        (day, month): (i64, i64),
    ) -> BoxFuture<'_, Result<SpendResetRecord, StateError>> {
        Box::pin(
            self.with_client(Area::Fleet, move |mut client, db| async move {
                let err = || query_error(&db, "reset budget spend");
                let tx = client.transaction().await.map_err(err())?;
                // One reset at a time (the lock conflicts with itself, not with readers): a
                // record's number is drawn after the previous reset committed, so a gateway
                // that read up to a number has missed none below it.
                tx.batch_execute("LOCK TABLE budget_resets IN SHARE ROW EXCLUSIVE MODE")
                    .await
                    .map_err(err())?;
                let at_ms = now_ms();
                tx.execute(
                    "DELETE FROM budget_spend \
                     WHERE (period = 'day' AND period_index < $1) \
                        OR (period = 'month' AND period_index < $2)",
                    &[&day, &month],
                )
                .await
                .map_err(err())?;
                tx.execute(
                    "DELETE FROM budget_resets WHERE reset_at_ms < $1",
                    &[&at_ms.saturating_sub(RESETS_KEPT_MS)],
                )
                .await
                .map_err(err())?;
                let accounts: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM (SELECT DISTINCT scope, name FROM budget_spend \
                         WHERE ($1::TEXT IS NULL OR scope = $1) \
                         AND ($2::TEXT IS NULL OR name = $2)) AS reset",
                        &[&reset.scope, &reset.name],
                    )
                    .await
                    .map_err(err())?
                    .get(0);
                tx.execute(
                    "DELETE FROM budget_spend WHERE ($1::TEXT IS NULL OR scope = $1) \
                     AND ($2::TEXT IS NULL OR name = $2)",
                    &[&reset.scope, &reset.name],
                )
                .await
                .map_err(err())?;
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO budget_resets (scope, name, accounts, reset_by, \
                         reset_by_issuer, reset_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                         RETURNING id",
                        &[
                            &reset.scope,
                            &reset.name,
                            &accounts,
                            &reset.by.id,
                            &reset.by.issuer,
                            &at_ms,
                        ],
                    )
                    .await
                    .map_err(err())?
                    .get(0);
                tx.commit().await.map_err(err())?;
                Ok(SpendResetRecord {
                    id,
                    reset,
                    accounts,
                    at_ms,
                })
            }),
        )
    }

    fn spend_resets(
        &self,
        after_id: i64,
    ) -> BoxFuture<'_, Result<Vec<SpendResetRecord>, StateError>> {
        Box::pin(self.with_client(Area::Fleet, move |client, db| async move {
            let rows = client
                .query(
                    "SELECT id, scope, name, accounts, reset_by, reset_by_issuer, reset_at_ms \
                     FROM budget_resets WHERE id > $1 ORDER BY id LIMIT $2",
                    &[&after_id, &RESETS_READ_MAX],
                )
                .await
                .map_err(query_error(&db, "read budget resets"))?;
            Ok(rows
                .into_iter()
                .map(|row| SpendResetRecord {
                    id: row.get(0),
                    reset: SpendReset {
                        scope: row.get(1),
                        name: row.get(2),
                        by: Actor::new(row.get::<_, String>(4), row.get::<_, String>(5)),
                    },
                    accounts: row.get(3),
                    at_ms: row.get(6),
                })
                .collect())
        }))
    }

    fn publish_counts(&self, counts: Vec<RateCount>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Fleet,
            "publish rate-limit counts",
            "INSERT INTO rate_counts (replica, bucket, admitted, interval_ns, updated_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (replica, bucket) DO UPDATE SET \
             admitted = excluded.admitted, interval_ns = excluded.interval_ns, \
             updated_ms = excluded.updated_ms",
            counts,
            |c, _| {
                [
                    Box::new(c.replica),
                    Box::new(c.bucket),
                    Box::new(c.admitted),
                    Box::new(c.interval_ns),
                    Box::new(c.updated_ms),
                ]
            },
        ))
    }

    fn counts(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<RateCount>, StateError>> {
        Box::pin(self.with_client(Area::Fleet, move |client, db| async move {
            let err = || query_error(&db, "read rate-limit counts");
            client
                .execute(
                    "DELETE FROM rate_counts WHERE updated_ms < $1",
                    &[&since_ms],
                )
                .await
                .map_err(err())?;
            let rows = client
                .query(
                    "SELECT replica, bucket, admitted, interval_ns, updated_ms FROM rate_counts",
                    &[],
                )
                .await
                .map_err(err())?;
            Ok(rows
                .into_iter()
                .map(|row| RateCount {
                    replica: row.get(0),
                    bucket: row.get(1),
                    admitted: row.get(2),
                    interval_ns: row.get(3),
                    updated_ms: row.get(4),
                })
                .collect())
        }))
    }

    fn add_labels(&self, labels: Vec<SessionLabel>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Fleet,
            "store session labels",
            "INSERT INTO session_labels (session, label, expires_ms, updated_ms, owner) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (session, label) DO UPDATE SET \
             expires_ms = GREATEST(session_labels.expires_ms, excluded.expires_ms), \
             updated_ms = excluded.updated_ms, owner = excluded.owner",
            labels,
            |l, now| {
                [
                    Box::new(l.session),
                    Box::new(l.label),
                    Box::new(l.expires_ms),
                    Box::new(now),
                    Box::new(l.owner),
                ]
            },
        ))
    }

    fn labels(&self, since_ms: i64) -> BoxFuture<'_, Result<Vec<SessionLabel>, StateError>> {
        Box::pin(self.with_client(Area::Fleet, move |client, db| async move {
            let err = || query_error(&db, "read session labels");
            client
                .execute(
                    "DELETE FROM session_labels WHERE expires_ms <= $1",
                    &[&now_ms()],
                )
                .await
                .map_err(err())?;
            let rows = client
                .query(
                    "SELECT session, label, expires_ms, updated_ms, owner FROM session_labels \
                     WHERE updated_ms >= $1 ORDER BY updated_ms",
                    &[&since_ms],
                )
                .await
                .map_err(err())?;
            Ok(rows
                .into_iter()
                .map(|row| SessionLabel {
                    session: row.get(0),
                    label: row.get(1),
                    expires_ms: row.get(2),
                    updated_ms: row.get(3),
                    owner: row.get(4),
                })
                .collect())
        }))
    }

    fn publish_session_counts(
        &self,
        counts: Vec<SessionCount>,
    ) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Fleet,
            "publish session counts",
            "INSERT INTO session_counts (replica, session, actions, keys, expires_ms, \
             updated_ms, owner) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (replica, session) DO UPDATE SET \
             actions = excluded.actions, keys = excluded.keys, \
             expires_ms = excluded.expires_ms, updated_ms = excluded.updated_ms, \
             owner = excluded.owner",
            counts,
            |c, now| {
                [
                    Box::new(c.replica),
                    Box::new(c.session),
                    Box::new(c.actions),
                    Box::new(c.keys),
                    Box::new(c.expires_ms),
                    Box::new(now),
                    Box::new(c.owner),
                ]
            },
        ))
    }

    fn session_counts(
        &self,
        replica: String,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<SessionCount>, StateError>> {
        Box::pin(self.with_client(Area::Fleet, move |client, db| async move {
            let err = || query_error(&db, "read session counts");
            client
                .execute(
                    "DELETE FROM session_counts WHERE expires_ms <= $1",
                    &[&now_ms()],
                )
                .await
                .map_err(err())?;
            let rows = client
                .query(
                    "SELECT replica, session, actions, keys, expires_ms, updated_ms, owner \
                     FROM session_counts WHERE updated_ms >= $1 AND replica <> $2 \
                     ORDER BY updated_ms",
                    &[&since_ms, &replica],
                )
                .await
                .map_err(err())?;
            Ok(rows
                .into_iter()
                .map(|row| SessionCount {
                    replica: row.get(0),
                    session: row.get(1),
                    actions: row.get(2),
                    keys: row.get(3),
                    expires_ms: row.get(4),
                    updated_ms: row.get(5),
                    owner: row.get(6),
                })
                .collect())
        }))
    }

    fn publish_denies(&self, windows: Vec<DenyWindow>) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Quarantine,
            "publish recent denies",
            "INSERT INTO quarantine_denies (replica, agent, at_ms, fired_ms, expires_ms, \
             updated_ms) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (replica, agent) DO UPDATE SET at_ms = excluded.at_ms, \
             fired_ms = excluded.fired_ms, expires_ms = excluded.expires_ms, \
             updated_ms = excluded.updated_ms",
            windows,
            |w, now| {
                [
                    Box::new(w.replica),
                    Box::new(w.agent),
                    Box::new(deny_times_text(&w.at_ms)),
                    Box::new(w.fired_ms),
                    Box::new(w.expires_ms),
                    Box::new(now),
                ]
            },
        ))
    }

    fn denies(&self, replica: String) -> BoxFuture<'_, Result<Vec<DenyWindow>, StateError>> {
        Box::pin(
            self.with_client(Area::Quarantine, move |client, db| async move {
                let err = || query_error(&db, "read recent denies");
                client
                    .execute(
                        "DELETE FROM quarantine_denies WHERE expires_ms <= $1",
                        &[&now_ms()],
                    )
                    .await
                    .map_err(err())?;
                let rows = client
                    .query(
                        "SELECT replica, agent, at_ms, fired_ms, expires_ms \
                     FROM quarantine_denies WHERE replica <> $1",
                        &[&replica],
                    )
                    .await
                    .map_err(err())?;
                Ok(rows
                    .into_iter()
                    .map(|row| DenyWindow {
                        replica: row.get(0),
                        agent: row.get(1),
                        at_ms: deny_times(row.get(2)),
                        fired_ms: row.get(3),
                        expires_ms: row.get(4),
                    })
                    .collect())
            }),
        )
    }

    fn seen(
        &self,
        replica: String,
        now_ms: i64,
        since_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StateError>> {
        Box::pin(
            self.with_client(Area::Fleet, move |mut client, db| async move {
                let err = || query_error(&db, "mark this replica seen");
                let tx = client.transaction().await.map_err(err())?;
                tx.execute(
                    "INSERT INTO fleet_replicas (replica, seen_ms) VALUES ($1, $2) \
                 ON CONFLICT (replica) DO UPDATE SET seen_ms = excluded.seen_ms",
                    &[&replica, &now_ms],
                )
                .await
                .map_err(err())?;
                tx.execute(
                    "DELETE FROM fleet_replicas WHERE seen_ms < $1",
                    &[&since_ms],
                )
                .await
                .map_err(err())?;
                let n: i64 = tx
                    .query_one("SELECT count(*) FROM fleet_replicas", &[])
                    .await
                    .map_err(err())?
                    .get(0);
                tx.commit().await.map_err(err())?;
                Ok(u64::try_from(n).unwrap_or(0))
            }),
        )
    }
}
