//! Waits between tries of a failed delivery: doubling from `retry.initial` up to `retry.max`,
//! each wait drawn between half and all of its step (jitter), so sinks that failed together
//! do not retry together.

use std::time::Duration;

use rand::Rng;

use super::config::RetryConfig;

/// The waits of one run of failures.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
    /// Failures in a row.
    pub failures: u32,
}

impl Backoff {
    /// A backoff with `config`'s bounds.
    pub fn new(config: &RetryConfig) -> Backoff {
        Backoff {
            initial: config.initial,
            max: config.max,
            step: config.initial,
            failures: 0,
        }
    }

    /// The wait before the next try.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        self.failures += 1;
        let half = step / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=step - half)
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.step = self.initial;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_up_to_the_bound_and_reset_after_success() {
        let mut b = Backoff::new(&RetryConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        });
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        let steps = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (wait, step) in waits.iter().zip(steps) {
            let step = Duration::from_millis(step);
            assert!(
                *wait >= step / 2 && *wait <= step,
                "{wait:?} within {step:?}"
            );
        }
        assert_eq!(b.failures, 8);
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let config = RetryConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(10),
        };
        let waits: std::collections::HashSet<Duration> =
            (0..20).map(|_| Backoff::new(&config).next_wait()).collect();
        assert!(waits.len() > 10, "{waits:?}");
    }
}
