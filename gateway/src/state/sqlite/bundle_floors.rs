//! [`BundleFloorRepository`] on SQLite: the `policy_bundle_floors` table.

use futures_util::future::BoxFuture;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, query_error};
use crate::state::bundle_floors::{BundleFloorRepository, BundleSet};
use crate::state::error::StateError;
use crate::state::pins::now_ms;

impl BundleFloorRepository for SqliteStore {
    fn floor(&self, set: BundleSet) -> BoxFuture<'_, Result<Option<i64>, StateError>> {
        Box::pin(self.run(move |conn, path| {
            conn.query_row(
                "SELECT signed_ns FROM policy_bundle_floors WHERE bundle = ?1",
                params![set.as_str()],
                |row| row.get(0),
            )
            .optional()
            .map_err(query_error(path, "read a policy bundle's rollback floor"))
        }))
    }

    fn raise(&self, set: BundleSet, signed_ns: i64) -> BoxFuture<'_, Result<i64, StateError>> {
        Box::pin(self.run(move |conn, path| {
            conn.query_row(
                "INSERT INTO policy_bundle_floors (bundle, signed_ns, raised_ms) \
                 VALUES (?1, ?2, ?3) \
                 ON CONFLICT (bundle) DO UPDATE SET \
                 raised_ms = CASE WHEN excluded.signed_ns > policy_bundle_floors.signed_ns \
                     THEN excluded.raised_ms ELSE policy_bundle_floors.raised_ms END, \
                 signed_ns = max(policy_bundle_floors.signed_ns, excluded.signed_ns) \
                 RETURNING signed_ns",
                params![set.as_str(), signed_ns, now_ms()],
                |row| row.get(0),
            )
            .map_err(query_error(path, "raise a policy bundle's rollback floor"))
        }))
    }
}
