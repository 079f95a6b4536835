//! [`ApprovalRepository`] on SQLite: the `approvals` and `approval_votes` tables and the
//! `approvals` revision, which other processes on the file poll to learn of changes.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures_util::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use tokio::sync::broadcast;

use super::{SqliteStore, query_error};
use crate::state::approvals::{
    ANY, APPROVAL_COLUMNS, ApprovalFilter, ApprovalRecord, ApprovalRepository, ApprovalRow,
    ApprovalStatus, ApprovalWatch, Change, ConsumeOutcome, NewApproval, UNCOUNTED_ACTIONS,
    VOTE_COLUMNS, Vote, VoteOutcome, VoteRow, decide, expiry, names_json, new_id, withdraw_sql,
};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;

impl ApprovalRepository for SqliteStore {
    fn create_or_find(
        &self,
        new: NewApproval,
    ) -> BoxFuture<'_, Result<(ApprovalRecord, bool), StateError>> {
        let announce = self.announcer();
        Box::pin(self.run(Area::Approvals, move |conn, path| {
            let operation = "record an approval request";
            write(conn, path, &announce, operation, |tx| {
                let err = || query_error(path, operation);
                let now = now_ms();
                let mut changed = expire(tx, Some(&new.digest), now).map_err(err())?;
                let open = {
                    let mut stmt = tx
                        .prepare(
                            "SELECT id FROM approvals WHERE digest = ?1 \
                             AND status IN ('pending', 'approved') \
                             ORDER BY status = 'approved' DESC, created_ms, id",
                        )
                        .map_err(err())?;
                    stmt.query_map(params![new.digest], |row| row.get::<_, String>(0))
                        .map_err(err())?
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map_err(err())?
                };
                for id in open {
                    let record = read(tx, path, &id, now)?.ok_or_else(|| vanished(path))?;
                    if record.covers(&new) {
                        return Ok(((record, false), changed));
                    }
                }
                // None asks as much: a new one (the write lock is held, so no other process
                // opens the same one meanwhile), within what the principal may have pending.
                if let Some(cap) = new.pending_cap {
                    let pending: i64 = tx
                        .query_row(
                            "SELECT COUNT(*) FROM approvals WHERE status = 'pending' \
                             AND expires_ms > ?1 AND principal = ?2 \
                             AND action NOT IN (?3, ?4, ?5)",
                            params![
                                now,
                                new.principal,
                                UNCOUNTED_ACTIONS[0],
                                UNCOUNTED_ACTIONS[1],
                                UNCOUNTED_ACTIONS[2]
                            ],
                            |row| row.get(0),
                        )
                        .map_err(err())?;
                    new.within_cap(pending, cap)?;
                }
                let (context, groups) = new.json_columns();
                let id = new_id();
                tx.execute(
                    &format!(
                        "INSERT INTO approvals ({APPROVAL_COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
                         'pending', NULL, NULL)"
                    ),
                    params![
                        id,
                        new.digest,
                        new.principal,
                        new.action,
                        new.resource,
                        context,
                        new.policy,
                        new.reason,
                        groups,
                        i64::from(new.required.max(1)),
                        now,
                        expiry(now, new.ttl),
                    ],
                )
                .map_err(err())?;
                let record = read(tx, path, &id, now)?.ok_or_else(|| vanished(path))?;
                changed.push(id);
                Ok(((record, true), changed))
            })
        }))
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<ApprovalRecord>, StateError>> {
        let id = id.to_owned();
        Box::pin(self.run(Area::Approvals, move |conn, path| {
            read(conn, path, &id, now_ms())
        }))
    }

    fn list(
        &self,
        filter: ApprovalFilter,
    ) -> BoxFuture<'_, Result<Vec<ApprovalRecord>, StateError>> {
        Box::pin(self.run(Area::Approvals, move |conn, path| {
            let err = || query_error(path, "list approvals");
            let now = now_ms();
            let (sql, value) = match filter {
                ApprovalFilter::Pending => (
                    format!(
                        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending' \
                         AND expires_ms > ?1 ORDER BY created_ms, id"
                    ),
                    now,
                ),
                ApprovalFilter::Recent { limit } => (
                    format!(
                        "SELECT {APPROVAL_COLUMNS} FROM approvals \
                         ORDER BY created_ms DESC, id LIMIT ?1"
                    ),
                    i64::from(limit),
                ),
            };
            let rows = {
                let mut stmt = conn.prepare(&sql).map_err(err())?;
                stmt.query_map(params![value], approval_row)
                    .map_err(err())?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(err())?
            };
            rows.into_iter()
                .map(|row| with_votes(conn, path, row, now))
                .collect()
        }))
    }

    fn vote<'a>(
        &'a self,
        id: &'a str,
        vote: Vote,
    ) -> BoxFuture<'a, Result<VoteOutcome, StateError>> {
        let id = id.to_owned();
        let announce = self.announcer();
        Box::pin(self.run(Area::Approvals, move |conn, path| {
            let operation = "record a vote on an approval";
            write(conn, path, &announce, operation, |tx| {
                let err = || query_error(path, operation);
                let now = now_ms();
                let Some(record) = read(tx, path, &id, now)? else {
                    return Ok((VoteOutcome::Unknown, vec![]));
                };
                let mut changed = vec![];
                if record.status == ApprovalStatus::Expired {
                    changed = expire(tx, Some(&record.digest), now).map_err(err())?;
                }
                if record.status != ApprovalStatus::Pending {
                    let record = read(tx, path, &id, now)?.ok_or_else(|| vanished(path))?;
                    return Ok((VoteOutcome::NotPending(Box::new(record)), changed));
                }
                if record.votes.iter().any(|v| v.by_same_person(&vote)) {
                    return Ok((VoteOutcome::AlreadyVoted(Box::new(record)), changed));
                }
                tx.execute(
                    &format!(
                        "INSERT INTO approval_votes (approval_id, {VOTE_COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                    ),
                    params![
                        id,
                        vote.approver,
                        vote.decision.as_str(),
                        vote.factor.as_str(),
                        vote.source.map(|s| s.to_string()),
                        vote.at_ms,
                        names_json(&vote.names),
                    ],
                )
                .map_err(err())?;
                let mut votes = record.votes.clone();
                votes.push(vote.clone());
                let status = decide(&votes, record.required);
                if status != ApprovalStatus::Pending {
                    tx.execute(
                        "UPDATE approvals SET status = ?2, decided_ms = ?3 WHERE id = ?1",
                        params![id, status.as_str(), now],
                    )
                    .map_err(err())?;
                }
                let record = read(tx, path, &id, now)?.ok_or_else(|| vanished(path))?;
                changed.push(id.clone());
                Ok((VoteOutcome::Recorded(Box::new(record)), changed))
            })
        }))
    }

    fn consume<'a>(
        &'a self,
        id: &'a str,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<ConsumeOutcome, StateError>> {
        let (id, digest) = (id.to_owned(), digest.to_owned());
        let announce = self.announcer();
        Box::pin(self.run(Area::Approvals, move |conn, path| {
            let operation = "use an approval";
            write(conn, path, &announce, operation, |tx| {
                let err = || query_error(path, operation);
                let now = now_ms();
                let Some(record) = read(tx, path, &id, now)? else {
                    return Ok((ConsumeOutcome::Unknown, vec![]));
                };
                if record.digest != digest {
                    return Ok((ConsumeOutcome::DigestMismatch, vec![]));
                }
                match record.status {
                    ApprovalStatus::Approved => {
                        tx.execute(
                            "UPDATE approvals SET status = 'consumed', decided_ms = ?2 \
                             WHERE id = ?1 AND status = 'approved'",
                            params![id, now],
                        )
                        .map_err(err())?;
                        let record = read(tx, path, &id, now)?.ok_or_else(|| vanished(path))?;
                        Ok((ConsumeOutcome::Consumed(Box::new(record)), vec![id.clone()]))
                    }
                    ApprovalStatus::Expired => {
                        let changed = expire(tx, Some(&digest), now).map_err(err())?;
                        Ok((
                            ConsumeOutcome::NotApproved(ApprovalStatus::Expired),
                            changed,
                        ))
                    }
                    status => Ok((ConsumeOutcome::NotApproved(status), vec![])),
                }
            })
        }))
    }

    fn withdraw<'a>(
        &'a self,
        id: &'a str,
        why: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApprovalRecord>, StateError>> {
        let (id, why) = (id.to_owned(), why.to_owned());
        let announce = self.announcer();
        Box::pin(self.run(Area::Approvals, move |conn, path| {
            let operation = "withdraw an approval";
            write(conn, path, &announce, operation, |tx| {
                let now = now_ms();
                let withdrawn = tx
                    .execute(&withdraw_sql('?'), params![id, why, now])
                    .map_err(query_error(path, operation))?;
                let changed = if withdrawn > 0 {
                    vec![id.clone()]
                } else {
                    vec![]
                };
                Ok((read(tx, path, &id, now)?, changed))
            })
        }))
    }

    fn expire_due(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        let announce = self.announcer();
        Box::pin(self.run(Area::Approvals, move |conn, path| {
            let operation = "expire approvals";
            write(conn, path, &announce, operation, |tx| {
                let expired = expire(tx, None, now_ms()).map_err(query_error(path, operation))?;
                Ok((expired.clone(), expired))
            })
        }))
    }

    fn watch(&self, id: &str) -> ApprovalWatch {
        ApprovalWatch::new(id, self.changes.subscribe())
    }
}

/// What a write needs to announce its changes.
struct Announcer {
    changes: broadcast::Sender<Change>,
    seen: Arc<AtomicI64>,
}

impl SqliteStore {
    fn announcer(&self) -> Announcer {
        Announcer {
            changes: self.changes.clone(),
            seen: Arc::clone(&self.seen_revision),
        }
    }
}

/// Runs `change` in one immediate transaction. When it names approvals it changed, the
/// approvals revision moves with them, and once committed they are announced (with "any",
/// when the revision had moved without this process: another one wrote meanwhile).
fn write<T>(
    conn: &mut Connection,
    path: &Path,
    announce: &Announcer,
    operation: &'static str,
    change: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(T, Vec<String>), StateError>,
) -> Result<T, StateError> {
    let err = || query_error(path, operation);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err())?;
    let (outcome, changed) = change(&tx)?;
    let mut before = None;
    if !changed.is_empty() {
        let revision: i64 = tx
            .query_row(
                "UPDATE revisions SET revision = revision + 1 WHERE concern = 'approvals' \
                 RETURNING revision - 1",
                [],
                |row| row.get(0),
            )
            .map_err(err())?;
        before = Some(revision);
    }
    tx.commit().map_err(err())?;
    if let Some(before) = before {
        if announce.seen.swap(before + 1, Ordering::SeqCst) != before {
            let _ = announce.changes.send(Arc::from(ANY));
        }
        for id in changed {
            let _ = announce.changes.send(Arc::from(id));
        }
    }
    Ok(outcome)
}

/// Marks the pending or approved requests past their time (of `digest`, or all) as expired;
/// their ids.
fn expire(
    tx: &rusqlite::Transaction<'_>,
    digest: Option<&str>,
    now: i64,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = tx.prepare(
        "UPDATE approvals SET status = 'expired', decided_ms = ?1 \
         WHERE status IN ('pending', 'approved') AND expires_ms <= ?1 \
         AND (?2 IS NULL OR digest = ?2) RETURNING id",
    )?;
    stmt.query_map(params![now, digest], |row| row.get(0))?
        .collect()
}

fn read(
    conn: &Connection,
    path: &Path,
    id: &str,
    now: i64,
) -> Result<Option<ApprovalRecord>, StateError> {
    conn.query_row(
        &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"),
        params![id],
        approval_row,
    )
    .optional()
    .map_err(query_error(path, "read an approval"))?
    .map(|row| with_votes(conn, path, row, now))
    .transpose()
}

fn with_votes(
    conn: &Connection,
    path: &Path,
    row: ApprovalRow,
    now: i64,
) -> Result<ApprovalRecord, StateError> {
    let err = || query_error(path, "read the votes on an approval");
    let votes = {
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {VOTE_COLUMNS} FROM approval_votes WHERE approval_id = ?1 \
                 ORDER BY at_ms, approver"
            ))
            .map_err(err())?;
        stmt.query_map(params![row.id], |r| {
            Ok(VoteRow {
                approver: r.get(0)?,
                decision: r.get(1)?,
                factor: r.get(2)?,
                source: r.get(3)?,
                at_ms: r.get(4)?,
                names_json: r.get(5)?,
            })
        })
        .map_err(err())?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(err())?
    };
    row.into_record(votes, now)
        .map_err(|what| StateError::Corrupt {
            store: path.display().to_string(),
            what,
        })
}

fn approval_row(row: &Row<'_>) -> rusqlite::Result<ApprovalRow> {
    Ok(ApprovalRow {
        id: row.get(0)?,
        digest: row.get(1)?,
        principal: row.get(2)?,
        action: row.get(3)?,
        resource: row.get(4)?,
        context_json: row.get(5)?,
        policy: row.get(6)?,
        reason: row.get(7)?,
        groups_json: row.get(8)?,
        required: row.get(9)?,
        created_ms: row.get(10)?,
        expires_ms: row.get(11)?,
        status: row.get(12)?,
        decided_ms: row.get(13)?,
        withdrawn: row.get(14)?,
    })
}

fn vanished(path: &Path) -> StateError {
    StateError::Corrupt {
        store: path.display().to_string(),
        what: "approval (it vanished while being written)".into(),
    }
}
