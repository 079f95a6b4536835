//! [`FactorRepository`] on SQLite: the `totp_enrolments`, `webauthn_credentials` and
//! `code_attempts` tables.

use futures_util::future::BoxFuture;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, query_error};
use crate::state::error::StateError;
use crate::state::factors::{
    CodeAttempt, FactorRepository, TotpEnrolment, WebauthnCredential, attempt_keys,
};
use crate::state::health::Area;
use crate::state::pins::now_ms;

impl FactorRepository for SqliteStore {
    fn totp<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<TotpEnrolment>, StateError>> {
        let subject = subject.to_owned();
        Box::pin(self.run(Area::Factors, move |conn, path| {
            conn.query_row(
                "SELECT subject, sealed_secret, last_step, created_ms, confirmed_ms \
                 FROM totp_enrolments WHERE subject = ?1",
                params![subject],
                |row| {
                    Ok(TotpEnrolment {
                        subject: row.get(0)?,
                        sealed_secret: row.get(1)?,
                        last_step: row.get(2)?,
                        created_ms: row.get(3)?,
                        confirmed_ms: row.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(query_error(path, "read a TOTP enrolment"))
        }))
    }

    fn begin_totp<'a>(
        &'a self,
        subject: &'a str,
        sealed_secret: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let subject = subject.to_owned();
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let changed = conn
                .execute(
                    "INSERT INTO totp_enrolments (subject, sealed_secret, last_step, \
                     created_ms, confirmed_ms) VALUES (?1, ?2, NULL, ?3, NULL) \
                     ON CONFLICT (subject) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
                     last_step = NULL, created_ms = excluded.created_ms \
                     WHERE totp_enrolments.confirmed_ms IS NULL",
                    params![subject, sealed_secret, now_ms()],
                )
                .map_err(query_error(path, "record a TOTP enrolment"))?;
            Ok(changed == 1)
        }))
    }

    fn accept_totp_step<'a>(
        &'a self,
        subject: &'a str,
        step: i64,
        confirm: bool,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let subject = subject.to_owned();
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let changed = conn
                .execute(
                    "UPDATE totp_enrolments SET last_step = ?2, \
                     confirmed_ms = CASE WHEN ?3 THEN COALESCE(confirmed_ms, ?4) \
                       ELSE confirmed_ms END \
                     WHERE subject = ?1 AND (last_step IS NULL OR last_step < ?2)",
                    params![subject, step, confirm, now_ms()],
                )
                .map_err(query_error(path, "record a TOTP code's time step"))?;
            Ok(changed == 1)
        }))
    }

    fn remove_totp<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let subject = subject.to_owned();
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let changed = conn
                .execute(
                    "DELETE FROM totp_enrolments WHERE subject = ?1",
                    params![subject],
                )
                .map_err(query_error(path, "remove a TOTP enrolment"))?;
            Ok(changed == 1)
        }))
    }

    fn webauthn_credentials<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WebauthnCredential>, StateError>> {
        let subject = subject.to_owned();
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let err = || query_error(path, "read passkeys");
            let mut stmt = conn
                .prepare(
                    "SELECT credential_id, subject, passkey, sign_count, created_ms, \
                     last_used_ms FROM webauthn_credentials WHERE subject = ?1 \
                     ORDER BY created_ms, credential_id",
                )
                .map_err(err())?;
            let rows = stmt
                .query_map(params![subject], |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, Option<i64>>(5)?,
                    ))
                })
                .map_err(err())?;
            let mut credentials = Vec::new();
            for row in rows {
                let (credential_id, subject, passkey, count, created_ms, last_used_ms) =
                    row.map_err(err())?;
                let sign_count = u32::try_from(count).map_err(|_| StateError::Corrupt {
                    store: path.display().to_string(),
                    what: format!("signature counter of a passkey of {subject:?}"),
                })?;
                credentials.push(WebauthnCredential {
                    credential_id,
                    subject,
                    passkey,
                    sign_count,
                    created_ms,
                    last_used_ms,
                });
            }
            Ok(credentials)
        }))
    }

    fn add_webauthn<'a>(
        &'a self,
        subject: &'a str,
        credential_id: &'a [u8],
        passkey: String,
        sign_count: u32,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let (subject, credential_id) = (subject.to_owned(), credential_id.to_vec());
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let changed = conn
                .execute(
                    "INSERT INTO webauthn_credentials (credential_id, subject, passkey, \
                     sign_count, created_ms, last_used_ms) VALUES (?1, ?2, ?3, ?4, ?5, NULL) \
                     ON CONFLICT (credential_id) DO NOTHING",
                    params![
                        credential_id,
                        subject,
                        passkey,
                        i64::from(sign_count),
                        now_ms()
                    ],
                )
                .map_err(query_error(path, "record a passkey"))?;
            Ok(changed == 1)
        }))
    }

    fn use_webauthn<'a>(
        &'a self,
        subject: &'a str,
        credential_id: &'a [u8],
        passkey: String,
        sign_count: u32,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let (subject, credential_id) = (subject.to_owned(), credential_id.to_vec());
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let changed = conn
                .execute(
                    "UPDATE webauthn_credentials SET passkey = ?3, sign_count = ?4, \
                     last_used_ms = ?5 WHERE credential_id = ?1 AND subject = ?2 \
                     AND (sign_count < ?4 OR (sign_count = 0 AND ?4 = 0))",
                    params![
                        credential_id,
                        subject,
                        passkey,
                        i64::from(sign_count),
                        now_ms()
                    ],
                )
                .map_err(query_error(path, "record a passkey's use"))?;
            Ok(changed == 1)
        }))
    }

    fn remove_webauthn<'a>(
        &'a self,
        subject: &'a str,
        credential_id: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let (subject, credential_id) = (subject.to_owned(), credential_id.to_vec());
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let changed = conn
                .execute(
                    "DELETE FROM webauthn_credentials WHERE credential_id = ?1 AND subject = ?2",
                    params![credential_id, subject],
                )
                .map_err(query_error(path, "remove a passkey"))?;
            Ok(changed == 1)
        }))
    }

    fn count_code_attempt<'a>(
        &'a self,
        names: &'a [String],
        now_ms: i64,
        window_start_ms: i64,
        max: u32,
    ) -> BoxFuture<'a, Result<CodeAttempt, StateError>> {
        let keys = attempt_keys(names);
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let err = || query_error(path, "count a second-factor code attempt");
            // The write lock first: another process counting the same person waits for this
            // one's count, and sees it.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err())?;
            for key in &keys {
                let changed = tx
                    .execute(
                        COUNT_CODE_ATTEMPT,
                        params![key, now_ms, window_start_ms, max],
                    )
                    .map_err(err())?;
                if changed == 1 {
                    continue;
                }
                let since_ms = tx
                    .query_row(
                        "SELECT since_ms FROM code_attempts WHERE subject = ?1",
                        params![key],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(err())?
                    // Cleared in between: refused all the same, this attempt was not counted.
                    .unwrap_or(now_ms);
                // Dropped, the transaction rolls back: counted under none of the names.
                return Ok(CodeAttempt::Refused { since_ms });
            }
            tx.commit().map_err(err())?;
            Ok(CodeAttempt::Counted)
        }))
    }

    fn give_back_code_attempt<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let keys = attempt_keys(names);
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let err = || query_error(path, "give back a second-factor code attempt");
            let tx = conn.transaction().map_err(err())?;
            for key in &keys {
                tx.execute(
                    "UPDATE code_attempts SET failures = failures - 1 \
                     WHERE subject = ?1 AND failures > 0",
                    params![key],
                )
                .map_err(err())?;
            }
            tx.commit().map_err(err())
        }))
    }

    fn clear_code_attempts<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let keys = attempt_keys(names);
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let err = || query_error(path, "clear second-factor code attempts");
            let tx = conn.transaction().map_err(err())?;
            for key in &keys {
                tx.execute("DELETE FROM code_attempts WHERE subject = ?1", params![key])
                    .map_err(err())?;
            }
            tx.commit().map_err(err())
        }))
    }

    fn purge_code_attempts(&self, window_start_ms: i64) -> BoxFuture<'_, Result<u64, StateError>> {
        Box::pin(self.run(Area::Factors, move |conn, path| {
            let removed = conn
                .execute(
                    "DELETE FROM code_attempts WHERE since_ms <= ?1",
                    params![window_start_ms],
                )
                .map_err(query_error(
                    path,
                    "remove wrong-code counts past their window",
                ))?;
            Ok(removed as u64)
        }))
    }
}

/// Counts an attempt (subject, now, window start, max): a row changes only when the attempt
/// is counted.
const COUNT_CODE_ATTEMPT: &str = "INSERT INTO code_attempts (subject, failures, since_ms) \
     VALUES (?1, 1, ?2) ON CONFLICT (subject) DO UPDATE SET \
     failures = CASE WHEN code_attempts.since_ms <= ?3 THEN 1 \
       ELSE code_attempts.failures + 1 END, \
     since_ms = CASE WHEN code_attempts.since_ms <= ?3 THEN ?2 \
       ELSE code_attempts.since_ms END \
     WHERE code_attempts.since_ms <= ?3 OR code_attempts.failures < ?4";
