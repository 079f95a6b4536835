//! [`BundleFloorRepository`] on PostgreSQL: the `policy_bundle_floors` table. A raise is one
//! `INSERT … ON CONFLICT DO UPDATE` with `GREATEST`: replicas raising the floor at once are
//! serialised on its row, and none lowers what another raised.

use futures_util::future::BoxFuture;

use super::{PostgresStore, query_error};
use crate::state::bundle_floors::{BundleFloorRepository, BundleSet};
use crate::state::error::StateError;
use crate::state::pins::now_ms;

impl BundleFloorRepository for PostgresStore {
    fn floor(&self, set: BundleSet) -> BoxFuture<'_, Result<Option<i64>, StateError>> {
        Box::pin(self.with_client(move |client, db| async move {
            let row = client
                .query_opt(
                    "SELECT signed_ns FROM policy_bundle_floors WHERE bundle = $1",
                    &[&set.as_str()],
                )
                .await
                .map_err(query_error(&db, "read a policy bundle's rollback floor"))?;
            Ok(row.map(|row| row.get(0)))
        }))
    }

    fn raise(&self, set: BundleSet, signed_ns: i64) -> BoxFuture<'_, Result<i64, StateError>> {
        Box::pin(self.with_client(move |client, db| async move {
            let row = client
                .query_one(
                    "INSERT INTO policy_bundle_floors (bundle, signed_ns, raised_ms) \
                     VALUES ($1, $2, $3) \
                     ON CONFLICT (bundle) DO UPDATE SET \
                     raised_ms = CASE WHEN excluded.signed_ns > policy_bundle_floors.signed_ns \
                         THEN excluded.raised_ms ELSE policy_bundle_floors.raised_ms END, \
                     signed_ns = GREATEST(policy_bundle_floors.signed_ns, excluded.signed_ns) \
                     RETURNING signed_ns",
                    &[&set.as_str(), &signed_ns, &now_ms()],
                )
                .await
                .map_err(query_error(&db, "raise a policy bundle's rollback floor"))?;
            Ok(row.get(0))
        }))
    }
}
