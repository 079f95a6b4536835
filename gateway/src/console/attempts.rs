//! The brake on guessed codes: five wrong codes within five minutes stop that approver's codes
//! for the rest of the five minutes (per replica; each attempt is audited). A six-digit code
//! guessed at that rate takes years. An attempt is counted before its code is checked, under
//! one lock, so codes sent at once cannot all slip past the brake; a right code clears the
//! count, and an attempt that failed for another reason than its code is given back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::ConsoleError;

/// Wrong codes allowed per approver within [`ATTEMPT_WINDOW`].
pub const MAX_ATTEMPTS: u32 = 5;
/// The window wrong codes are counted in, and how long codes are then refused.
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Wrong codes per approver, to stop guessing.
#[derive(Debug, Default)]
pub struct Attempts {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Attempts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an attempt of `subject` (as wrong until [`Attempts::succeeded`] or
    /// [`Attempts::given_back`] says otherwise); refused while `subject` has had too many
    /// wrong codes lately.
    pub fn begin(&self, subject: &str) -> Result<(), ConsoleError> {
        let mut failures = self.lock();
        if failures
            .get(subject)
            .is_some_and(|(_, since)| since.elapsed() >= ATTEMPT_WINDOW)
        {
            failures.remove(subject);
        }
        if failures.len() > 10_000 {
            failures.retain(|_, (_, since)| since.elapsed() < ATTEMPT_WINDOW);
        }
        let entry = failures
            .entry(subject.to_owned())
            .or_insert((0, Instant::now()));
        if entry.0 >= MAX_ATTEMPTS {
            return Err(ConsoleError::TooManyAttempts {
                subject: subject.to_owned(),
                minutes: (ATTEMPT_WINDOW.saturating_sub(entry.1.elapsed()).as_secs() / 60) + 1,
            });
        }
        entry.0 += 1;
        Ok(())
    }

    /// Gives back an attempt of `subject` that failed for another reason than a wrong code.
    pub fn given_back(&self, subject: &str) {
        if let Some(entry) = self.lock().get_mut(subject) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }

    /// Forgets `subject`'s wrong codes (after a right one).
    pub fn succeeded(&self, subject: &str) {
        self.lock().remove(subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_codes_stop_after_five() {
        let attempts = Attempts::default();
        for _ in 0..MAX_ATTEMPTS {
            attempts.begin("alice").unwrap();
        }
        assert!(matches!(
            attempts.begin("alice"),
            Err(ConsoleError::TooManyAttempts { .. })
        ));
        attempts.begin("bob").unwrap();
        attempts.succeeded("alice");
        attempts.begin("alice").unwrap();
    }

    #[test]
    fn codes_sent_at_once_cannot_pass_the_brake_together() {
        let attempts = std::sync::Arc::new(Attempts::default());
        let admitted: usize = (0..4)
            .map(|_| {
                let attempts = attempts.clone();
                std::thread::spawn(move || (0..5).filter(|_| attempts.begin("eve").is_ok()).count())
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(
            admitted, MAX_ATTEMPTS as usize,
            "checked and counted at once"
        );
    }

    #[test]
    fn an_attempt_refused_for_another_reason_is_given_back() {
        let attempts = Attempts::default();
        for _ in 0..MAX_ATTEMPTS {
            attempts.begin("alice").unwrap();
            attempts.given_back("alice");
        }
        attempts.begin("alice").unwrap();
    }
}
