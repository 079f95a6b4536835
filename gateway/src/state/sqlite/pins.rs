//! [`PinRepository`] on SQLite: the `tool_pins` table and the `pins` revision.

use std::path::Path;
use std::sync::LazyLock;

use futures_util::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{SqliteStore, fixed, query_error};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::{
    ApproveOutcome, Approver, PIN_COLUMNS, PinRecord, PinRepository, PinRow, REMOVAL_KEPT_MS,
    Removal, StoredDefinition, now_ms, pin_record, pin_row,
};

/// A pin with an approved definition: server, tool, time, digest, JSON, approver.
const INSERT_APPROVED: &str = "INSERT INTO tool_pins (server, tool, first_seen_ms, \
     approved_digest, approved_json, approved_at_ms, approved_by) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?3, ?6) ON CONFLICT (server, tool)";

/// Every pin, ordered by server and tool.
static SELECT_ALL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {PIN_COLUMNS} FROM tool_pins ORDER BY server, tool"));

impl PinRepository for SqliteStore {
    fn all(&self) -> BoxFuture<'_, Result<Vec<PinRecord>, StateError>> {
        let rows = self.query(
            Area::Pins,
            "read the tool pins",
            &SELECT_ALL,
            fixed(()),
            raw,
        );
        Box::pin(async move {
            rows.await?
                .into_iter()
                .map(|row| record(row, self.path()))
                .collect()
        })
    }

    fn get<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<PinRecord>, StateError>> {
        let (server, tool) = (server.to_owned(), tool.to_owned());
        Box::pin(self.run(Area::Pins, move |conn, path| {
            read(conn, path, &server, &tool)
        }))
    }

    fn pin_first_use<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        definition: StoredDefinition,
    ) -> BoxFuture<'a, Result<(PinRecord, bool), StateError>> {
        self.change_pin(
            server,
            tool,
            "pin a tool on first use",
            move |tx, server, tool| {
                let insert = format!("{INSERT_APPROVED} DO NOTHING");
                let created = tx.execute(
                    &insert,
                    approved_params(server, tool, &definition, &Approver::FirstUse),
                )? == 1;
                if created {
                    clear_removal(tx, server, tool)?;
                }
                Ok(created)
            },
        )
    }

    fn propose<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        definition: StoredDefinition,
    ) -> BoxFuture<'a, Result<(PinRecord, bool), StateError>> {
        self.change_pin(
            server,
            tool,
            "record a changed tool definition",
            move |tx, server, tool| {
                let known: Option<(Option<String>, Option<String>)> = tx
                    .query_row(
                        "SELECT approved_digest, pending_digest FROM tool_pins \
                         WHERE server = ?1 AND tool = ?2",
                        params![server, tool],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?;
                match known {
                    None => {
                        tx.execute(
                            "INSERT INTO tool_pins (server, tool, first_seen_ms, pending_digest, \
                             pending_json, pending_since_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?3)",
                            params![
                                server,
                                tool,
                                definition.at_ms,
                                definition.digest,
                                definition.json
                            ],
                        )?;
                        clear_removal(tx, server, tool)?;
                        Ok(true)
                    }
                    Some((approved, pending))
                        if approved.as_deref() == Some(definition.digest.as_str())
                            || pending.as_deref() == Some(definition.digest.as_str()) =>
                    {
                        Ok(false)
                    }
                    Some(_) => {
                        tx.execute(
                            "UPDATE tool_pins SET pending_digest = ?3, pending_json = ?4, \
                             pending_since_ms = ?5 WHERE server = ?1 AND tool = ?2",
                            params![
                                server,
                                tool,
                                definition.digest,
                                definition.json,
                                definition.at_ms
                            ],
                        )?;
                        Ok(true)
                    }
                }
            },
        )
    }

    fn approve_definition<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        definition: StoredDefinition,
        approver: Approver,
    ) -> BoxFuture<'a, Result<PinRecord, StateError>> {
        let changed = self.change_pin(
            server,
            tool,
            "approve a tool definition",
            move |tx, server, tool| {
                let upsert = format!(
                    "{INSERT_APPROVED} DO UPDATE SET \
                   approved_digest = excluded.approved_digest, \
                   approved_json = excluded.approved_json, \
                   approved_at_ms = excluded.approved_at_ms, \
                   approved_by = excluded.approved_by, \
                   pending_since_ms = CASE WHEN pending_digest = excluded.approved_digest \
                     THEN NULL ELSE pending_since_ms END, \
                   pending_json = CASE WHEN pending_digest = excluded.approved_digest \
                     THEN NULL ELSE pending_json END, \
                   pending_digest = CASE WHEN pending_digest = excluded.approved_digest \
                     THEN NULL ELSE pending_digest END"
                );
                tx.execute(
                    &upsert,
                    approved_params(server, tool, &definition, &approver),
                )?;
                clear_removal(tx, server, tool)?;
                Ok(true)
            },
        );
        Box::pin(async move { changed.await.map(|(pin, _)| pin) })
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
        Box::pin(self.run(Area::Pins, move |conn, path| {
            let Some(pin) = read(conn, path, &server, &tool)? else {
                return Ok(ApproveOutcome::Unknown);
            };
            let waiting = match (&pin.pending, &pin.approved) {
                (Some(pending), _) => &pending.digest,
                (None, Some((approved, Approver::FirstUse))) => &approved.digest,
                (None, _) => return Ok(ApproveOutcome::AlreadyApproved(pin)),
            };
            if expected.as_ref().is_some_and(|e| e != waiting) {
                return Ok(ApproveOutcome::DigestMismatch(pin));
            }
            let waiting = waiting.clone();
            let now = now_ms();
            let approver = approver.to_stored();
            change_pin(
                conn,
                path,
                &server,
                &tool,
                "approve a tool definition",
                |tx| {
                    // Only if the row is still as read: a concurrent change is not approved unseen.
                    let changed = tx.execute(
                        "UPDATE tool_pins SET \
                       approved_digest = COALESCE(pending_digest, approved_digest), \
                       approved_json = COALESCE(pending_json, approved_json), \
                       approved_at_ms = ?4, approved_by = ?5, \
                       pending_digest = NULL, pending_json = NULL, pending_since_ms = NULL \
                     WHERE server = ?1 AND tool = ?2 \
                       AND COALESCE(pending_digest, approved_digest) = ?3",
                        params![server, tool, waiting, now, approver],
                    )?;
                    Ok(changed == 1)
                },
            )
            .map(|(pin, approved)| {
                if approved {
                    ApproveOutcome::Approved(pin)
                } else {
                    ApproveOutcome::DigestMismatch(pin)
                }
            })
        }))
    }

    fn replace<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        with: Option<PinRecord>,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let (server, tool) = (server.to_owned(), tool.to_owned());
        Box::pin(self.run(Area::Pins, move |conn, path| {
            write(conn, path, "re-key a pin", |tx| {
                let removed = delete_pin(tx, &server, &tool)?;
                if removed && let Some(with) = with {
                    let row = pin_row(with);
                    tx.execute(
                        &format!(
                            "INSERT INTO tool_pins ({PIN_COLUMNS}) VALUES \
                             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                             ON CONFLICT (server, tool) DO NOTHING"
                        ),
                        params![
                            row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8, row.9
                        ],
                    )?;
                }
                Ok(removed)
            })
        }))
    }

    fn forget<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        by: &'a Removal,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let (server, tool, by) = (server.to_owned(), tool.to_owned(), by.clone());
        Box::pin(self.run(Area::Pins, move |conn, path| {
            write(conn, path, "forget a pin", |tx| {
                let removed = delete_pin(tx, &server, &tool)?;
                if removed {
                    tx.execute(
                        "DELETE FROM tool_pin_removals WHERE removed_at_ms < ?1",
                        params![by.at_ms.saturating_sub(REMOVAL_KEPT_MS)],
                    )?;
                    tx.execute(
                        "INSERT INTO tool_pin_removals \
                         (server, tool, removed_by, reason, removed_at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (server, tool) DO UPDATE SET \
                         removed_by = excluded.removed_by, reason = excluded.reason, \
                         removed_at_ms = excluded.removed_at_ms",
                        params![server, tool, by.by, by.reason, by.at_ms],
                    )?;
                }
                Ok(removed)
            })
        }))
    }

    fn forgotten_by<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Removal>, StateError>> {
        Box::pin(self.query_opt(
            Area::Pins,
            "read who forgot a pin",
            "SELECT removed_by, reason, removed_at_ms FROM tool_pin_removals \
             WHERE server = ?1 AND tool = ?2",
            fixed((server.to_owned(), tool.to_owned())),
            |row| {
                Ok(Removal {
                    by: row.get(0)?,
                    reason: row.get(1)?,
                    at_ms: row.get(2)?,
                })
            },
        ))
    }

    fn revision(&self) -> BoxFuture<'_, Result<i64, StateError>> {
        self.revision_of(Area::Pins, "pins", "read the pins revision")
    }
}

impl SqliteStore {
    /// [`change_pin`] on the store's thread, `change` given the transaction, the server and
    /// the tool.
    fn change_pin<F>(
        &self,
        server: &str,
        tool: &str,
        operation: &'static str,
        change: F,
    ) -> BoxFuture<'_, Result<(PinRecord, bool), StateError>>
    where
        F: FnOnce(&rusqlite::Transaction<'_>, &str, &str) -> rusqlite::Result<bool>
            + Send
            + 'static,
    {
        let (server, tool) = (server.to_owned(), tool.to_owned());
        Box::pin(self.run(Area::Pins, move |conn, path| {
            change_pin(conn, path, &server, &tool, operation, |tx| {
                change(tx, &server, &tool)
            })
        }))
    }
}

/// Runs `change` in one immediate transaction; bumps the pins revision when it answers that
/// it changed something, and returns that answer.
fn write(
    conn: &mut Connection,
    path: &Path,
    operation: &'static str,
    change: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<bool>,
) -> Result<bool, StateError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(query_error(path, operation))?;
    let outcome = change(&tx).map_err(query_error(path, operation))?;
    if outcome {
        tx.execute(
            "UPDATE revisions SET revision = revision + 1 WHERE concern = 'pins'",
            [],
        )
        .map_err(query_error(path, operation))?;
    }
    tx.commit().map_err(query_error(path, operation))?;
    Ok(outcome)
}

/// Forgets who removed the pin of `tool` on `server` once it is written again: a later,
/// unrelated removal of the new pin must not name the operator of the old one.
fn clear_removal(tx: &rusqlite::Transaction<'_>, server: &str, tool: &str) -> rusqlite::Result<()> {
    tx.execute(
        "DELETE FROM tool_pin_removals WHERE server = ?1 AND tool = ?2",
        params![server, tool],
    )
    .map(|_| ())
}

/// [`write`]s `change` to the pin of `tool` on `server`, then reads the pin back: the pin as
/// stored afterwards, and whether `change` changed it.
fn change_pin(
    conn: &mut Connection,
    path: &Path,
    server: &str,
    tool: &str,
    operation: &'static str,
    change: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<bool>,
) -> Result<(PinRecord, bool), StateError> {
    let changed = write(conn, path, operation, change)?;
    let pin = read(conn, path, server, tool)?.ok_or_else(|| vanished(path))?;
    Ok((pin, changed))
}

/// The parameters of [`INSERT_APPROVED`].
fn approved_params<'a>(
    server: &'a str,
    tool: &'a str,
    definition: &'a StoredDefinition,
    approver: &Approver,
) -> (&'a str, &'a str, i64, &'a str, &'a str, String) {
    (
        server,
        tool,
        definition.at_ms,
        &definition.digest,
        &definition.json,
        approver.to_stored(),
    )
}

fn read(
    conn: &Connection,
    path: &Path,
    server: &str,
    tool: &str,
) -> Result<Option<PinRecord>, StateError> {
    conn.query_row(
        &format!("SELECT {PIN_COLUMNS} FROM tool_pins WHERE server = ?1 AND tool = ?2"),
        params![server, tool],
        raw,
    )
    .optional()
    .map_err(query_error(path, "read a tool pin"))?
    .map(|row| record(row, path))
    .transpose()
}

fn raw(row: &Row<'_>) -> rusqlite::Result<PinRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
    ))
}

fn record(row: PinRow, path: &Path) -> Result<PinRecord, StateError> {
    pin_record(row, &path.display().to_string())
}

fn vanished(path: &Path) -> StateError {
    StateError::Corrupt {
        store: path.display().to_string(),
        what: "tool pin (it vanished while being written)".into(),
    }
}

/// Deletes the pin of `tool` on `server` (re-keying or forgetting it): whether there was one.
fn delete_pin(
    tx: &rusqlite::Transaction<'_>,
    server: &str,
    tool: &str,
) -> Result<bool, rusqlite::Error> {
    tx.execute(
        "DELETE FROM tool_pins WHERE server = ?1 AND tool = ?2",
        params![server, tool],
    )
    .map(|rows| rows == 1)
}
