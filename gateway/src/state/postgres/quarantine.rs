//! [`QuarantineRepository`] on PostgreSQL: the `quarantines` table and who released them
//! (`quarantine_releases`, written in the release's transaction). Every change bumps the
//! quarantine revision and sends `NOTIFY` on [`QUARANTINE_CHANNEL`] in its transaction, so
//! every replica hears of it once it is committed (`listen.rs`).

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::listen::QUARANTINE_CHANNEL;
use super::{Concern, PostgresStore, announce, query_error};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;
use crate::state::quarantine::{
    Actor, QuarantineRecord, QuarantineRepository, RELEASES_KEPT_MS, ReleaseRecord, Target,
};

/// The quarantine revision and its channel.
const CONCERN: Concern = Concern {
    revision: "quarantine",
    channel: QUARANTINE_CHANNEL,
};

impl QuarantineRepository for PostgresStore {
    fn quarantine(&self, record: QuarantineRecord) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.with_client(Area::Quarantine, move |mut client, db| async move {
            let operation = "record a quarantine";
            let err = || query_error(&db, operation);
            let tx = client.transaction().await.map_err(err())?;
            tx.execute(
                "INSERT INTO quarantines \
                 (kind, name, reason, trigger, by, by_issuer, created_ms, until_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (kind, name) DO UPDATE SET reason = excluded.reason, \
                 trigger = excluded.trigger, by = excluded.by, \
                 by_issuer = excluded.by_issuer, created_ms = excluded.created_ms, until_ms = excluded.until_ms",
                &[
                    &record.target.kind(),
                    &record.target.name(),
                    &record.reason,
                    &record.trigger,
                    &record.by.id,
                    &record.by.issuer,
                    &record.created_ms,
                    &record.until_ms,
                ],
            )
            .await
            .map_err(err())?;
            announce(tx, &db, operation, CONCERN).await
        }))
    }

    fn release<'a>(
        &'a self,
        target: &'a Target,
        by: &'a Actor,
    ) -> BoxFuture<'a, Result<Option<QuarantineRecord>, StateError>> {
        let (target, by) = (target.clone(), by.clone());
        Box::pin(
            self.with_client(Area::Quarantine, move |mut client, db| async move {
                let operation = "release a quarantine";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                let row = tx
                    .query_opt(
                        "DELETE FROM quarantines WHERE kind = $1 AND name = $2 \
                     RETURNING reason, trigger, by, by_issuer, created_ms, until_ms",
                        &[&target.kind(), &target.name()],
                    )
                    .await
                    .map_err(err())?;
                let Some(row) = row else {
                    tx.commit().await.map_err(err())?;
                    return Ok(None);
                };
                let released = QuarantineRecord {
                    target,
                    reason: row.get(0),
                    trigger: row.get(1),
                    by: Actor::new(row.get::<_, String>(2), row.get::<_, String>(3)),
                    created_ms: row.get(4),
                    until_ms: row.get(5),
                };
                let now = now_ms();
                tx.execute(
                    "DELETE FROM quarantine_releases WHERE released_ms < $1",
                    &[&now.saturating_sub(RELEASES_KEPT_MS)],
                )
                .await
                .map_err(err())?;
                tx.execute(
                    "INSERT INTO quarantine_releases \
                 (kind, name, created_ms, by, by_issuer, released_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (kind, name, created_ms) DO UPDATE SET by = excluded.by, \
                 by_issuer = excluded.by_issuer, released_ms = excluded.released_ms",
                    &[
                        &released.target.kind(),
                        &released.target.name(),
                        &released.created_ms,
                        &by.id,
                        &by.issuer,
                        &now,
                    ],
                )
                .await
                .map_err(err())?;
                announce(tx, &db, operation, CONCERN).await?;
                Ok(Some(released))
            }),
        )
    }

    fn releases<'a>(
        &'a self,
        quarantines: &'a [(Target, i64)],
    ) -> BoxFuture<'a, Result<Vec<ReleaseRecord>, StateError>> {
        let kinds: Vec<&'static str> = quarantines.iter().map(|(t, _)| t.kind()).collect();
        let names: Vec<String> = quarantines
            .iter()
            .map(|(t, _)| t.name().to_owned())
            .collect();
        let created: Vec<i64> = quarantines.iter().map(|(_, ms)| *ms).collect();
        Box::pin(self.with_client(Area::Quarantine, move |client, db| async move {
            if kinds.is_empty() {
                return Ok(Vec::new());
            }
            let rows = client
                .query(
                    "SELECT r.kind, r.name, r.created_ms, r.by, r.by_issuer, r.released_ms \
                     FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k (kind, name, created_ms) \
                     JOIN quarantine_releases AS r USING (kind, name, created_ms)",
                    &[&kinds, &names, &created],
                )
                .await
                .map_err(query_error(&db, "read who released quarantines"))?;
            rows.into_iter()
                .map(|row| {
                    let kind: String = row.get(0);
                    let target =
                        Target::from_stored(&kind, row.get(1), &db, "a quarantine's release")?;
                    Ok(ReleaseRecord {
                        target,
                        created_ms: row.get(2),
                        by: Actor::new(row.get::<_, String>(3), row.get::<_, String>(4)),
                        released_ms: row.get(5),
                    })
                })
                .collect()
        }))
    }

    fn active(&self) -> BoxFuture<'_, Result<Vec<QuarantineRecord>, StateError>> {
        self.read_pruning(
            Area::Quarantine,
            "read the quarantines",
            CONCERN,
            "DELETE FROM quarantines WHERE until_ms IS NOT NULL AND until_ms <= $1",
            "SELECT kind, name, reason, trigger, by, by_issuer, created_ms, until_ms \
             FROM quarantines ORDER BY created_ms, kind, name",
            |row, db| {
                let kind: String = row.get(0);
                Ok(QuarantineRecord {
                    target: Target::from_stored(&kind, row.get(1), db, "a quarantine")?,
                    reason: row.get(2),
                    trigger: row.get(3),
                    by: Actor::new(row.get::<_, String>(4), row.get::<_, String>(5)),
                    created_ms: row.get(6),
                    until_ms: row.get(7),
                })
            },
        )
    }

    fn revision(&self) -> BoxFuture<'_, Result<i64, StateError>> {
        self.revision_of(Area::Quarantine, CONCERN, "read the quarantine revision")
    }

    fn announcements(&self) -> Option<broadcast::Receiver<()>> {
        Some(self.quarantine_changes.subscribe())
    }
}
