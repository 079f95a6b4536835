//! [`SessionRepository`] on PostgreSQL: the `console_sessions` table.

use futures_util::future::BoxFuture;

use super::{Execute, PostgresStore, QueryOpt, fixed};
use crate::state::approvals::expiry;
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::sessions::{ConsoleSession, NewSession, SessionRepository, secret_hash};

/// Locks a session's row (by its id's hash) for a step that compares the time with its end or
/// records it as its last use: one that waited for another replica's step on the session is
/// judged when it is made (`locked_at_now`).
const LOCK: &str = "SELECT 1 FROM console_sessions WHERE id_hash = $1 FOR UPDATE";

impl SessionRepository for PostgresStore {
    fn create(&self, session: NewSession) -> BoxFuture<'_, Result<(), StateError>> {
        let json = |names: &[String]| serde_json::to_string(names).unwrap_or_else(|_| "[]".into());
        let (groups, aliases) = (json(&session.groups), json(&session.aliases));
        let created = self.run(
            Area::Sessions,
            "record a console session",
            Execute(
                "INSERT INTO console_sessions (id_hash, subject, display_name, groups_json, \
                 csrf_hash, created_ms, expires_ms, last_seen_ms, aliases_json, sealed_idp_token) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $8, $9)",
            ),
            move |now| {
                [
                    Box::new(secret_hash(&session.id)),
                    Box::new(session.subject),
                    Box::new(session.display_name),
                    Box::new(groups),
                    Box::new(secret_hash(&session.csrf_token)),
                    Box::new(now),
                    Box::new(expiry(now, session.ttl)),
                    Box::new(aliases),
                    Box::new(session.sealed_idp_token),
                ]
            },
        );
        Box::pin(async move { created.await.map(|_| ()) })
    }

    fn resume<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConsoleSession>, StateError>> {
        let hash = secret_hash(id);
        let row = self.run_locked(
            Area::Sessions,
            "read a console session",
            (LOCK, Box::new(hash.clone())),
            QueryOpt(
                "UPDATE console_sessions SET last_seen_ms = $2 \
                 WHERE id_hash = $1 AND expires_ms > $2 \
                 RETURNING subject, display_name, groups_json, csrf_hash, created_ms, expires_ms, \
                 last_seen_ms, aliases_json, sealed_idp_token, idp_token_version, \
                 idp_refreshing_until_ms",
            ),
            move |now| [Box::new(hash), Box::new(now)],
        );
        Box::pin(async move {
            let Some(row) = row.await? else {
                return Ok(None);
            };
            let subject: String = row.get(0);
            let corrupt = |what: &str| StateError::Corrupt {
                store: self.database().to_owned(),
                what: format!("{what} of a console session of {subject:?}"),
            };
            let groups = serde_json::from_str(row.get(2)).map_err(|_| corrupt("groups"))?;
            let aliases = serde_json::from_str(row.get(7)).map_err(|_| corrupt("other names"))?;
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
        })
    }

    fn claim_refresh<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let hash = secret_hash(id);
        let changed = self.run_locked(
            Area::Sessions,
            "claim the refresh of a console session's tokens",
            (LOCK, Box::new(hash.clone())),
            Execute(
                "UPDATE console_sessions SET idp_refreshing_until_ms = $3 \
                 WHERE id_hash = $1 AND idp_token_version = $2 AND expires_ms > $4 \
                 AND (idp_refreshing_until_ms IS NULL OR idp_refreshing_until_ms <= $4)",
            ),
            move |now| {
                [
                    Box::new(hash),
                    Box::new(version),
                    Box::new(until_ms),
                    Box::new(now),
                ]
            },
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
        let hash = secret_hash(id);
        let changed = self.run_locked(
            Area::Sessions,
            "store a console session's refreshed tokens",
            (LOCK, Box::new(hash.clone())),
            Execute(
                "UPDATE console_sessions SET sealed_idp_token = $3, \
                 idp_token_version = idp_token_version + 1, idp_refreshing_until_ms = NULL, \
                 expires_ms = COALESCE($5::BIGINT, expires_ms) \
                 WHERE id_hash = $1 AND idp_token_version = $2 AND expires_ms > $4",
            ),
            move |now| {
                [
                    Box::new(hash),
                    Box::new(version),
                    Box::new(sealed),
                    Box::new(now),
                    Box::new(expires_ms),
                ]
            },
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn release_refresh<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let released = self.run(
            Area::Sessions,
            "lift the refresh claim of a console session",
            Execute(
                "UPDATE console_sessions SET idp_refreshing_until_ms = NULL \
                 WHERE id_hash = $1 AND idp_token_version = $2 AND idp_refreshing_until_ms = $3",
            ),
            fixed([
                Box::new(secret_hash(id)),
                Box::new(version),
                Box::new(until_ms),
            ]),
        );
        Box::pin(async move { released.await.map(|_| ()) })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let changed = self.run(
            Area::Sessions,
            "end a console session",
            Execute("DELETE FROM console_sessions WHERE id_hash = $1"),
            fixed([Box::new(secret_hash(id))]),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn purge_expired(&self) -> BoxFuture<'_, Result<u64, StateError>> {
        Box::pin(self.run(
            Area::Sessions,
            "remove expired console sessions",
            Execute("DELETE FROM console_sessions WHERE expires_ms <= $1"),
            |now| [Box::new(now)],
        ))
    }
}
