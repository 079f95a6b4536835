//! [`FactorRepository`] on SQLite: the `totp_enrolments`, `webauthn_credentials` and
//! `code_attempts` tables.

use futures_util::future::BoxFuture;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, fixed, query_error};
use crate::state::error::StateError;
use crate::state::factors::{
    CodeAttempt, FactorRepository, TotpEnrolment, WebauthnCredential, attempt_keys,
};
use crate::state::health::Area;

impl FactorRepository for SqliteStore {
    fn totp<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<TotpEnrolment>, StateError>> {
        Box::pin(self.query_opt(
            Area::Factors,
            "read a TOTP enrolment",
            "SELECT subject, sealed_secret, last_step, created_ms, confirmed_ms \
             FROM totp_enrolments WHERE subject = ?1",
            fixed((subject.to_owned(),)),
            |row| {
                Ok(TotpEnrolment {
                    subject: row.get(0)?,
                    sealed_secret: row.get(1)?,
                    last_step: row.get(2)?,
                    created_ms: row.get(3)?,
                    confirmed_ms: row.get(4)?,
                })
            },
        ))
    }

    fn begin_totp<'a>(
        &'a self,
        subject: &'a str,
        sealed_secret: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let subject = subject.to_owned();
        let changed = self.execute(
            Area::Factors,
            "record a TOTP enrolment",
            "INSERT INTO totp_enrolments (subject, sealed_secret, last_step, \
             created_ms, confirmed_ms) VALUES (?1, ?2, NULL, ?3, NULL) \
             ON CONFLICT (subject) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
             last_step = NULL, created_ms = excluded.created_ms \
             WHERE totp_enrolments.confirmed_ms IS NULL",
            move |now| (subject, sealed_secret, now),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn accept_totp_step<'a>(
        &'a self,
        subject: &'a str,
        step: i64,
        confirm: bool,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let subject = subject.to_owned();
        let changed = self.execute(
            Area::Factors,
            "record a TOTP code's time step",
            "UPDATE totp_enrolments SET last_step = ?2, \
             confirmed_ms = CASE WHEN ?3 THEN COALESCE(confirmed_ms, ?4) \
               ELSE confirmed_ms END \
             WHERE subject = ?1 AND (last_step IS NULL OR last_step < ?2)",
            move |now| (subject, step, confirm, now),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn remove_totp<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let changed = self.execute(
            Area::Factors,
            "remove a TOTP enrolment",
            "DELETE FROM totp_enrolments WHERE subject = ?1",
            fixed((subject.to_owned(),)),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn webauthn_credentials<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WebauthnCredential>, StateError>> {
        let rows = self.query(
            Area::Factors,
            "read passkeys",
            "SELECT credential_id, subject, passkey, sign_count, created_ms, \
             last_used_ms FROM webauthn_credentials WHERE subject = ?1 \
             ORDER BY created_ms, credential_id",
            fixed((subject.to_owned(),)),
            |row| {
                Ok((
                    row.get::<_, Vec<u8>>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                ))
            },
        );
        Box::pin(async move {
            rows.await?
                .into_iter()
                .map(
                    |(credential_id, subject, passkey, count, created_ms, last_used_ms)| {
                        let sign_count = u32::try_from(count).map_err(|_| StateError::Corrupt {
                            store: self.path().display().to_string(),
                            what: format!("signature counter of a passkey of {subject:?}"),
                        })?;
                        Ok(WebauthnCredential {
                            credential_id,
                            subject,
                            passkey,
                            sign_count,
                            created_ms,
                            last_used_ms,
                        })
                    },
                )
                .collect()
        })
    }

    fn add_webauthn<'a>(
        &'a self,
        subject: &'a str,
        credential_id: &'a [u8],
        passkey: String,
        sign_count: u32,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let changed = self.execute(
            Area::Factors,
            "record a passkey",
            "INSERT INTO webauthn_credentials (credential_id, subject, passkey, \
             sign_count, created_ms, last_used_ms) VALUES (?1, ?2, ?3, ?4, ?5, NULL) \
             ON CONFLICT (credential_id) DO NOTHING",
            passkey_params(subject, credential_id, passkey, sign_count),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn use_webauthn<'a>(
        &'a self,
        subject: &'a str,
        credential_id: &'a [u8],
        passkey: String,
        sign_count: u32,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let changed = self.execute(
            Area::Factors,
            "record a passkey's use",
            "UPDATE webauthn_credentials SET passkey = ?3, sign_count = ?4, \
             last_used_ms = ?5 WHERE credential_id = ?1 AND subject = ?2 \
             AND (sign_count < ?4 OR (sign_count = 0 AND ?4 = 0))",
            passkey_params(subject, credential_id, passkey, sign_count),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn remove_webauthn<'a>(
        &'a self,
        subject: &'a str,
        credential_id: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let changed = self.execute(
            Area::Factors,
            "remove a passkey",
            "DELETE FROM webauthn_credentials WHERE credential_id = ?1 AND subject = ?2",
            fixed((credential_id.to_vec(), subject.to_owned())),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
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
        Box::pin(self.execute_each(
            Area::Factors,
            "give back a second-factor code attempt",
            "UPDATE code_attempts SET failures = failures - 1 \
             WHERE subject = ?1 AND failures > 0",
            attempt_keys(names),
            |key, _| (key,),
        ))
    }

    fn clear_code_attempts<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(self.execute_each(
            Area::Factors,
            "clear second-factor code attempts",
            "DELETE FROM code_attempts WHERE subject = ?1",
            attempt_keys(names),
            |key, _| (key,),
        ))
    }

    fn purge_code_attempts(&self, window_start_ms: i64) -> BoxFuture<'_, Result<u64, StateError>> {
        let removed = self.execute(
            Area::Factors,
            "remove wrong-code counts past their window",
            "DELETE FROM code_attempts WHERE since_ms <= ?1",
            fixed((window_start_ms,)),
        );
        Box::pin(async move { Ok(removed.await? as u64) })
    }
}

/// The parameters of a passkey's row written, made of the time now (its creation or its last
/// use): credential id, subject, passkey, signature counter, the time now.
fn passkey_params(
    subject: &str,
    credential_id: &[u8],
    passkey: String,
    sign_count: u32,
) -> impl FnOnce(i64) -> (Vec<u8>, String, String, i64, i64) + Send + 'static {
    let (credential_id, subject) = (credential_id.to_vec(), subject.to_owned());
    move |now| (credential_id, subject, passkey, i64::from(sign_count), now)
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
