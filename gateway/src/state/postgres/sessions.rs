//! [`SessionRepository`] on PostgreSQL: the `console_sessions` table.

use futures_util::future::BoxFuture;

use super::{PostgresStore, query_error};
use crate::state::approvals::expiry;
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;
use crate::state::sessions::{ConsoleSession, NewSession, SessionRepository, secret_hash};

impl SessionRepository for PostgresStore {
    fn create(&self, session: NewSession) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(
            self.with_client(Area::Sessions, move |client, db| async move {
                let now = now_ms();
                client
                    .execute(
                        "INSERT INTO console_sessions (id_hash, subject, display_name, \
                     groups_json, csrf_hash, created_ms, expires_ms, last_seen_ms, aliases_json, \
                     sealed_idp_token) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $8, $9)",
                        &[
                            &secret_hash(&session.id),
                            &session.subject,
                            &session.display_name,
                            &serde_json::to_string(&session.groups).unwrap_or_else(|_| "[]".into()),
                            &secret_hash(&session.csrf_token),
                            &now,
                            &expiry(now, session.ttl),
                            &serde_json::to_string(&session.aliases)
                                .unwrap_or_else(|_| "[]".into()),
                            &session.sealed_idp_token,
                        ],
                    )
                    .await
                    .map_err(query_error(&db, "record a console session"))?;
                Ok(())
            }),
        )
    }

    fn resume<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConsoleSession>, StateError>> {
        let id_hash = secret_hash(id);
        Box::pin(
            self.with_client(Area::Sessions, move |client, db| async move {
                let row = client
                    .query_opt(
                        "UPDATE console_sessions SET last_seen_ms = $2 \
                     WHERE id_hash = $1 AND expires_ms > $2 \
                     RETURNING subject, display_name, groups_json, csrf_hash, created_ms, \
                     expires_ms, last_seen_ms, aliases_json, sealed_idp_token, idp_token_version, \
                     idp_refreshing_until_ms",
                        &[&id_hash, &now_ms()],
                    )
                    .await
                    .map_err(query_error(&db, "read a console session"))?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let subject: String = row.get(0);
                let groups = serde_json::from_str(row.get(2)).map_err(|_| StateError::Corrupt {
                    store: db.to_string(),
                    what: format!("groups of a console session of {subject:?}"),
                })?;
                let aliases =
                    serde_json::from_str(row.get(7)).map_err(|_| StateError::Corrupt {
                        store: db.to_string(),
                        what: format!("other names of a console session of {subject:?}"),
                    })?;
                Ok(Some(ConsoleSession {
                    subject,
                    display_name: row.get(1),
                    groups,
                    aliases,
                    csrf_hash: row.get(3),
                    sealed_idp_token: row.get(8),
                    idp_token_version: row.get(9),
                    idp_refreshing_until_ms: row.get(10),
                    created_ms: row.get(4),
                    expires_ms: row.get(5),
                    last_seen_ms: row.get(6),
                }))
            }),
        )
    }

    fn claim_refresh<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let id_hash = secret_hash(id);
        Box::pin(
            self.with_client(Area::Sessions, move |client, db| async move {
                let changed = client
                    .execute(
                        "UPDATE console_sessions SET idp_refreshing_until_ms = $3 \
                     WHERE id_hash = $1 AND idp_token_version = $2 AND expires_ms > $4 \
                     AND (idp_refreshing_until_ms IS NULL OR idp_refreshing_until_ms <= $4)",
                        &[&id_hash, &version, &until_ms, &now_ms()],
                    )
                    .await
                    .map_err(query_error(
                        &db,
                        "claim the refresh of a console session's tokens",
                    ))?;
                Ok(changed == 1)
            }),
        )
    }

    fn replace_idp_token<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        sealed: Vec<u8>,
        expires_ms: Option<i64>,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let id_hash = secret_hash(id);
        Box::pin(
            self.with_client(Area::Sessions, move |client, db| async move {
                let changed = client
                    .execute(
                        "UPDATE console_sessions SET sealed_idp_token = $3, \
                     idp_token_version = idp_token_version + 1, idp_refreshing_until_ms = NULL, \
                     expires_ms = COALESCE($5::BIGINT, expires_ms) \
                     WHERE id_hash = $1 AND idp_token_version = $2 AND expires_ms > $4",
                        &[&id_hash, &version, &sealed, &now_ms(), &expires_ms],
                    )
                    .await
                    .map_err(query_error(
                        &db,
                        "store a console session's refreshed tokens",
                    ))?;
                Ok(changed == 1)
            }),
        )
    }

    fn release_refresh<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let id_hash = secret_hash(id);
        Box::pin(
            self.with_client(Area::Sessions, move |client, db| async move {
                client
                    .execute(
                        "UPDATE console_sessions SET idp_refreshing_until_ms = NULL \
                     WHERE id_hash = $1 AND idp_token_version = $2 \
                     AND idp_refreshing_until_ms = $3",
                        &[&id_hash, &version, &until_ms],
                    )
                    .await
                    .map_err(query_error(
                        &db,
                        "lift the refresh claim of a console session",
                    ))?;
                Ok(())
            }),
        )
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let id_hash = secret_hash(id);
        Box::pin(
            self.with_client(Area::Sessions, move |client, db| async move {
                let changed = client
                    .execute(
                        "DELETE FROM console_sessions WHERE id_hash = $1",
                        &[&id_hash],
                    )
                    .await
                    .map_err(query_error(&db, "end a console session"))?;
                Ok(changed == 1)
            }),
        )
    }

    fn purge_expired(&self) -> BoxFuture<'_, Result<u64, StateError>> {
        Box::pin(
            self.with_client(Area::Sessions, move |client, db| async move {
                client
                    .execute(
                        "DELETE FROM console_sessions WHERE expires_ms <= $1",
                        &[&now_ms()],
                    )
                    .await
                    .map_err(query_error(&db, "remove expired console sessions"))
            }),
        )
    }
}
