//! [`RevocationRepository`] on SQLite: the `token_revocations` table and the `revocations`
//! revision, which other processes on the file (the CLI, a gateway) poll.

use futures_util::future::BoxFuture;
use rusqlite::params;
use tokio::sync::broadcast;

use super::{SqliteStore, query_error, write_bumping};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::quarantine::Actor;
use crate::state::revocations::{RevocationRecord, RevocationRepository, Revoked};

/// The revision other processes poll.
const CONCERN: &str = "revocations";

impl RevocationRepository for SqliteStore {
    fn revoke(&self, record: RevocationRecord) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.run(Area::Revocations, move |conn, path| {
            write_bumping(conn, CONCERN, |tx| {
                tx.execute(
                    "INSERT INTO token_revocations \
                     (kind, name, reason, by, by_issuer, created_ms, expires_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (kind, name) DO UPDATE SET reason = excluded.reason, \
                     by = excluded.by, by_issuer = excluded.by_issuer, \
                     created_ms = max(token_revocations.created_ms, excluded.created_ms), \
                     expires_ms = max(token_revocations.expires_ms, excluded.expires_ms)",
                    params![
                        record.target.kind(),
                        record.target.name(),
                        record.reason,
                        record.by.id,
                        record.by.issuer,
                        record.created_ms,
                        record.expires_ms,
                    ],
                )?;
                Ok(true)
            })
            .map_err(query_error(path, "record a token revocation"))
        }))
    }

    fn active(&self) -> BoxFuture<'_, Result<Vec<RevocationRecord>, StateError>> {
        let rows = self.read_pruning(
            Area::Revocations,
            "read the token revocations",
            CONCERN,
            "DELETE FROM token_revocations WHERE expires_ms <= ?1",
            "SELECT kind, name, reason, by, by_issuer, created_ms, expires_ms \
             FROM token_revocations ORDER BY created_ms, kind, name",
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    RevocationRecord {
                        target: Revoked::Token(String::new()),
                        reason: row.get(2)?,
                        by: Actor::new(row.get::<_, String>(3)?, row.get::<_, String>(4)?),
                        created_ms: row.get(5)?,
                        expires_ms: row.get(6)?,
                    },
                ))
            },
        );
        Box::pin(async move {
            rows.await?
                .into_iter()
                .map(|(kind, name, mut record)| {
                    record.target = Revoked::from_stored(&kind, name, self.path().display())?;
                    Ok(record)
                })
                .collect()
        })
    }

    fn revision(&self) -> BoxFuture<'_, Result<i64, StateError>> {
        self.revision_of(
            Area::Revocations,
            CONCERN,
            "read the token revocation revision",
        )
    }

    fn announcements(&self) -> Option<broadcast::Receiver<()>> {
        None
    }
}
