//! [`CanaryRepository`] on SQLite: the `canaries` table.

use futures_util::future::BoxFuture;

use super::{SqliteStore, fixed};
use crate::state::canaries::{CanaryRecord, CanaryRepository, needles_from_json, needles_json};
use crate::state::error::StateError;
use crate::state::health::Area;

impl CanaryRepository for SqliteStore {
    fn issue(&self, canary: CanaryRecord) -> BoxFuture<'_, Result<(), StateError>> {
        let needles = needles_json(&canary.needles);
        let issued = self.execute(
            Area::Canaries,
            "record a canary",
            "INSERT INTO canaries (id, kind, label, needles_json, created_ms, revoked_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            fixed((
                canary.id,
                canary.kind,
                canary.label,
                needles,
                canary.created_ms,
                canary.revoked_ms,
            )),
        );
        Box::pin(async move { issued.await.map(|_| ()) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CanaryRecord>, StateError>> {
        let rows = self.query(
            Area::Canaries,
            "list canaries",
            "SELECT id, kind, label, needles_json, created_ms, revoked_ms \
             FROM canaries ORDER BY created_ms, id",
            fixed(()),
            |row| {
                let record = CanaryRecord {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    label: row.get(2)?,
                    needles: Vec::new(),
                    created_ms: row.get(4)?,
                    revoked_ms: row.get(5)?,
                };
                Ok((record, row.get::<_, String>(3)?))
            },
        );
        Box::pin(async move {
            rows.await?
                .into_iter()
                .map(|(mut record, needles)| {
                    record.needles =
                        needles_from_json(&needles).ok_or_else(|| StateError::Corrupt {
                            store: self.path().display().to_string(),
                            what: format!("the values of canary {}", record.id),
                        })?;
                    Ok(record)
                })
                .collect()
        })
    }

    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let id = id.to_owned();
        let changed = self.execute(
            Area::Canaries,
            "revoke a canary",
            "UPDATE canaries SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            move |now| (id, now),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }
}
