//! [`PinRepository`] on PostgreSQL: the `tool_pins` table and the row-locked `pins` revision.

use futures_util::future::BoxFuture;
use tokio_postgres::Row;

use super::{PostgresStore, query_error};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::{
    ApproveOutcome, Approver, PIN_COLUMNS, PinRecord, PinRepository, PinRow, REMOVAL_KEPT_MS,
    Removal, StoredDefinition, now_ms, pin_record, pin_row,
};

/// A pin with an approved definition: server, tool, time, digest, JSON, approver.
const INSERT_APPROVED: &str = "INSERT INTO tool_pins (server, tool, first_seen_ms, \
     approved_digest, approved_json, approved_at_ms, approved_by) \
     VALUES ($1, $2, $3, $4, $5, $3, $6) ON CONFLICT (server, tool)";

impl PinRepository for PostgresStore {
    fn all(&self) -> BoxFuture<'_, Result<Vec<PinRecord>, StateError>> {
        Box::pin(self.with_client(Area::Pins, |client, db| async move {
            let rows = client
                .query(
                    &format!("SELECT {PIN_COLUMNS} FROM tool_pins ORDER BY server, tool"),
                    &[],
                )
                .await
                .map_err(query_error(&db, "read the tool pins"))?;
            rows.iter().map(|row| pin_record(raw(row), &db)).collect()
        }))
    }

    fn get<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<PinRecord>, StateError>> {
        let (server, tool) = (server.to_owned(), tool.to_owned());
        Box::pin(self.with_client(Area::Pins, move |client, db| async move {
            read(&client, &db, &server, &tool).await
        }))
    }

    fn pin_first_use<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        definition: StoredDefinition,
    ) -> BoxFuture<'a, Result<(PinRecord, bool), StateError>> {
        let (server, tool) = (server.to_owned(), tool.to_owned());
        Box::pin(
            self.with_client(Area::Pins, move |mut client, db| async move {
                let operation = "pin a tool on first use";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                let created = tx
                    .execute(
                        &format!("{INSERT_APPROVED} DO NOTHING"),
                        &[
                            &server,
                            &tool,
                            &definition.at_ms,
                            &definition.digest,
                            &definition.json,
                            &Approver::FirstUse.to_stored(),
                        ],
                    )
                    .await
                    .map_err(err())?
                    == 1;
                if created {
                    clear_removal(&tx, &server, &tool).await.map_err(err())?;
                }
                finish(tx, &db, operation, created).await?;
                read_back(&client, &db, &server, &tool, created).await
            }),
        )
    }

    fn propose<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        definition: StoredDefinition,
    ) -> BoxFuture<'a, Result<(PinRecord, bool), StateError>> {
        let (server, tool) = (server.to_owned(), tool.to_owned());
        Box::pin(
            self.with_client(Area::Pins, move |mut client, db| async move {
                let operation = "record a changed tool definition";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                // A new pin races with another replica's: the insert waits for the other's
                // commit; the update's row lock makes the second proposal of a digest see the first.
                let inserted = tx
                    .execute(
                        "INSERT INTO tool_pins (server, tool, first_seen_ms, pending_digest, \
                     pending_json, pending_since_ms) VALUES ($1, $2, $3, $4, $5, $3) \
                     ON CONFLICT (server, tool) DO NOTHING",
                        &[
                            &server,
                            &tool,
                            &definition.at_ms,
                            &definition.digest,
                            &definition.json,
                        ],
                    )
                    .await
                    .map_err(err())?
                    == 1;
                if inserted {
                    clear_removal(&tx, &server, &tool).await.map_err(err())?;
                }
                let recorded = inserted
                    || tx
                        .execute(
                            "UPDATE tool_pins SET pending_digest = $3, pending_json = $4, \
                         pending_since_ms = $5 WHERE server = $1 AND tool = $2 \
                         AND approved_digest IS DISTINCT FROM $3 \
                         AND pending_digest IS DISTINCT FROM $3",
                            &[
                                &server,
                                &tool,
                                &definition.digest,
                                &definition.json,
                                &definition.at_ms,
                            ],
                        )
                        .await
                        .map_err(err())?
                        == 1;
                finish(tx, &db, operation, recorded).await?;
                read_back(&client, &db, &server, &tool, recorded).await
            }),
        )
    }

    fn approve_definition<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        definition: StoredDefinition,
        approver: Approver,
    ) -> BoxFuture<'a, Result<PinRecord, StateError>> {
        let (server, tool) = (server.to_owned(), tool.to_owned());
        Box::pin(
            self.with_client(Area::Pins, move |mut client, db| async move {
                let operation = "approve a tool definition";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                tx.execute(
                    &format!(
                        "{INSERT_APPROVED} DO UPDATE SET \
                     approved_digest = excluded.approved_digest, \
                     approved_json = excluded.approved_json, \
                     approved_at_ms = excluded.approved_at_ms, \
                     approved_by = excluded.approved_by, \
                     pending_since_ms = CASE WHEN tool_pins.pending_digest = \
                       excluded.approved_digest THEN NULL ELSE tool_pins.pending_since_ms END, \
                     pending_json = CASE WHEN tool_pins.pending_digest = \
                       excluded.approved_digest THEN NULL ELSE tool_pins.pending_json END, \
                     pending_digest = CASE WHEN tool_pins.pending_digest = \
                       excluded.approved_digest THEN NULL ELSE tool_pins.pending_digest END"
                    ),
                    &[
                        &server,
                        &tool,
                        &definition.at_ms,
                        &definition.digest,
                        &definition.json,
                        &approver.to_stored(),
                    ],
                )
                .await
                .map_err(err())?;
                clear_removal(&tx, &server, &tool).await.map_err(err())?;
                finish(tx, &db, operation, true).await?;
                read_back(&client, &db, &server, &tool, true)
                    .await
                    .map(|(pin, _)| pin)
            }),
        )
    }

    fn approve_pending<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        expected: Option<&'a str>,
        approver: Approver,
    ) -> BoxFuture<'a, Result<ApproveOutcome, StateError>> {
        let (server, tool) = (server.to_owned(), tool.to_owned());
        let expected = expected.map(str::to_owned);
        Box::pin(
            self.with_client(Area::Pins, move |mut client, db| async move {
                let operation = "approve a tool definition";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                let row = tx
                    .query_opt(
                        &format!(
                            "SELECT {PIN_COLUMNS} FROM tool_pins WHERE server = $1 AND tool = $2 \
                         FOR UPDATE"
                        ),
                        &[&server, &tool],
                    )
                    .await
                    .map_err(err())?;
                let Some(row) = row else {
                    return Ok(ApproveOutcome::Unknown);
                };
                let pin = pin_record(raw(&row), &db)?;
                let waiting = match (&pin.pending, &pin.approved) {
                    (Some(pending), _) => pending.digest.clone(),
                    (None, Some((approved, Approver::FirstUse))) => approved.digest.clone(),
                    (None, _) => return Ok(ApproveOutcome::AlreadyApproved(pin)),
                };
                if expected.as_ref().is_some_and(|e| *e != waiting) {
                    return Ok(ApproveOutcome::DigestMismatch(pin));
                }
                tx.execute(
                    "UPDATE tool_pins SET \
                 approved_digest = COALESCE(pending_digest, approved_digest), \
                 approved_json = COALESCE(pending_json, approved_json), \
                 approved_at_ms = $3, approved_by = $4, \
                 pending_digest = NULL, pending_json = NULL, pending_since_ms = NULL \
                 WHERE server = $1 AND tool = $2",
                    &[&server, &tool, &now_ms(), &approver.to_stored()],
                )
                .await
                .map_err(err())?;
                finish(tx, &db, operation, true).await?;
                let (pin, _) = read_back(&client, &db, &server, &tool, true).await?;
                Ok(ApproveOutcome::Approved(pin))
            }),
        )
    }

    fn replace<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        with: Option<PinRecord>,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let (server, tool) = (server.to_owned(), tool.to_owned());
        Box::pin(
            self.with_client(Area::Pins, move |mut client, db| async move {
                let operation = "re-key a pin";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                let removed = delete_pin(&tx, &server, &tool).await.map_err(err())?;
                if removed && let Some(with) = with {
                    let row = pin_row(with);
                    tx.execute(
                        &format!(
                            "INSERT INTO tool_pins ({PIN_COLUMNS}) VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (server, tool) DO NOTHING"
                        ),
                        &[
                            &row.0, &row.1, &row.2, &row.3, &row.4, &row.5, &row.6, &row.7, &row.8,
                            &row.9,
                        ],
                    )
                    .await
                    .map_err(err())?;
                }
                finish(tx, &db, operation, removed).await?;
                Ok(removed)
            }),
        )
    }

    fn forget<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        by: &'a Removal,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let (server, tool, by) = (server.to_owned(), tool.to_owned(), by.clone());
        Box::pin(
            self.with_client(Area::Pins, move |mut client, db| async move {
                let operation = "forget a pin";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                let removed = delete_pin(&tx, &server, &tool).await.map_err(err())?;
                if removed {
                    tx.execute(
                        "DELETE FROM tool_pin_removals WHERE removed_at_ms < $1",
                        &[&by.at_ms.saturating_sub(REMOVAL_KEPT_MS)],
                    )
                    .await
                    .map_err(err())?;
                    tx.execute(
                        "INSERT INTO tool_pin_removals \
                     (server, tool, removed_by, reason, removed_at_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (server, tool) DO UPDATE SET \
                     removed_by = excluded.removed_by, reason = excluded.reason, \
                     removed_at_ms = excluded.removed_at_ms",
                        &[&server, &tool, &by.by, &by.reason, &by.at_ms],
                    )
                    .await
                    .map_err(err())?;
                }
                finish(tx, &db, operation, removed).await?;
                Ok(removed)
            }),
        )
    }

    fn forgotten_by<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Removal>, StateError>> {
        let (server, tool) = (server.to_owned(), tool.to_owned());
        Box::pin(self.with_client(Area::Pins, move |client, db| async move {
            client
                .query_opt(
                    "SELECT removed_by, reason, removed_at_ms FROM tool_pin_removals \
                     WHERE server = $1 AND tool = $2",
                    &[&server, &tool],
                )
                .await
                .map(|row| {
                    row.map(|row| Removal {
                        by: row.get(0),
                        reason: row.get(1),
                        at_ms: row.get(2),
                    })
                })
                .map_err(query_error(&db, "read who forgot a pin"))
        }))
    }

    fn revision(&self) -> BoxFuture<'_, Result<i64, StateError>> {
        Box::pin(self.with_client(Area::Pins, |client, db| async move {
            client
                .query_one("SELECT revision FROM revisions WHERE concern = 'pins'", &[])
                .await
                .map(|row| row.get(0))
                .map_err(query_error(&db, "read the pins revision"))
        }))
    }
}

/// Bumps the pins revision when `changed`, and commits.
async fn finish(
    tx: deadpool_postgres::Transaction<'_>,
    db: &str,
    operation: &'static str,
    changed: bool,
) -> Result<(), StateError> {
    let err = || query_error(db, operation);
    if changed {
        tx.execute(
            "UPDATE revisions SET revision = revision + 1 WHERE concern = 'pins'",
            &[],
        )
        .await
        .map_err(err())?;
    }
    tx.commit().await.map_err(err())
}

/// The pin as stored after a change, and whether the change changed it.
async fn read_back(
    client: &tokio_postgres::Client,
    db: &str,
    server: &str,
    tool: &str,
    changed: bool,
) -> Result<(PinRecord, bool), StateError> {
    let pin = read(client, db, server, tool)
        .await?
        .ok_or_else(|| StateError::Corrupt {
            store: db.to_owned(),
            what: "tool pin (it vanished while being written)".into(),
        })?;
    Ok((pin, changed))
}

async fn read(
    client: &tokio_postgres::Client,
    db: &str,
    server: &str,
    tool: &str,
) -> Result<Option<PinRecord>, StateError> {
    client
        .query_opt(
            &format!("SELECT {PIN_COLUMNS} FROM tool_pins WHERE server = $1 AND tool = $2"),
            &[&server, &tool],
        )
        .await
        .map_err(query_error(db, "read a tool pin"))?
        .map(|row| pin_record(raw(&row), db))
        .transpose()
}

fn raw(row: &Row) -> PinRow {
    (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
        row.get(7),
        row.get(8),
        row.get(9),
    )
}

/// Deletes the pin of `tool` on `server` (re-keying or forgetting it): whether there was one.
async fn delete_pin(
    tx: &tokio_postgres::Transaction<'_>,
    server: &str,
    tool: &str,
) -> Result<bool, tokio_postgres::Error> {
    tx.execute(
        "DELETE FROM tool_pins WHERE server = $1 AND tool = $2",
        &[&server, &tool],
    )
    .await
    .map(|rows| rows == 1)
}

/// Forgets who removed the pin of `tool` on `server` once it is written again: a later,
/// unrelated removal of the new pin must not name the operator of the old one.
async fn clear_removal(
    tx: &tokio_postgres::Transaction<'_>,
    server: &str,
    tool: &str,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "DELETE FROM tool_pin_removals WHERE server = $1 AND tool = $2",
        &[&server, &tool],
    )
    .await
    .map(|_| ())
}
