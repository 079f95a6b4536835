//! [`SessionRepository`] on SQLite: the `console_sessions` table.

use futures_util::future::BoxFuture;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, query_error};
use crate::state::approvals::expiry;
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;
use crate::state::sessions::{ConsoleSession, NewSession, SessionRepository, secret_hash};

impl SessionRepository for SqliteStore {
    fn create(&self, session: NewSession) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.run(Area::Sessions, move |conn, path| {
            let now = now_ms();
            conn.execute(
                "INSERT INTO console_sessions (id_hash, subject, display_name, groups_json, \
                 csrf_hash, created_ms, expires_ms, last_seen_ms, aliases_json, \
                 sealed_idp_token) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8, ?9)",
                params![
                    secret_hash(&session.id),
                    session.subject,
                    session.display_name,
                    serde_json::to_string(&session.groups).unwrap_or_else(|_| "[]".into()),
                    secret_hash(&session.csrf_token),
                    now,
                    expiry(now, session.ttl),
                    serde_json::to_string(&session.aliases).unwrap_or_else(|_| "[]".into()),
                    session.sealed_idp_token,
                ],
            )
            .map_err(query_error(path, "record a console session"))?;
            Ok(())
        }))
    }

    fn resume<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConsoleSession>, StateError>> {
        let id_hash = secret_hash(id);
        Box::pin(self.run(Area::Sessions, move |conn, path| {
            let row = conn
                .query_row(
                    "UPDATE console_sessions SET last_seen_ms = ?2 \
                     WHERE id_hash = ?1 AND expires_ms > ?2 \
                     RETURNING subject, display_name, groups_json, csrf_hash, created_ms, \
                     expires_ms, last_seen_ms, aliases_json, sealed_idp_token, idp_token_version, \
                     idp_refreshing_until_ms",
                    params![id_hash, now_ms()],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, i64>(4)?,
                            row.get::<_, i64>(5)?,
                            row.get::<_, i64>(6)?,
                            row.get::<_, String>(7)?,
                            row.get::<_, Option<Vec<u8>>>(8)?,
                            row.get::<_, i64>(9)?,
                            row.get::<_, Option<i64>>(10)?,
                        ))
                    },
                )
                .optional()
                .map_err(query_error(path, "read a console session"))?;
            let Some((
                subject,
                display_name,
                groups,
                csrf_hash,
                created,
                expires,
                seen,
                aliases,
                sealed_idp_token,
                idp_token_version,
                idp_refreshing_until_ms,
            )) = row
            else {
                return Ok(None);
            };
            let groups = serde_json::from_str(&groups).map_err(|_| StateError::Corrupt {
                store: path.display().to_string(),
                what: format!("groups of a console session of {subject:?}"),
            })?;
            let aliases = serde_json::from_str(&aliases).map_err(|_| StateError::Corrupt {
                store: path.display().to_string(),
                what: format!("other names of a console session of {subject:?}"),
            })?;
            Ok(Some(ConsoleSession {
                subject,
                display_name,
                groups,
                aliases,
                csrf_hash,
                sealed_idp_token,
                idp_token_version,
                idp_refreshing_until_ms,
                created_ms: created,
                expires_ms: expires,
                last_seen_ms: seen,
            }))
        }))
    }

    fn claim_refresh<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let id_hash = secret_hash(id);
        Box::pin(self.run(Area::Sessions, move |conn, path| {
            let now = now_ms();
            let changed = conn
                .execute(
                    "UPDATE console_sessions SET idp_refreshing_until_ms = ?3 \
                     WHERE id_hash = ?1 AND idp_token_version = ?2 AND expires_ms > ?4 \
                     AND (idp_refreshing_until_ms IS NULL OR idp_refreshing_until_ms <= ?4)",
                    params![id_hash, version, until_ms, now],
                )
                .map_err(query_error(
                    path,
                    "claim the refresh of a console session's tokens",
                ))?;
            Ok(changed == 1)
        }))
    }

    fn replace_idp_token<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        sealed: Vec<u8>,
        expires_ms: Option<i64>,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let id_hash = secret_hash(id);
        Box::pin(self.run(Area::Sessions, move |conn, path| {
            let changed = conn
                .execute(
                    "UPDATE console_sessions SET sealed_idp_token = ?3, \
                     idp_token_version = idp_token_version + 1, idp_refreshing_until_ms = NULL, \
                     expires_ms = COALESCE(?5, expires_ms) \
                     WHERE id_hash = ?1 AND idp_token_version = ?2 AND expires_ms > ?4",
                    params![id_hash, version, sealed, now_ms(), expires_ms],
                )
                .map_err(query_error(
                    path,
                    "store a console session's refreshed tokens",
                ))?;
            Ok(changed == 1)
        }))
    }

    fn release_refresh<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let id_hash = secret_hash(id);
        Box::pin(self.run(Area::Sessions, move |conn, path| {
            conn.execute(
                "UPDATE console_sessions SET idp_refreshing_until_ms = NULL \
                 WHERE id_hash = ?1 AND idp_token_version = ?2 AND idp_refreshing_until_ms = ?3",
                params![id_hash, version, until_ms],
            )
            .map_err(query_error(
                path,
                "lift the refresh claim of a console session",
            ))?;
            Ok(())
        }))
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let id_hash = secret_hash(id);
        Box::pin(self.run(Area::Sessions, move |conn, path| {
            let changed = conn
                .execute(
                    "DELETE FROM console_sessions WHERE id_hash = ?1",
                    params![id_hash],
                )
                .map_err(query_error(path, "end a console session"))?;
            Ok(changed == 1)
        }))
    }

    fn purge_expired(&self) -> BoxFuture<'_, Result<u64, StateError>> {
        Box::pin(self.run(Area::Sessions, move |conn, path| {
            let removed = conn
                .execute(
                    "DELETE FROM console_sessions WHERE expires_ms <= ?1",
                    params![now_ms()],
                )
                .map_err(query_error(path, "remove expired console sessions"))?;
            Ok(removed as u64)
        }))
    }
}
