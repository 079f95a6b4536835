//! [`BundleFloorRepository`] on SQLite: the `policy_bundle_floors` table.

use futures_util::future::BoxFuture;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, query_error};
use crate::state::bundle_floors::{BundleFloorRepository, BundleSet, StoredFloor};
use crate::state::error::StateError;
use crate::state::pins::now_ms;

impl BundleFloorRepository for SqliteStore {
    fn floor(&self, keys: &str, set: BundleSet) -> BoxFuture<'_, Result<Option<i64>, StateError>> {
        let keys = keys.to_owned();
        Box::pin(self.run(move |conn, path| {
            conn.query_row(
                "SELECT signed_ns FROM policy_bundle_floors \
                 WHERE trusted_keys = ?1 AND bundle = ?2",
                params![keys, set.as_str()],
                |row| row.get(0),
            )
            .optional()
            .map_err(query_error(path, "read a policy bundle's rollback floor"))
        }))
    }

    fn raise(
        &self,
        keys: &str,
        set: BundleSet,
        signed_ns: i64,
    ) -> BoxFuture<'_, Result<i64, StateError>> {
        let keys = keys.to_owned();
        Box::pin(self.run(move |conn, path| {
            conn.query_row(
                "INSERT INTO policy_bundle_floors (trusted_keys, bundle, signed_ns, raised_ms) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (trusted_keys, bundle) DO UPDATE SET \
                 raised_ms = CASE WHEN excluded.signed_ns > policy_bundle_floors.signed_ns \
                     THEN excluded.raised_ms ELSE policy_bundle_floors.raised_ms END, \
                 signed_ns = max(policy_bundle_floors.signed_ns, excluded.signed_ns) \
                 RETURNING signed_ns",
                params![keys, set.as_str(), signed_ns, now_ms()],
                |row| row.get(0),
            )
            .map_err(query_error(path, "raise a policy bundle's rollback floor"))
        }))
    }

    fn all(&self) -> BoxFuture<'_, Result<Vec<StoredFloor>, StateError>> {
        Box::pin(self.run(move |conn, path| {
            let failed = || query_error(path, "list the policy bundles' rollback floors");
            let mut statement = conn
                .prepare(
                    "SELECT trusted_keys, bundle, signed_ns, raised_ms FROM policy_bundle_floors \
                     ORDER BY trusted_keys, bundle",
                )
                .map_err(failed())?;
            let rows = statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get(2)?,
                        row.get(3)?,
                    ))
                })
                .map_err(failed())?;
            let mut floors = Vec::new();
            for row in rows {
                let (trusted_keys, bundle, signed_ns, raised_ms) = row.map_err(failed())?;
                // The table's CHECK admits only the two names.
                if let Some(set) = BundleSet::named(&bundle) {
                    floors.push(StoredFloor {
                        trusted_keys,
                        set,
                        signed_ns,
                        raised_ms,
                    });
                }
            }
            Ok(floors)
        }))
    }

    fn reset(&self, keys: &str, set: BundleSet) -> BoxFuture<'_, Result<bool, StateError>> {
        let keys = keys.to_owned();
        Box::pin(self.run(move |conn, path| {
            conn.execute(
                "DELETE FROM policy_bundle_floors WHERE trusted_keys = ?1 AND bundle = ?2",
                params![keys, set.as_str()],
            )
            .map(|removed| removed > 0)
            .map_err(query_error(path, "reset a policy bundle's rollback floor"))
        }))
    }
}
