//! [`QuarantineRepository`] on SQLite: the `quarantines` table, who released them
//! (`quarantine_releases`), and the `quarantine` revision, which other processes on the file
//! (the CLI, a gateway) poll.

use futures_util::future::BoxFuture;
use rusqlite::{OptionalExtension, params};
use tokio::sync::broadcast;

use super::{SqliteStore, fixed, query_error, write_bumping};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;
use crate::state::quarantine::{
    Actor, QuarantineRecord, QuarantineRepository, RELEASES_KEPT_MS, ReleaseRecord, Target,
};

/// The revision other processes poll.
const CONCERN: &str = "quarantine";

impl QuarantineRepository for SqliteStore {
    fn quarantine(&self, record: QuarantineRecord) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.run(Area::Quarantine, move |conn, path| {
            let operation = "record a quarantine";
            write_bumping(conn, CONCERN, |tx| {
                tx.execute(
                    "INSERT INTO quarantines \
                     (kind, name, reason, trigger, by, by_issuer, created_ms, until_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT (kind, name) DO UPDATE SET reason = excluded.reason, \
                     trigger = excluded.trigger, by = excluded.by, \
                     by_issuer = excluded.by_issuer, created_ms = excluded.created_ms, until_ms = excluded.until_ms",
                    params![
                        record.target.kind(),
                        record.target.name(),
                        record.reason,
                        record.trigger,
                        record.by.id,
                        record.by.issuer,
                        record.created_ms,
                        record.until_ms,
                    ],
                )?;
                Ok(true)
            })
            .map_err(query_error(path, operation))?;
            Ok(())
        }))
    }

    fn release<'a>(
        &'a self,
        target: &'a Target,
        by: &'a Actor,
    ) -> BoxFuture<'a, Result<Option<QuarantineRecord>, StateError>> {
        let (target, by) = (target.clone(), by.clone());
        Box::pin(self.run(Area::Quarantine, move |conn, path| {
            let operation = "release a quarantine";
            let mut released = None;
            write_bumping(conn, CONCERN, |tx| {
                released = tx
                    .query_row(
                        "DELETE FROM quarantines WHERE kind = ?1 AND name = ?2 \
                         RETURNING reason, trigger, by, by_issuer, created_ms, until_ms",
                        params![target.kind(), target.name()],
                        |row| {
                            Ok(QuarantineRecord {
                                target: target.clone(),
                                reason: row.get(0)?,
                                trigger: row.get(1)?,
                                by: Actor::new(row.get::<_, String>(2)?, row.get::<_, String>(3)?),
                                created_ms: row.get(4)?,
                                until_ms: row.get(5)?,
                            })
                        },
                    )
                    .optional()?;
                let Some(record) = &released else {
                    return Ok(false);
                };
                let now = now_ms();
                tx.execute(
                    "DELETE FROM quarantine_releases WHERE released_ms < ?1",
                    params![now.saturating_sub(RELEASES_KEPT_MS)],
                )?;
                tx.execute(
                    "INSERT INTO quarantine_releases \
                     (kind, name, created_ms, by, by_issuer, released_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (kind, name, created_ms) DO UPDATE SET by = excluded.by, \
                     by_issuer = excluded.by_issuer, released_ms = excluded.released_ms",
                    params![
                        target.kind(),
                        target.name(),
                        record.created_ms,
                        by.id,
                        by.issuer,
                        now
                    ],
                )?;
                Ok(true)
            })
            .map_err(query_error(path, operation))?;
            Ok(released)
        }))
    }

    fn releases<'a>(
        &'a self,
        quarantines: &'a [(Target, i64)],
    ) -> BoxFuture<'a, Result<Vec<ReleaseRecord>, StateError>> {
        // One parameter whatever their number: `[[kind, name, created_ms], …]`.
        let keys = serde_json::Value::from(
            quarantines
                .iter()
                .map(|(target, created_ms)| {
                    serde_json::json!([target.kind(), target.name(), created_ms])
                })
                .collect::<Vec<_>>(),
        )
        .to_string();
        let rows = self.query(
            Area::Quarantine,
            "read who released quarantines",
            "SELECT r.kind, r.name, r.created_ms, r.by, r.by_issuer, r.released_ms \
             FROM json_each(?1) AS k JOIN quarantine_releases AS r \
             ON r.kind = k.value ->> 0 AND r.name = k.value ->> 1 \
             AND r.created_ms = k.value ->> 2",
            fixed((keys,)),
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    ReleaseRecord {
                        target: Target::Agent(row.get(1)?),
                        created_ms: row.get(2)?,
                        by: Actor::new(row.get::<_, String>(3)?, row.get::<_, String>(4)?),
                        released_ms: row.get(5)?,
                    },
                ))
            },
        );
        Box::pin(async move {
            rows.await?
                .into_iter()
                .map(|(kind, mut release)| {
                    release.target = Target::from_stored(
                        &kind,
                        release.target.name().to_owned(),
                        self.path().display(),
                        "a quarantine's release",
                    )?;
                    Ok(release)
                })
                .collect()
        })
    }

    fn active(&self) -> BoxFuture<'_, Result<Vec<QuarantineRecord>, StateError>> {
        let rows = self.read_pruning(
            Area::Quarantine,
            "read the quarantines",
            CONCERN,
            "DELETE FROM quarantines WHERE until_ms IS NOT NULL AND until_ms <= ?1",
            "SELECT kind, name, reason, trigger, by, by_issuer, created_ms, until_ms \
             FROM quarantines ORDER BY created_ms, kind, name",
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    QuarantineRecord {
                        target: Target::Agent(String::new()),
                        reason: row.get(2)?,
                        trigger: row.get(3)?,
                        by: Actor::new(row.get::<_, String>(4)?, row.get::<_, String>(5)?),
                        created_ms: row.get(6)?,
                        until_ms: row.get(7)?,
                    },
                ))
            },
        );
        Box::pin(async move {
            rows.await?
                .into_iter()
                .map(|(kind, name, mut record)| {
                    record.target =
                        Target::from_stored(&kind, name, self.path().display(), "a quarantine")?;
                    Ok(record)
                })
                .collect()
        })
    }

    fn revision(&self) -> BoxFuture<'_, Result<i64, StateError>> {
        self.revision_of(Area::Quarantine, CONCERN, "read the quarantine revision")
    }

    fn announcements(&self) -> Option<broadcast::Receiver<()>> {
        None
    }
}
