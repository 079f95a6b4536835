//! The brake on guessed codes: five wrong second-factor codes within five minutes stop that
//! approver's codes for the rest of the five minutes, in the console and on the command line
//! alike. The count lives in the state store, so every replica and every command line shares
//! it and a restart does not reset it; a six-digit code guessed at that rate takes years. An
//! attempt is counted before its code is checked, in one statement, so codes sent at once (to
//! one replica or several) cannot all slip past the brake; a right code clears the count, and
//! an attempt that failed for another reason than its code is given back. A store that cannot
//! count refuses the attempt: no code is checked without the brake.

use std::time::Duration;

use crate::state::factors::CodeAttempt;
use crate::state::pins::now_ms;
use crate::state::{StateError, Store};

/// Wrong codes allowed per approver within [`ATTEMPT_WINDOW`].
pub const MAX_ATTEMPTS: u32 = 5;
/// The window wrong codes are counted in, and how long codes are then refused.
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Why the brake refused an attempt.
#[derive(Debug, thiserror::Error)]
pub enum BrakeError {
    #[error(
        "too many wrong codes for {subject}: try again in {minutes} minute(s); every attempt is \
         audited"
    )]
    TooManyAttempts { subject: String, minutes: u64 },
    #[error(
        "the wrong-code brake cannot count this attempt ({0}), so no code is checked now: try \
         again shortly"
    )]
    Unavailable(StateError),
}

fn window_ms() -> i64 {
    i64::try_from(ATTEMPT_WINDOW.as_millis()).unwrap_or(i64::MAX)
}

/// Counts an attempt of `subject` (as wrong until [`succeeded`] or [`given_back`] says
/// otherwise); refused while `subject` has had too many wrong codes lately, or when `store`
/// cannot count it.
pub async fn begin(store: &Store, subject: &str) -> Result<(), BrakeError> {
    let now = now_ms();
    let counted = store
        .factors()
        .count_code_attempt(subject, now, now.saturating_sub(window_ms()), MAX_ATTEMPTS)
        .await
        .map_err(BrakeError::Unavailable)?;
    match counted {
        CodeAttempt::Counted => Ok(()),
        CodeAttempt::Refused { since_ms } => {
            let left_ms = since_ms.saturating_add(window_ms()).saturating_sub(now);
            Err(BrakeError::TooManyAttempts {
                subject: subject.to_owned(),
                minutes: u64::try_from(left_ms / 60_000).unwrap_or(0) + 1,
            })
        }
    }
}

/// Gives back an attempt of `subject` that failed for another reason than a wrong code. A
/// store that cannot leaves it counted (stricter, never laxer).
pub async fn given_back(store: &Store, subject: &str) {
    if let Err(error) = store.factors().give_back_code_attempt(subject).await {
        tracing::warn!(subject, %error, "a code attempt could not be given back");
    }
}

/// Forgets `subject`'s wrong codes (after a right one). A store that cannot leaves them
/// counted (stricter, never laxer).
pub async fn succeeded(store: &Store, subject: &str) {
    if let Err(error) = store.factors().clear_code_attempts(subject).await {
        tracing::warn!(subject, %error, "wrong codes could not be forgotten after a right one");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sqlite::SqliteStore;

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::sqlite(
            SqliteStore::open(&dir.path().join("state.db"))
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn wrong_codes_stop_after_five_and_a_restart_does_not_reset_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = store(&dir).await;
        for _ in 0..MAX_ATTEMPTS - 1 {
            begin(&first, "alice").await.unwrap();
        }
        // Another process on the same store (or the same one after a restart) counts on.
        let again = store(&dir).await;
        begin(&again, "alice").await.unwrap();
        assert!(matches!(
            begin(&again, "alice").await,
            Err(BrakeError::TooManyAttempts { minutes: 5, .. })
        ));
        begin(&again, "bob").await.unwrap();
        succeeded(&again, "alice").await;
        begin(&first, "alice").await.unwrap();
    }

    #[tokio::test]
    async fn an_attempt_refused_for_another_reason_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        for _ in 0..MAX_ATTEMPTS {
            begin(&store, "alice").await.unwrap();
            given_back(&store, "alice").await;
        }
        begin(&store, "alice").await.unwrap();
    }

    #[tokio::test]
    async fn a_store_that_cannot_count_refuses_the_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        rusqlite::Connection::open(dir.path().join("state.db"))
            .unwrap()
            .execute_batch("DROP TABLE code_attempts")
            .unwrap();
        let refused = begin(&store, "alice").await.unwrap_err();
        assert!(matches!(refused, BrakeError::Unavailable(_)), "{refused}");
        assert!(
            refused.to_string().contains("no code is checked"),
            "{refused}"
        );
    }
}
