//! [`CanaryRepository`] on SQLite: the `canaries` table.

use futures_util::future::BoxFuture;
use rusqlite::params;

use super::{SqliteStore, query_error};
use crate::state::canaries::{CanaryRecord, CanaryRepository, needles_from_json, needles_json};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;

impl CanaryRepository for SqliteStore {
    fn issue(&self, canary: CanaryRecord) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.run(Area::Canaries, move |conn, path| {
            conn.execute(
                "INSERT INTO canaries (id, kind, label, needles_json, created_ms, revoked_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    canary.id,
                    canary.kind,
                    canary.label,
                    needles_json(&canary.needles),
                    canary.created_ms,
                    canary.revoked_ms,
                ],
            )
            .map_err(query_error(path, "record a canary"))?;
            Ok(())
        }))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CanaryRecord>, StateError>> {
        Box::pin(self.run(Area::Canaries, move |conn, path| {
            let mut statement = conn
                .prepare(
                    "SELECT id, kind, label, needles_json, created_ms, revoked_ms \
                     FROM canaries ORDER BY created_ms, id",
                )
                .map_err(query_error(path, "list canaries"))?;
            let rows = statement
                .query_map([], |row| {
                    let record = CanaryRecord {
                        id: row.get(0)?,
                        kind: row.get(1)?,
                        label: row.get(2)?,
                        needles: Vec::new(),
                        created_ms: row.get(4)?,
                        revoked_ms: row.get(5)?,
                    };
                    Ok((record, row.get::<_, String>(3)?))
                })
                .map_err(query_error(path, "list canaries"))?;
            let mut canaries = Vec::new();
            for row in rows {
                let (mut record, needles) = row.map_err(query_error(path, "list canaries"))?;
                record.needles =
                    needles_from_json(&needles).ok_or_else(|| StateError::Corrupt {
                        store: path.display().to_string(),
                        what: format!("the values of canary {}", record.id),
                    })?;
                canaries.push(record);
            }
            Ok(canaries)
        }))
    }

    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let id = id.to_owned();
        Box::pin(self.run(Area::Canaries, move |conn, path| {
            let changed = conn
                .execute(
                    "UPDATE canaries SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                    params![id, now_ms()],
                )
                .map_err(query_error(path, "revoke a canary"))?;
            Ok(changed == 1)
        }))
    }
}
