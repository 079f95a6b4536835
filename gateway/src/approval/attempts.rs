//! The brake on guessed codes: five wrong second-factor codes within five minutes stop that
//! approver's codes for the rest of the five minutes, in the console and on the command line
//! alike. The count is kept per person, under every name they go by (the console's subject and
//! the provider's `sub`, preferred username and e-mail address; the operator's name on the
//! command line), so that one person signed in to the console as `u-42` and listed in
//! `approvals.operators` as `dave@example.com` has one brake, not one per name: a code counts
//! under each of their names, and any name at its limit stops them. Names are the ones that
//! make one person vote once (e-mail addresses compared without regard to case).
//!
//! The count lives in the state store, so every replica and every command line shares it and
//! a restart does not reset it; a six-digit code guessed at that rate takes years. An attempt
//! is counted before its code is checked, in one transaction, so codes sent at once (to one
//! replica or several) cannot all slip past the brake; a right code clears the count, and an
//! attempt that failed for another reason than its code is given back. A store that cannot
//! count refuses the attempt: no code is checked without the brake. Counts whose window is over
//! are removed by [`keep_tidy`], whether or not a right code ever came.

use std::time::Duration;

use crate::state::factors::CodeAttempt;
use crate::state::pins::now_ms;
use crate::state::{StateError, Store};

/// Wrong codes allowed per approver within [`ATTEMPT_WINDOW`].
pub const MAX_ATTEMPTS: u32 = 5;
/// The window wrong codes are counted in, and how long codes are then refused.
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(5 * 60);
/// How often counts whose window is over are removed from the state store.
pub const TIDY_EVERY: Duration = Duration::from_secs(15 * 60);

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

/// One person as the brake counts them: the name they act under now, and every name they go
/// by (as the store keys them: e-mail addresses in lower case, each once, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    subject: String,
    keys: Vec<String>,
}

impl Person {
    /// The person acting as `subject`, who also goes by `aliases`.
    pub fn new(subject: &str, aliases: &[String]) -> Person {
        let mut keys: Vec<String> = std::iter::once(subject)
            .chain(aliases.iter().map(String::as_str))
            .map(key)
            .collect();
        keys.sort();
        keys.dedup();
        Person {
            subject: subject.to_owned(),
            keys,
        }
    }

    /// The name they act under now (whose second factor is checked).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The keys their attempts are counted under.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

/// The key a name is counted under: an e-mail address in lower case (`Dave@Example.com` and
/// `dave@example.com` are one person, as they are when votes are counted), any other name as
/// it is.
fn key(name: &str) -> String {
    if name.contains('@') {
        name.to_ascii_lowercase()
    } else {
        name.to_owned()
    }
}

fn window_ms() -> i64 {
    i64::try_from(ATTEMPT_WINDOW.as_millis()).unwrap_or(i64::MAX)
}

/// Counts an attempt of `person` (as wrong until [`succeeded`] or [`given_back`] says
/// otherwise); refused while any of their names has had too many wrong codes lately, or when
/// `store` cannot count it.
pub async fn begin(store: &Store, person: &Person) -> Result<(), BrakeError> {
    let now = now_ms();
    let counted = store
        .factors()
        .count_code_attempt(
            &person.keys,
            now,
            now.saturating_sub(window_ms()),
            MAX_ATTEMPTS,
        )
        .await
        .map_err(BrakeError::Unavailable)?;
    match counted {
        CodeAttempt::Counted => Ok(()),
        CodeAttempt::Refused { since_ms } => {
            let left_ms = since_ms.saturating_add(window_ms()).saturating_sub(now);
            Err(BrakeError::TooManyAttempts {
                subject: person.subject.clone(),
                minutes: u64::try_from(left_ms / 60_000).unwrap_or(0) + 1,
            })
        }
    }
}

/// Gives back an attempt of `person` that failed for another reason than a wrong code. A
/// store that cannot leaves it counted (stricter, never laxer).
pub async fn given_back(store: &Store, person: &Person) {
    if let Err(error) = store.factors().give_back_code_attempt(&person.keys).await {
        tracing::warn!(subject = %person.subject, %error, "a code attempt could not be given back");
    }
}

/// Forgets `person`'s wrong codes (after a right one). A store that cannot leaves them
/// counted (stricter, never laxer).
pub async fn succeeded(store: &Store, person: &Person) {
    if let Err(error) = store.factors().clear_code_attempts(&person.keys).await {
        tracing::warn!(subject = %person.subject, %error, "wrong codes could not be forgotten after a right one");
    }
}

/// Removes counts whose window is over (their wrong codes no longer brake anyone): how many.
pub async fn tidy(store: &Store) -> Result<u64, StateError> {
    store
        .factors()
        .purge_code_attempts(now_ms().saturating_sub(window_ms()))
        .await
}

/// Runs [`tidy`] now and every [`TIDY_EVERY`] for as long as the process lives (any replica
/// may: the delete is idempotent), so that the counts of people who never entered a right
/// code do not stay in the store.
pub fn keep_tidy(store: Store) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TIDY_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match tidy(&store).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(removed = n, "wrong-code counts past their window removed")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "wrong-code counts past their window could not be removed")
                }
            }
        }
    });
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

    /// The store's file, opened behind the brake's back.
    fn raw(dir: &tempfile::TempDir) -> rusqlite::Connection {
        rusqlite::Connection::open(dir.path().join("state.db")).unwrap()
    }

    fn alone(name: &str) -> Person {
        Person::new(name, &[])
    }

    #[tokio::test]
    async fn wrong_codes_stop_after_five_and_a_restart_does_not_reset_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = store(&dir).await;
        let alice = alone("alice");
        for _ in 0..MAX_ATTEMPTS - 1 {
            begin(&first, &alice).await.unwrap();
        }
        // Another process on the same store (or the same one after a restart) counts on.
        let again = store(&dir).await;
        begin(&again, &alice).await.unwrap();
        assert!(matches!(
            begin(&again, &alice).await,
            Err(BrakeError::TooManyAttempts { minutes: 5, .. })
        ));
        begin(&again, &alone("bob")).await.unwrap();
        succeeded(&again, &alice).await;
        begin(&first, &alice).await.unwrap();
    }

    #[tokio::test]
    async fn one_person_has_one_brake_in_the_console_and_on_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        // dave in the console: subject u-42, the provider naming him dave and by e-mail.
        let console = Person::new("u-42", &["dave".into(), "Dave@Example.com".into()]);
        // dave on the command line, listed in approvals.operators by his e-mail address.
        let cli = alone("dave@example.com");
        for _ in 0..3 {
            begin(&store, &console).await.unwrap();
        }
        for _ in 0..2 {
            begin(&store, &cli).await.unwrap();
        }
        // Five wrong codes in all: stopped under either name.
        let refused = begin(&store, &console).await.unwrap_err();
        assert!(
            matches!(&refused, BrakeError::TooManyAttempts { subject, .. } if subject == "u-42"),
            "{refused}"
        );
        assert!(matches!(
            begin(&store, &cli).await,
            Err(BrakeError::TooManyAttempts { .. })
        ));
        // Someone else sharing none of his names is not.
        begin(&store, &Person::new("u-7", &["erin".into()]))
            .await
            .unwrap();
    }

    #[test]
    fn a_person_is_counted_under_each_name_once_e_mail_without_regard_to_case() {
        let dave = Person::new(
            "u-42",
            &["Dave@Example.com".into(), "dave@example.com".into()],
        );
        assert_eq!(dave.keys(), ["dave@example.com", "u-42"]);
        // Other names keep their case: `Dave` and `dave` may be two people.
        assert_eq!(alone("Dave").keys(), ["Dave"]);
    }

    #[tokio::test]
    async fn an_attempt_refused_for_another_reason_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let alice = Person::new("alice", &["u-1".into()]);
        for _ in 0..MAX_ATTEMPTS {
            begin(&store, &alice).await.unwrap();
            given_back(&store, &alice).await;
        }
        begin(&store, &alice).await.unwrap();
    }

    #[tokio::test]
    async fn counts_past_their_window_are_tidied_away_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        begin(&store, &alone("alice")).await.unwrap();
        // mallory's wrong codes, long ago: no right code will ever clear them.
        let long_ago = now_ms() - window_ms() - 1;
        raw(&dir)
            .execute(
                "INSERT INTO code_attempts (subject, failures, since_ms) VALUES ('mallory', 5, ?1)",
                [long_ago],
            )
            .unwrap();
        assert_eq!(tidy(&store).await.unwrap(), 1);
        let left: Vec<String> = raw(&dir)
            .prepare("SELECT subject FROM code_attempts")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["alice"]);
    }

    #[tokio::test]
    async fn a_store_that_cannot_count_refuses_the_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        raw(&dir).execute_batch("DROP TABLE code_attempts").unwrap();
        let refused = begin(&store, &alone("alice")).await.unwrap_err();
        assert!(matches!(refused, BrakeError::Unavailable(_)), "{refused}");
        assert!(
            refused.to_string().contains("no code is checked"),
            "{refused}"
        );
    }
}
