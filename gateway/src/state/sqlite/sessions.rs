//! [`SessionRepository`] on SQLite: the `console_sessions` table.

use futures_util::future::BoxFuture;

use super::{SqliteStore, fixed};
use crate::state::approvals::expiry;
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::sessions::{ConsoleSession, NewSession, SessionRepository, secret_hash};

impl SessionRepository for SqliteStore {
    fn create(&self, session: NewSession) -> BoxFuture<'_, Result<(), StateError>> {
        let (id_hash, csrf_hash) = (secret_hash(&session.id), secret_hash(&session.csrf_token));
        let groups = serde_json::to_string(&session.groups).unwrap_or_else(|_| "[]".into());
        let aliases = serde_json::to_string(&session.aliases).unwrap_or_else(|_| "[]".into());
        let created = self.execute(
            Area::Sessions,
            "record a console session",
            "INSERT INTO console_sessions (id_hash, subject, display_name, groups_json, \
             csrf_hash, created_ms, expires_ms, last_seen_ms, aliases_json, \
             sealed_idp_token) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8, ?9)",
            move |now| {
                (
                    id_hash,
                    session.subject,
                    session.display_name,
                    groups,
                    csrf_hash,
                    now,
                    expiry(now, session.ttl),
                    aliases,
                    session.sealed_idp_token,
                )
            },
        );
        Box::pin(async move { created.await.map(|_| ()) })
    }

    fn resume<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConsoleSession>, StateError>> {
        let id_hash = secret_hash(id);
        let row = self.query_opt(
            Area::Sessions,
            "read a console session",
            "UPDATE console_sessions SET last_seen_ms = ?2 \
             WHERE id_hash = ?1 AND expires_ms > ?2 \
             RETURNING subject, display_name, groups_json, csrf_hash, created_ms, \
             expires_ms, last_seen_ms, aliases_json, sealed_idp_token, idp_token_version, \
             idp_refreshing_until_ms",
            move |now| (id_hash, now),
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
        );
        Box::pin(async move {
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
            )) = row.await?
            else {
                return Ok(None);
            };
            let store = || self.path().display().to_string();
            let groups = serde_json::from_str(&groups).map_err(|_| StateError::Corrupt {
                store: store(),
                what: format!("groups of a console session of {subject:?}"),
            })?;
            let aliases = serde_json::from_str(&aliases).map_err(|_| StateError::Corrupt {
                store: store(),
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
        })
    }

    fn claim_refresh<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let id_hash = secret_hash(id);
        let changed = self.execute(
            Area::Sessions,
            "claim the refresh of a console session's tokens",
            "UPDATE console_sessions SET idp_refreshing_until_ms = ?3 \
             WHERE id_hash = ?1 AND idp_token_version = ?2 AND expires_ms > ?4 \
             AND (idp_refreshing_until_ms IS NULL OR idp_refreshing_until_ms <= ?4)",
            move |now| (id_hash, version, until_ms, now),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn replace_idp_token<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        sealed: Vec<u8>,
        expires_ms: Option<i64>,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let id_hash = secret_hash(id);
        let changed = self.execute(
            Area::Sessions,
            "store a console session's refreshed tokens",
            "UPDATE console_sessions SET sealed_idp_token = ?3, \
             idp_token_version = idp_token_version + 1, idp_refreshing_until_ms = NULL, \
             expires_ms = COALESCE(?5, expires_ms) \
             WHERE id_hash = ?1 AND idp_token_version = ?2 AND expires_ms > ?4",
            move |now| (id_hash, version, sealed, now, expires_ms),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn release_refresh<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let released = self.execute(
            Area::Sessions,
            "lift the refresh claim of a console session",
            "UPDATE console_sessions SET idp_refreshing_until_ms = NULL \
             WHERE id_hash = ?1 AND idp_token_version = ?2 AND idp_refreshing_until_ms = ?3",
            fixed((secret_hash(id), version, until_ms)),
        );
        Box::pin(async move { released.await.map(|_| ()) })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let changed = self.execute(
            Area::Sessions,
            "end a console session",
            "DELETE FROM console_sessions WHERE id_hash = ?1",
            fixed((secret_hash(id),)),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn purge_expired(&self) -> BoxFuture<'_, Result<u64, StateError>> {
        let removed = self.execute(
            Area::Sessions,
            "remove expired console sessions",
            "DELETE FROM console_sessions WHERE expires_ms <= ?1",
            |now| (now,),
        );
        Box::pin(async move { Ok(removed.await? as u64) })
    }
}
