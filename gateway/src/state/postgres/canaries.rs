//! [`CanaryRepository`] on PostgreSQL: the `canaries` table.

use futures_util::future::BoxFuture;

use super::{PostgresStore, query_error};
use crate::state::canaries::{CanaryRecord, CanaryRepository, needles_from_json, needles_json};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;

impl CanaryRepository for PostgresStore {
    fn issue(&self, canary: CanaryRecord) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(
            self.with_client(Area::Canaries, move |client, db| async move {
                client
                .execute(
                    "INSERT INTO canaries (id, kind, label, needles_json, created_ms, revoked_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &canary.id,
                        &canary.kind,
                        &canary.label,
                        &needles_json(&canary.needles),
                        &canary.created_ms,
                        &canary.revoked_ms,
                    ],
                )
                .await
                .map_err(query_error(&db, "record a canary"))?;
                Ok(())
            }),
        )
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<CanaryRecord>, StateError>> {
        Box::pin(
            self.with_client(Area::Canaries, move |client, db| async move {
                let rows = client
                    .query(
                        "SELECT id, kind, label, needles_json, created_ms, revoked_ms \
                     FROM canaries ORDER BY created_ms, id",
                        &[],
                    )
                    .await
                    .map_err(query_error(&db, "list canaries"))?;
                rows.into_iter()
                    .map(|row| {
                        let id: String = row.get(0);
                        let needles =
                            needles_from_json(row.get(3)).ok_or_else(|| StateError::Corrupt {
                                store: db.to_string(),
                                what: format!("the values of canary {id}"),
                            })?;
                        Ok(CanaryRecord {
                            id,
                            kind: row.get(1),
                            label: row.get(2),
                            needles,
                            created_ms: row.get(4),
                            revoked_ms: row.get(5),
                        })
                    })
                    .collect()
            }),
        )
    }

    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let id = id.to_owned();
        Box::pin(
            self.with_client(Area::Canaries, move |client, db| async move {
                let changed = client
                    .execute(
                        "UPDATE canaries SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
                        &[&id, &now_ms()],
                    )
                    .await
                    .map_err(query_error(&db, "revoke a canary"))?;
                Ok(changed == 1)
            }),
        )
    }
}
