//! [`ApprovalRepository`] on PostgreSQL: the `approvals` and `approval_votes` tables. A step
//! that changes an approval locks its row (`FOR UPDATE`) and sends `NOTIFY` with the id in the
//! same transaction, so the notification goes out exactly when the change is committed.
//!
//! Time is this replica's wall clock ([`now_ms`]), as everywhere in the store, never the
//! database's (`now()`): an approval's end is stamped and judged by the replicas' clocks, which
//! NTP keeps within milliseconds of each other, and a gate waiting on this replica sets its
//! timer by the same clock it is judged by (`ApprovalRepository::now_ms`). A step that changes
//! an approval reads it once it holds the approval's row lock (or the principal's pending
//! lock), not before waiting for it: a step that waited for another replica's past the
//! approval's end acts on it as ended.

use futures_util::future::BoxFuture;
use tokio_postgres::{Row, Transaction};

use super::listen::CHANNEL;
use super::{PostgresStore, query_error};
use crate::state::approvals::{
    APPROVAL_COLUMNS, ApprovalFilter, ApprovalRecord, ApprovalRepository, ApprovalRow,
    ApprovalStatus, ApprovalWatch, ConsumeOutcome, NewApproval, UNCOUNTED_ACTIONS, VOTE_COLUMNS,
    Vote, VoteOutcome, VoteRow, decide, expiry, names_json, new_id, withdraw_sql,
};
use crate::state::error::StateError;
use crate::state::health::Area;
use crate::state::pins::now_ms;

/// The class of the advisory locks that count a principal's pending approvals (the second key
/// is the principal's hash): "wapp" in ASCII.
const PENDING_LOCK: i32 = 0x7761_7070;

impl ApprovalRepository for PostgresStore {
    fn create_or_find(
        &self,
        new: NewApproval,
    ) -> BoxFuture<'_, Result<(ApprovalRecord, bool), StateError>> {
        Box::pin(
            self.with_client(Area::Approvals, move |mut client, db| async move {
                let operation = "record an approval request";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                let now = now_ms();
                let mut changed = expire(&tx, Some(&new.digest), now).await.map_err(err())?;
                let open = tx
                    .query(
                        "SELECT id FROM approvals WHERE digest = $1 \
                     AND status IN ('pending', 'approved') \
                     ORDER BY status = 'approved' DESC, created_ms, id",
                        &[&new.digest],
                    )
                    .await
                    .map_err(err())?;
                for row in open {
                    let id: String = row.get(0);
                    let record = read(&tx, &db, &id, now)
                        .await?
                        .ok_or_else(|| vanished(&db))?;
                    if record.covers(&new) {
                        commit(tx, &db, operation, &changed).await?;
                        return Ok((record, false));
                    }
                }
                // None asks as much: a new one, unless another replica opened the same meanwhile,
                // within what the principal may have pending (counted under a lock of the
                // principal's, so that replicas opening its approvals at once take turns). What
                // is pending, and when the new one starts, are of the time read once the lock
                // is held: an approval that ended while this waited for it counts no more, and
                // the new one's time-to-live is not shortened by the wait.
                let mut now = now;
                if let Some(cap) = new.pending_cap {
                    tx.execute(
                        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                        &[&PENDING_LOCK, &new.principal],
                    )
                    .await
                    .map_err(err())?;
                    now = now_ms();
                    let pending: i64 = tx
                        .query_one(
                            "SELECT COUNT(*) FROM approvals WHERE status = 'pending' \
                         AND expires_ms > $1 AND principal = $2 AND action <> ALL($3)",
                            &[&now, &new.principal, &&UNCOUNTED_ACTIONS[..]],
                        )
                        .await
                        .map_err(err())?
                        .get(0);
                    new.within_cap(pending, cap)?;
                }
                let (context, groups) = new.json_columns();
                let id = new_id();
                let required = i64::from(new.required.max(1));
                let created = tx
                    .execute(
                        &format!(
                            "INSERT INTO approvals ({APPROVAL_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                         'pending', NULL, NULL) \
                         ON CONFLICT (digest, policy, groups_json, required) \
                         WHERE status IN ('pending', 'approved') DO NOTHING"
                        ),
                        &[
                            &id,
                            &new.digest,
                            &new.principal,
                            &new.action,
                            &new.resource,
                            &context,
                            &new.policy,
                            &new.reason,
                            &groups,
                            &required,
                            &now,
                            &expiry(now, new.ttl),
                        ],
                    )
                    .await
                    .map_err(err())?
                    == 1;
                if created {
                    changed.push(id);
                }
                let open: String = tx
                    .query_one(
                        "SELECT id FROM approvals WHERE digest = $1 AND policy = $2 \
                     AND groups_json = $3 AND required = $4 \
                     AND status IN ('pending', 'approved')",
                        &[&new.digest, &new.policy, &groups, &required],
                    )
                    .await
                    .map_err(err())?
                    .get(0);
                // The insert may have waited for another replica's of the same request.
                let record = read(&tx, &db, &open, now_ms())
                    .await?
                    .ok_or_else(|| vanished(&db))?;
                commit(tx, &db, operation, &changed).await?;
                Ok((record, created))
            }),
        )
    }

    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<ApprovalRecord>, StateError>> {
        let id = id.to_owned();
        Box::pin(
            self.with_client(Area::Approvals, move |mut client, db| async move {
                let tx = client
                    .transaction()
                    .await
                    .map_err(query_error(&db, "read an approval"))?;
                read(&tx, &db, &id, now_ms()).await
            }),
        )
    }

    fn list(
        &self,
        filter: ApprovalFilter,
    ) -> BoxFuture<'_, Result<Vec<ApprovalRecord>, StateError>> {
        Box::pin(
            self.with_client(Area::Approvals, move |mut client, db| async move {
                let err = || query_error(&db, "list approvals");
                let tx = client.transaction().await.map_err(err())?;
                let now = now_ms();
                let rows = match filter {
                    ApprovalFilter::Pending => {
                        tx.query(
                            &format!(
                                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending' \
                             AND expires_ms > $1 ORDER BY created_ms, id"
                            ),
                            &[&now],
                        )
                        .await
                    }
                    ApprovalFilter::Recent { limit } => {
                        tx.query(
                            &format!(
                                "SELECT {APPROVAL_COLUMNS} FROM approvals \
                             ORDER BY created_ms DESC, id LIMIT $1"
                            ),
                            &[&i64::from(limit)],
                        )
                        .await
                    }
                }
                .map_err(err())?;
                let mut records = Vec::with_capacity(rows.len());
                for row in rows {
                    records.push(with_votes(&tx, &db, approval_row(&row), now).await?);
                }
                Ok(records)
            }),
        )
    }

    fn vote<'a>(
        &'a self,
        id: &'a str,
        vote: Vote,
    ) -> BoxFuture<'a, Result<VoteOutcome, StateError>> {
        let id = id.to_owned();
        Box::pin(
            self.with_client(Area::Approvals, move |mut client, db| async move {
                let operation = "record a vote on an approval";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                let Some((record, now)) = locked(&tx, &db, &id).await? else {
                    return Ok(VoteOutcome::Unknown);
                };
                if record.status != ApprovalStatus::Pending {
                    let changed = if record.status == ApprovalStatus::Expired {
                        expire(&tx, Some(&record.digest), now)
                            .await
                            .map_err(err())?
                    } else {
                        vec![]
                    };
                    let record = read(&tx, &db, &id, now)
                        .await?
                        .ok_or_else(|| vanished(&db))?;
                    commit(tx, &db, operation, &changed).await?;
                    return Ok(VoteOutcome::NotPending(Box::new(record)));
                }
                if record.votes.iter().any(|v| v.by_same_person(&vote)) {
                    return Ok(VoteOutcome::AlreadyVoted(Box::new(record)));
                }
                tx.execute(
                    &format!(
                        "INSERT INTO approval_votes (approval_id, {VOTE_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    ),
                    &[
                        &id,
                        &vote.approver,
                        &vote.decision.as_str(),
                        &vote.factor.as_str(),
                        &vote.source.map(|s| s.to_string()),
                        &vote.at_ms,
                        &names_json(&vote.names),
                    ],
                )
                .await
                .map_err(err())?;
                let mut votes = record.votes.clone();
                votes.push(vote);
                let status = decide(&votes, record.required);
                if status != ApprovalStatus::Pending {
                    tx.execute(
                        "UPDATE approvals SET status = $2, decided_ms = $3 WHERE id = $1",
                        &[&id, &status.as_str(), &now],
                    )
                    .await
                    .map_err(err())?;
                }
                let record = read(&tx, &db, &id, now)
                    .await?
                    .ok_or_else(|| vanished(&db))?;
                commit(tx, &db, operation, std::slice::from_ref(&id)).await?;
                Ok(VoteOutcome::Recorded(Box::new(record)))
            }),
        )
    }

    fn consume<'a>(
        &'a self,
        id: &'a str,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<ConsumeOutcome, StateError>> {
        let (id, digest) = (id.to_owned(), digest.to_owned());
        Box::pin(
            self.with_client(Area::Approvals, move |mut client, db| async move {
                let operation = "use an approval";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                let Some((record, now)) = locked(&tx, &db, &id).await? else {
                    return Ok(ConsumeOutcome::Unknown);
                };
                if record.digest != digest {
                    return Ok(ConsumeOutcome::DigestMismatch);
                }
                match record.status {
                    ApprovalStatus::Approved => {
                        tx.execute(
                            "UPDATE approvals SET status = 'consumed', decided_ms = $2 \
                         WHERE id = $1 AND status = 'approved'",
                            &[&id, &now],
                        )
                        .await
                        .map_err(err())?;
                        let record = read(&tx, &db, &id, now)
                            .await?
                            .ok_or_else(|| vanished(&db))?;
                        commit(tx, &db, operation, std::slice::from_ref(&id)).await?;
                        Ok(ConsumeOutcome::Consumed(Box::new(record)))
                    }
                    ApprovalStatus::Expired => {
                        let changed = expire(&tx, Some(&digest), now).await.map_err(err())?;
                        commit(tx, &db, operation, &changed).await?;
                        Ok(ConsumeOutcome::NotApproved(ApprovalStatus::Expired))
                    }
                    status => Ok(ConsumeOutcome::NotApproved(status)),
                }
            }),
        )
    }

    fn withdraw<'a>(
        &'a self,
        id: &'a str,
        why: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApprovalRecord>, StateError>> {
        let (id, why) = (id.to_owned(), why.to_owned());
        Box::pin(
            self.with_client(Area::Approvals, move |mut client, db| async move {
                let operation = "withdraw an approval";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                let Some(now) = lock(&tx, &db, &id).await? else {
                    return Ok(None);
                };
                let withdrawn = tx
                    .execute(&withdraw_sql('$'), &[&id, &why, &now])
                    .await
                    .map_err(err())?;
                let record = read(&tx, &db, &id, now).await?;
                let changed = if withdrawn > 0 { vec![id] } else { vec![] };
                commit(tx, &db, operation, &changed).await?;
                Ok(record)
            }),
        )
    }

    fn expire_due(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        Box::pin(
            self.with_client(Area::Approvals, move |mut client, db| async move {
                let operation = "expire approvals";
                let err = || query_error(&db, operation);
                let tx = client.transaction().await.map_err(err())?;
                let expired = expire(&tx, None, now_ms()).await.map_err(err())?;
                commit(tx, &db, operation, &expired).await?;
                Ok(expired)
            }),
        )
    }

    fn watch(&self, id: &str) -> ApprovalWatch {
        ApprovalWatch::new(id, self.changes.subscribe())
    }
}

/// Announces the approvals `changed` (to every replica, once committed) and commits.
async fn commit(
    tx: deadpool_postgres::Transaction<'_>,
    db: &str,
    operation: &'static str,
    changed: &[String],
) -> Result<(), StateError> {
    let err = || query_error(db, operation);
    for id in changed {
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, id])
            .await
            .map_err(err())?;
    }
    tx.commit().await.map_err(err())
}

/// Marks the pending or approved requests past their time (of `digest`, or all) as expired;
/// their ids.
async fn expire(
    tx: &Transaction<'_>,
    digest: Option<&str>,
    now: i64,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "UPDATE approvals SET status = 'expired', decided_ms = $1 \
             WHERE status IN ('pending', 'approved') AND expires_ms <= $1 \
             AND ($2::text IS NULL OR digest = $2) RETURNING id",
            &[&now, &digest],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The approval `id`, as of `now`.
async fn read(
    tx: &Transaction<'_>,
    db: &str,
    id: &str,
    now: i64,
) -> Result<Option<ApprovalRecord>, StateError> {
    let row = tx
        .query_opt(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(query_error(db, "read an approval"))?;
    match row {
        Some(row) => Ok(Some(with_votes(tx, db, approval_row(&row), now).await?)),
        None => Ok(None),
    }
}

/// Locks approval `id`'s row for this transaction (`FOR UPDATE`) and reads the time once it
/// holds it, as [`locked`] does; `None` when no approval has this id.
async fn lock(tx: &Transaction<'_>, db: &str, id: &str) -> Result<Option<i64>, StateError> {
    let row = tx
        .query_opt("SELECT id FROM approvals WHERE id = $1 FOR UPDATE", &[&id])
        .await
        .map_err(query_error(db, "lock an approval"))?;
    Ok(row.map(|_| now_ms()))
}

/// Approval `id` locked for this transaction (`FOR UPDATE`), as of the time read once the
/// lock is held, and that time. A vote or a use that waited for the lock (another replica's
/// vote, use or expiry holding it) is judged when it is made, not when it asked: one that
/// waited past the approval's end finds it expired, as SQLite's (whose clock is read inside
/// its write lock) does.
async fn locked(
    tx: &Transaction<'_>,
    db: &str,
    id: &str,
) -> Result<Option<(ApprovalRecord, i64)>, StateError> {
    let row = tx
        .query_opt(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .map_err(query_error(db, "read an approval"))?;
    let now = now_ms();
    match row {
        Some(row) => Ok(Some((
            with_votes(tx, db, approval_row(&row), now).await?,
            now,
        ))),
        None => Ok(None),
    }
}

async fn with_votes(
    tx: &Transaction<'_>,
    db: &str,
    row: ApprovalRow,
    now: i64,
) -> Result<ApprovalRecord, StateError> {
    let votes = tx
        .query(
            &format!(
                "SELECT {VOTE_COLUMNS} FROM approval_votes WHERE approval_id = $1 \
                 ORDER BY at_ms, approver"
            ),
            &[&row.id],
        )
        .await
        .map_err(query_error(db, "read the votes on an approval"))?
        .iter()
        .map(|r| VoteRow {
            approver: r.get(0),
            decision: r.get(1),
            factor: r.get(2),
            source: r.get(3),
            at_ms: r.get(4),
            names_json: r.get(5),
        })
        .collect();
    row.into_record(votes, now)
        .map_err(|what| StateError::Corrupt {
            store: db.to_owned(),
            what,
        })
}

fn approval_row(row: &Row) -> ApprovalRow {
    ApprovalRow {
        id: row.get(0),
        digest: row.get(1),
        principal: row.get(2),
        action: row.get(3),
        resource: row.get(4),
        context_json: row.get(5),
        policy: row.get(6),
        reason: row.get(7),
        groups_json: row.get(8),
        required: row.get(9),
        created_ms: row.get(10),
        expires_ms: row.get(11),
        status: row.get(12),
        decided_ms: row.get(13),
        withdrawn: row.get(14),
    }
}

fn vanished(db: &str) -> StateError {
    StateError::Corrupt {
        store: db.to_owned(),
        what: "approval (it vanished while being written)".into(),
    }
}
