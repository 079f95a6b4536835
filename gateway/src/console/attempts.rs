//! The brake on guessed codes: five wrong codes within five minutes stop that approver's codes
//! for the rest of the five minutes (per replica; each attempt is audited). A six-digit code
//! guessed at that rate takes years.

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

    /// Refused while `subject` has had too many wrong codes lately.
    pub fn check(&self, subject: &str) -> Result<(), ConsoleError> {
        let mut failures = self.lock();
        if failures
            .get(subject)
            .is_some_and(|(_, since)| since.elapsed() >= ATTEMPT_WINDOW)
        {
            failures.remove(subject);
        }
        match failures.get(subject) {
            Some((n, since)) if *n >= MAX_ATTEMPTS => Err(ConsoleError::TooManyAttempts {
                subject: subject.to_owned(),
                minutes: (ATTEMPT_WINDOW.saturating_sub(since.elapsed()).as_secs() / 60) + 1,
            }),
            _ => Ok(()),
        }
    }

    /// Counts a wrong code of `subject`.
    pub fn failed(&self, subject: &str) {
        let mut failures = self.lock();
        if failures.len() > 10_000 {
            failures.retain(|_, (_, since)| since.elapsed() < ATTEMPT_WINDOW);
        }
        let entry = failures
            .entry(subject.to_owned())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
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
            attempts.check("alice").unwrap();
            attempts.failed("alice");
        }
        assert!(matches!(
            attempts.check("alice"),
            Err(ConsoleError::TooManyAttempts { .. })
        ));
        attempts.check("bob").unwrap();
        attempts.succeeded("alice");
        attempts.check("alice").unwrap();
    }
}
