//! [`BundleFloorRepository`] on PostgreSQL: the `policy_bundle_floors` table. A raise is one
//! `INSERT … ON CONFLICT DO UPDATE` with `GREATEST`: replicas raising the floor at once are
//! serialised on its row, and none lowers what another raised.

use futures_util::future::BoxFuture;

use super::{PostgresStore, query_error};
use crate::state::bundle_floors::{
    BundleFloorRepository, BundleSet, FloorReset, RESETS_KEPT, RESETS_READ, Resetter, StoredFloor,
};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;

/// Drops the resets of one set's floor for one fingerprint ($1, $2) older than the newest
/// $3 ([`RESETS_KEPT`]); none while there are no more.
const PRUNE_RESETS: &str = "DELETE FROM policy_bundle_floor_resets \
     WHERE trusted_keys = $1 AND bundle = $2 AND id <= \
     (SELECT id FROM policy_bundle_floor_resets WHERE trusted_keys = $1 AND bundle = $2 \
     ORDER BY id DESC LIMIT 1 OFFSET $3)";

impl BundleFloorRepository for PostgresStore {
    fn floor(&self, keys: &str, set: BundleSet) -> BoxFuture<'_, Result<Option<i64>, StateError>> {
        let keys = keys.to_owned();
        Box::pin(
            self.with_client(Area::BundleFloors, move |client, db| async move {
                let row = client
                    .query_opt(
                        "SELECT signed_ns FROM policy_bundle_floors \
                     WHERE trusted_keys = $1 AND bundle = $2",
                        &[&keys, &set.as_str()],
                    )
                    .await
                    .map_err(query_error(&db, "read a policy bundle's rollback floor"))?;
                Ok(row.map(|row| row.get(0)))
            }),
        )
    }

    fn raise(
        &self,
        keys: &str,
        set: BundleSet,
        signed_ns: i64,
    ) -> BoxFuture<'_, Result<i64, StateError>> {
        let keys = keys.to_owned();
        Box::pin(
            self.with_client(Area::BundleFloors, move |client, db| async move {
                let row = client
                    .query_one(
                        "INSERT INTO policy_bundle_floors \
                     (trusted_keys, bundle, signed_ns, raised_ms) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (trusted_keys, bundle) DO UPDATE SET \
                     raised_ms = CASE WHEN excluded.signed_ns > policy_bundle_floors.signed_ns \
                         THEN excluded.raised_ms ELSE policy_bundle_floors.raised_ms END, \
                     signed_ns = GREATEST(policy_bundle_floors.signed_ns, excluded.signed_ns) \
                     RETURNING signed_ns",
                        &[&keys, &set.as_str(), &signed_ns, &now_ms()],
                    )
                    .await
                    .map_err(query_error(&db, "raise a policy bundle's rollback floor"))?;
                Ok(row.get(0))
            }),
        )
    }

    fn all(&self) -> BoxFuture<'_, Result<Vec<StoredFloor>, StateError>> {
        Box::pin(
            self.with_client(Area::BundleFloors, move |client, db| async move {
                let rows = client
                .query(
                    "SELECT trusted_keys, bundle, signed_ns, raised_ms FROM policy_bundle_floors \
                     ORDER BY trusted_keys, bundle",
                    &[],
                )
                .await
                .map_err(query_error(&db, "list the policy bundles' rollback floors"))?;
                // The table's CHECK admits only the two names.
                Ok(rows
                    .iter()
                    .filter_map(|row| {
                        Some(StoredFloor {
                            trusted_keys: row.get(0),
                            set: BundleSet::named(row.get(1))?,
                            signed_ns: row.get(2),
                            raised_ms: row.get(3),
                        })
                    })
                    .collect())
            }),
        )
    }

    fn reset<'a>(
        &'a self,
        keys: &'a str,
        set: BundleSet,
        signed_ns: i64,
        by: &'a Resetter,
    ) -> BoxFuture<'a, Result<Option<FloorReset>, StateError>> {
        let (keys, by) = (keys.to_owned(), by.clone());
        Box::pin(
            self.with_client(Area::BundleFloors, move |mut client, db| async move {
                let err = || query_error(&db, "reset a policy bundle's rollback floor");
                let tx = client.transaction().await.map_err(err())?;
                let Some(removed) = tx
                    .query_opt(
                        "DELETE FROM policy_bundle_floors WHERE trusted_keys = $1 AND bundle = $2 \
                     AND signed_ns = $3 \
                     RETURNING signed_ns, raised_ms",
                        &[&keys, &set.as_str(), &signed_ns],
                    )
                    .await
                    .map_err(err())?
                else {
                    return Ok(None);
                };
                let (signed_ns, raised_ms): (i64, i64) = (removed.get(0), removed.get(1));
                let id: i64 = tx
                .query_one(
                    "INSERT INTO policy_bundle_floor_resets (trusted_keys, bundle, old_signed_ns, \
                     old_raised_ms, reset_by, reason, reset_at_ms, signature) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    &[
                        &keys,
                        &set.as_str(),
                        &signed_ns,
                        &raised_ms,
                        &by.by,
                        &by.reason,
                        &by.at_ms,
                        &by.signature,
                    ],
                )
                .await
                .map_err(err())?
                .get(0);
                tx.execute(PRUNE_RESETS, &[&keys, &set.as_str(), &RESETS_KEPT])
                    .await
                    .map_err(err())?;
                tx.commit().await.map_err(err())?;
                Ok(Some(FloorReset::new(
                    id,
                    keys,
                    set,
                    (signed_ns, raised_ms),
                    by,
                )))
            }),
        )
    }

    fn resets<'a>(&'a self, keys: &'a str) -> BoxFuture<'a, Result<Vec<FloorReset>, StateError>> {
        let keys = keys.to_owned();
        Box::pin(
            self.with_client(Area::BundleFloors, move |client, db| async move {
                let rows = client
                    .query(
                        "SELECT id, bundle, old_signed_ns, old_raised_ms, reset_by, reason, \
                     reset_at_ms, signature FROM (SELECT * FROM policy_bundle_floor_resets \
                     WHERE trusted_keys = $1 ORDER BY id DESC LIMIT $2) newest ORDER BY id",
                        &[&keys, &RESETS_READ],
                    )
                    .await
                    .map_err(query_error(
                        &db,
                        "list the resets of the policy bundles' floors",
                    ))?;
                // The table's CHECK admits only the two names.
                Ok(rows
                    .iter()
                    .filter_map(|row| {
                        Some(FloorReset::new(
                            row.get(0),
                            keys.clone(),
                            BundleSet::named(row.get(1))?,
                            (row.get(2), row.get(3)),
                            Resetter {
                                by: row.get(4),
                                reason: row.get(5),
                                at_ms: row.get(6),
                                signature: row.get(7),
                            },
                        ))
                    })
                    .collect())
            }),
        )
    }
}
