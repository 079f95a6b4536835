//! [`BundleFloorRepository`] on SQLite: the `policy_bundle_floors` table.

use futures_util::future::BoxFuture;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, fixed, query_error};
use crate::state::bundle_floors::{
    BundleFloorRepository, BundleSet, FloorReset, RESETS_KEPT, RESETS_READ, Resetter, StoredFloor,
};
use crate::state::error::StateError;
use crate::state::health::Area;

/// Drops the resets of one set's floor for one fingerprint (?1, ?2) older than the newest
/// ?3 ([`RESETS_KEPT`]); none while there are no more.
const PRUNE_RESETS: &str = "DELETE FROM policy_bundle_floor_resets \
     WHERE trusted_keys = ?1 AND bundle = ?2 AND id <= \
     (SELECT id FROM policy_bundle_floor_resets WHERE trusted_keys = ?1 AND bundle = ?2 \
     ORDER BY id DESC LIMIT 1 OFFSET ?3)";

impl BundleFloorRepository for SqliteStore {
    fn floor(&self, keys: &str, set: BundleSet) -> BoxFuture<'_, Result<Option<i64>, StateError>> {
        Box::pin(self.query_opt(
            Area::BundleFloors,
            "read a policy bundle's rollback floor",
            "SELECT signed_ns FROM policy_bundle_floors \
             WHERE trusted_keys = ?1 AND bundle = ?2",
            fixed((keys.to_owned(), set.as_str())),
            |row| row.get(0),
        ))
    }

    fn raise(
        &self,
        keys: &str,
        set: BundleSet,
        signed_ns: i64,
    ) -> BoxFuture<'_, Result<i64, StateError>> {
        let keys = keys.to_owned();
        Box::pin(self.query_one(
            Area::BundleFloors,
            "raise a policy bundle's rollback floor",
            "INSERT INTO policy_bundle_floors (trusted_keys, bundle, signed_ns, raised_ms) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (trusted_keys, bundle) DO UPDATE SET \
             raised_ms = CASE WHEN excluded.signed_ns > policy_bundle_floors.signed_ns \
                 THEN excluded.raised_ms ELSE policy_bundle_floors.raised_ms END, \
             signed_ns = max(policy_bundle_floors.signed_ns, excluded.signed_ns) \
             RETURNING signed_ns",
            move |now| (keys, set.as_str(), signed_ns, now),
            |row| row.get(0),
        ))
    }

    fn all(&self) -> BoxFuture<'_, Result<Vec<StoredFloor>, StateError>> {
        let rows = self.query(
            Area::BundleFloors,
            "list the policy bundles' rollback floors",
            "SELECT trusted_keys, bundle, signed_ns, raised_ms FROM policy_bundle_floors \
             ORDER BY trusted_keys, bundle",
            fixed(()),
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get(2)?,
                    row.get(3)?,
                ))
            },
        );
        Box::pin(async move {
            Ok(rows
                .await?
                .into_iter()
                // The table's CHECK admits only the two names.
                .filter_map(|(trusted_keys, bundle, signed_ns, raised_ms)| {
                    Some(StoredFloor {
                        trusted_keys,
                        set: BundleSet::named(&bundle)?,
                        signed_ns,
                        raised_ms,
                    })
                })
                .collect())
        })
    }

    fn reset<'a>(
        &'a self,
        keys: &'a str,
        set: BundleSet,
        signed_ns: i64,
        by: &'a Resetter,
    ) -> BoxFuture<'a, Result<Option<FloorReset>, StateError>> {
        let (keys, by) = (keys.to_owned(), by.clone());
        Box::pin(self.run(Area::BundleFloors, move |conn, path| {
            let failed = || query_error(path, "reset a policy bundle's rollback floor");
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(failed())?;
            let removed: Option<(i64, i64)> = tx
                .query_row(
                    "DELETE FROM policy_bundle_floors WHERE trusted_keys = ?1 AND bundle = ?2 \
                     AND signed_ns = ?3 \
                     RETURNING signed_ns, raised_ms",
                    params![keys, set.as_str(), signed_ns],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(failed())?;
            let Some((signed_ns, raised_ms)) = removed else {
                return Ok(None);
            };
            let id = tx
                .query_row(
                    "INSERT INTO policy_bundle_floor_resets (trusted_keys, bundle, old_signed_ns, \
                     old_raised_ms, reset_by, reason, reset_at_ms, signature) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
                    params![
                        keys,
                        set.as_str(),
                        signed_ns,
                        raised_ms,
                        by.by,
                        by.reason,
                        by.at_ms,
                        by.signature
                    ],
                    |row| row.get(0),
                )
                .map_err(failed())?;
            tx.execute(PRUNE_RESETS, params![keys, set.as_str(), RESETS_KEPT])
                .map_err(failed())?;
            tx.commit().map_err(failed())?;
            Ok(Some(FloorReset::new(
                id,
                keys,
                set,
                (signed_ns, raised_ms),
                by,
            )))
        }))
    }

    fn resets<'a>(&'a self, keys: &'a str) -> BoxFuture<'a, Result<Vec<FloorReset>, StateError>> {
        let rows = self.query(
            Area::BundleFloors,
            "list the resets of the policy bundles' floors",
            "SELECT id, bundle, old_signed_ns, old_raised_ms, reset_by, reason, \
             reset_at_ms, signature FROM (SELECT * FROM policy_bundle_floor_resets \
             WHERE trusted_keys = ?1 ORDER BY id DESC LIMIT ?2) newest ORDER BY id",
            fixed((keys.to_owned(), RESETS_READ)),
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    Resetter {
                        by: row.get(4)?,
                        reason: row.get(5)?,
                        at_ms: row.get(6)?,
                        signature: row.get(7)?,
                    },
                ))
            },
        );
        Box::pin(async move {
            Ok(rows
                .await?
                .into_iter()
                // The table's CHECK admits only the two names.
                .filter_map(|(id, bundle, signed_ns, raised_ms, by)| {
                    let set = BundleSet::named(&bundle)?;
                    Some(FloorReset::new(
                        id,
                        keys.to_owned(),
                        set,
                        (signed_ns, raised_ms),
                        by,
                    ))
                })
                .collect())
        })
    }
}
