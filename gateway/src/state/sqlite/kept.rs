//! What the repositories of records kept until they expire (quarantines, token revocations)
//! read alike on SQLite: the records left once the expired ones are removed, and their
//! revision.

use futures_util::future::BoxFuture;
use rusqlite::params;

use super::{SqliteStore, fixed, query_error, rows, write_bumping};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;

impl SqliteStore {
    /// Removes the records expired by now (`prune`, whose one parameter is the time; the
    /// revision of `concern` bumped when any was), then reads the rest (`select`), each row
    /// as `row` makes it.
    pub(super) fn read_pruning<T: Send + 'static>(
        &self,
        area: Area,
        operation: &'static str,
        concern: &'static str,
        prune: &'static str,
        select: &'static str,
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> BoxFuture<'_, Result<Vec<T>, StateError>> {
        Box::pin(self.run(area, move |conn, path| {
            write_bumping(conn, concern, |tx| {
                Ok(tx.execute(prune, params![now_ms()])? > 0)
            })
            .map_err(query_error(path, operation))?;
            rows(conn, select, (), row).map_err(query_error(path, operation))
        }))
    }

    /// `concern`'s revision: it changes whenever one of its records changes, in any process.
    pub(super) fn revision_of(
        &self,
        area: Area,
        concern: &'static str,
        operation: &'static str,
    ) -> BoxFuture<'_, Result<i64, StateError>> {
        Box::pin(self.query_one(
            area,
            operation,
            "SELECT revision FROM revisions WHERE concern = ?1",
            fixed((concern,)),
            |row| row.get(0),
        ))
    }
}
