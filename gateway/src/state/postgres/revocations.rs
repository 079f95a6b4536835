//! [`RevocationRepository`] on PostgreSQL: the `token_revocations` table. Every change bumps
//! the revocation revision and sends `NOTIFY` on [`REVOCATION_CHANNEL`] in its transaction, so
//! every replica hears of it once it is committed (`listen.rs`).

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::listen::REVOCATION_CHANNEL;
use super::{Concern, PostgresStore, announce, query_error};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::quarantine::Actor;
use crate::state::revocations::{RevocationRecord, RevocationRepository, Revoked};

/// The revocation revision and its channel.
const CONCERN: Concern = Concern {
    revision: "revocations",
    channel: REVOCATION_CHANNEL,
};

impl RevocationRepository for PostgresStore {
    fn revoke(&self, record: RevocationRecord) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(
            self.with_client(Area::Revocations, move |mut client, db| async move {
                let operation = "record a token revocation";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                tx.execute(
                    "INSERT INTO token_revocations \
                 (kind, name, reason, by, by_issuer, created_ms, expires_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (kind, name) DO UPDATE SET reason = excluded.reason, \
                 by = excluded.by, by_issuer = excluded.by_issuer, \
                 created_ms = GREATEST(token_revocations.created_ms, excluded.created_ms), \
                 expires_ms = GREATEST(token_revocations.expires_ms, excluded.expires_ms)",
                    &[
                        &record.target.kind(),
                        &record.target.name(),
                        &record.reason,
                        &record.by.id,
                        &record.by.issuer,
                        &record.created_ms,
                        &record.expires_ms,
                    ],
                )
                .await
                .map_err(err())?;
                announce(tx, &db, operation, CONCERN).await
            }),
        )
    }

    fn active(&self) -> BoxFuture<'_, Result<Vec<RevocationRecord>, StateError>> {
        self.read_pruning(
            Area::Revocations,
            "read the token revocations",
            CONCERN,
            "DELETE FROM token_revocations WHERE expires_ms <= $1",
            "SELECT kind, name, reason, by, by_issuer, created_ms, expires_ms \
             FROM token_revocations ORDER BY created_ms, kind, name",
            |row, db| {
                let kind: String = row.get(0);
                Ok(RevocationRecord {
                    target: Revoked::from_stored(&kind, row.get(1), db)?,
                    reason: row.get(2),
                    by: Actor::new(row.get::<_, String>(3), row.get::<_, String>(4)),
                    created_ms: row.get(5),
                    expires_ms: row.get(6),
                })
            },
        )
    }

    fn revision(&self) -> BoxFuture<'_, Result<i64, StateError>> {
        self.revision_of(
            Area::Revocations,
            CONCERN,
            "read the token revocation revision",
        )
    }

    fn announcements(&self) -> Option<broadcast::Receiver<()>> {
        Some(self.revocation_changes.subscribe())
    }
}
