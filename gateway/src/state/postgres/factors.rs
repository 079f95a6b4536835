//! [`FactorRepository`] on PostgreSQL: the `totp_enrolments`, `webauthn_credentials` and
//! `code_attempts` tables. Each step is one statement, atomic on its own, but for counting a
//! code attempt under each of one person's names, which is one transaction.

use futures_util::future::BoxFuture;

use super::{Execute, PostgresStore, Query, QueryOpt, fixed, query_error};
use crate::state::error::StateError;
use crate::state::factors::{
    CodeAttempt, FactorRepository, TotpEnrolment, WebauthnCredential, attempt_keys,
};
use crate::state::health::Area;

impl FactorRepository for PostgresStore {
    fn totp<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Option<TotpEnrolment>, StateError>> {
        let row = self.run(
            Area::Factors,
            "read a TOTP enrolment",
            QueryOpt(
                "SELECT subject, sealed_secret, last_step, created_ms, confirmed_ms \
                 FROM totp_enrolments WHERE subject = $1",
            ),
            fixed([Box::new(subject.to_owned())]),
        );
        Box::pin(async move {
            Ok(row.await?.map(|row| TotpEnrolment {
                subject: row.get(0),
                sealed_secret: row.get(1),
                last_step: row.get(2),
                created_ms: row.get(3),
                confirmed_ms: row.get(4),
            }))
        })
    }

    fn begin_totp<'a>(
        &'a self,
        subject: &'a str,
        sealed_secret: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let subject = subject.to_owned();
        let changed = self.run(
            Area::Factors,
            "record a TOTP enrolment",
            Execute(
                "INSERT INTO totp_enrolments (subject, sealed_secret, last_step, created_ms, \
                 confirmed_ms) VALUES ($1, $2, NULL, $3, NULL) \
                 ON CONFLICT (subject) DO UPDATE SET sealed_secret = excluded.sealed_secret, \
                 last_step = NULL, created_ms = excluded.created_ms \
                 WHERE totp_enrolments.confirmed_ms IS NULL",
            ),
            move |now| [Box::new(subject), Box::new(sealed_secret), Box::new(now)],
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
        let changed = self.run(
            Area::Factors,
            "record a TOTP code's time step",
            Execute(
                "UPDATE totp_enrolments SET last_step = $2, \
                 confirmed_ms = CASE WHEN $3 THEN COALESCE(confirmed_ms, $4) ELSE confirmed_ms END \
                 WHERE subject = $1 AND (last_step IS NULL OR last_step < $2)",
            ),
            move |now| {
                [
                    Box::new(subject),
                    Box::new(step),
                    Box::new(confirm),
                    Box::new(now),
                ]
            },
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn remove_totp<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        let changed = self.run(
            Area::Factors,
            "remove a TOTP enrolment",
            Execute("DELETE FROM totp_enrolments WHERE subject = $1"),
            fixed([Box::new(subject.to_owned())]),
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn webauthn_credentials<'a>(
        &'a self,
        subject: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WebauthnCredential>, StateError>> {
        let rows = self.run(
            Area::Factors,
            "read passkeys",
            Query(
                "SELECT credential_id, subject, passkey, sign_count, created_ms, last_used_ms \
                 FROM webauthn_credentials WHERE subject = $1 ORDER BY created_ms, credential_id",
            ),
            fixed([Box::new(subject.to_owned())]),
        );
        Box::pin(async move {
            rows.await?
                .iter()
                .map(|row| {
                    let subject: String = row.get(1);
                    let sign_count =
                        u32::try_from(row.get::<_, i64>(3)).map_err(|_| StateError::Corrupt {
                            store: self.database().to_owned(),
                            what: format!("signature counter of a passkey of {subject:?}"),
                        })?;
                    Ok(WebauthnCredential {
                        credential_id: row.get(0),
                        subject,
                        passkey: row.get(2),
                        sign_count,
                        created_ms: row.get(4),
                        last_used_ms: row.get(5),
                    })
                })
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
        let subject = subject.to_owned();
        let credential_id = credential_id.to_vec();
        let changed = self.run(
            Area::Factors,
            "record a passkey",
            Execute(
                "INSERT INTO webauthn_credentials (credential_id, subject, passkey, sign_count, \
                 created_ms, last_used_ms) VALUES ($1, $2, $3, $4, $5, NULL) \
                 ON CONFLICT (credential_id) DO NOTHING",
            ),
            move |now| {
                [
                    Box::new(credential_id),
                    Box::new(subject),
                    Box::new(passkey),
                    Box::new(i64::from(sign_count)),
                    Box::new(now),
                ]
            },
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
        let subject = subject.to_owned();
        let credential_id = credential_id.to_vec();
        let changed = self.run(
            Area::Factors,
            "record a passkey's use",
            Execute(
                "UPDATE webauthn_credentials SET passkey = $3, sign_count = $4, last_used_ms = $5 \
                 WHERE credential_id = $1 AND subject = $2 \
                 AND (sign_count < $4 OR (sign_count = 0 AND $4 = 0))",
            ),
            move |now| {
                [
                    Box::new(credential_id),
                    Box::new(subject),
                    Box::new(passkey),
                    Box::new(i64::from(sign_count)),
                    Box::new(now),
                ]
            },
        );
        Box::pin(async move { Ok(changed.await? == 1) })
    }

    fn remove_webauthn<'a>(
        &'a self,
        subject: &'a str,
        credential_id: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StateError>> {
        let changed = self.run(
            Area::Factors,
            "remove a passkey",
            Execute("DELETE FROM webauthn_credentials WHERE credential_id = $1 AND subject = $2"),
            fixed([
                Box::new(credential_id.to_vec()),
                Box::new(subject.to_owned()),
            ]),
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
        Box::pin(
            self.with_client(Area::Factors, move |mut client, db| async move {
                let err = || query_error(&db, "count a second-factor code attempt");
                let tx = client.transaction().await.map_err(err())?;
                // Concurrent attempts queue on the rows' locks (taken in the names' order, so two
                // people sharing names cannot deadlock): each sees the count the one before it
                // left.
                for key in &keys {
                    let changed = tx
                        .execute(
                            COUNT_CODE_ATTEMPT,
                            &[key, &now_ms, &window_start_ms, &i64::from(max)],
                        )
                        .await
                        .map_err(err())?;
                    if changed == 1 {
                        continue;
                    }
                    let row = tx
                        .query_opt(
                            "SELECT since_ms FROM code_attempts WHERE subject = $1",
                            &[key],
                        )
                        .await
                        .map_err(err())?;
                    // Dropped, the transaction rolls back: counted under none of the names.
                    // Cleared in between: refused all the same, this attempt was not counted.
                    return Ok(CodeAttempt::Refused {
                        since_ms: row.map_or(now_ms, |row| row.get(0)),
                    });
                }
                tx.commit().await.map_err(err())?;
                Ok(CodeAttempt::Counted)
            }),
        )
    }

    fn give_back_code_attempt<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let given = self.run(
            Area::Factors,
            "give back a second-factor code attempt",
            Execute(
                "UPDATE code_attempts SET failures = failures - 1 \
                 WHERE subject = ANY($1) AND failures > 0",
            ),
            fixed([Box::new(attempt_keys(names))]),
        );
        Box::pin(async move { given.await.map(|_| ()) })
    }

    fn clear_code_attempts<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let cleared = self.run(
            Area::Factors,
            "clear second-factor code attempts",
            Execute("DELETE FROM code_attempts WHERE subject = ANY($1)"),
            fixed([Box::new(attempt_keys(names))]),
        );
        Box::pin(async move { cleared.await.map(|_| ()) })
    }

    fn purge_code_attempts(&self, window_start_ms: i64) -> BoxFuture<'_, Result<u64, StateError>> {
        Box::pin(self.run(
            Area::Factors,
            "remove wrong-code counts past their window",
            Execute("DELETE FROM code_attempts WHERE since_ms <= $1"),
            fixed([Box::new(window_start_ms)]),
        ))
    }
}

/// Counts an attempt (subject, now, window start, max): a row changes only when the attempt
/// is counted.
const COUNT_CODE_ATTEMPT: &str = "INSERT INTO code_attempts (subject, failures, since_ms) \
     VALUES ($1, 1, $2) ON CONFLICT (subject) DO UPDATE SET \
     failures = CASE WHEN code_attempts.since_ms <= $3 THEN 1 \
       ELSE code_attempts.failures + 1 END, \
     since_ms = CASE WHEN code_attempts.since_ms <= $3 THEN $2 \
       ELSE code_attempts.since_ms END \
     WHERE code_attempts.since_ms <= $3 OR code_attempts.failures < $4";
