//! What the repositories of records kept until they expire (quarantines, token revocations)
//! read alike on PostgreSQL: the records left once the expired ones are removed, and their
//! revision.

use futures_util::future::BoxFuture;
use tokio_postgres::Row;

use super::{Concern, PostgresStore, announce, query_error};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;

impl PostgresStore {
    /// In one transaction: removes the records expired by now (`prune`, whose one parameter
    /// is the time), reads the rest (`select`) and, when any was removed, bumps `concern` and
    /// announces it; each row read as `record` (given the database, for its errors) makes it.
    pub(super) fn read_pruning<T: Send + 'static>(
        &self,
        area: Area,
        operation: &'static str,
        concern: Concern,
        prune: &'static str,
        select: &'static str,
        record: fn(&Row, &str) -> Result<T, StateError>,
    ) -> BoxFuture<'_, Result<Vec<T>, StateError>> {
        Box::pin(self.with_client(area, move |mut client, db| async move {
            let err = || query_error(&db, operation);
            let tx = client.transaction().await.map_err(err())?;
            let removed = tx.execute(prune, &[&now_ms()]).await.map_err(err())?;
            let rows = tx.query(select, &[]).await.map_err(err())?;
            if removed > 0 {
                announce(tx, &db, operation, concern).await?;
            } else {
                tx.commit().await.map_err(err())?;
            }
            rows.iter().map(|row| record(row, &db)).collect()
        }))
    }

    /// `concern`'s revision: it changes whenever one of its records changes, in any process.
    pub(super) fn revision_of(
        &self,
        area: Area,
        concern: Concern,
        operation: &'static str,
    ) -> BoxFuture<'_, Result<i64, StateError>> {
        Box::pin(self.with_client(area, move |client, db| async move {
            client
                .query_one(
                    "SELECT revision FROM revisions WHERE concern = $1",
                    &[&concern.revision],
                )
                .await
                .map(|row| row.get(0))
                .map_err(query_error(&db, operation))
        }))
    }
}
