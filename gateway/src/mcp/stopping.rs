//! Warden stopping, as the servers' requests held for an approval see it: each is withdrawn
//! when Warden stops (nobody will wait for its approval any more), and Warden waits, within
//! its shutdown grace, until each has recorded its withdrawal, before its stop record.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Whether Warden stops, and how many of the servers' requests wait for an approval (or for
/// their withdrawal to be recorded): shared by every agent session of the process.
#[derive(Clone)]
pub struct Stopping(Arc<Inner>);

struct Inner {
    stop: watch::Sender<bool>,
    held: watch::Sender<usize>,
}

impl Default for Stopping {
    fn default() -> Self {
        Stopping(Arc::new(Inner {
            stop: watch::Sender::new(false),
            held: watch::Sender::new(0),
        }))
    }
}

impl Stopping {
    /// Warden stops: every request held now, or from now on, is withdrawn.
    pub fn stop(&self) {
        self.0.stop.send_replace(true);
    }

    /// Ready once Warden stops.
    pub async fn stopped(&self) {
        let mut stop = self.0.stop.subscribe();
        // The guard `wait_for` returns is dropped here, before any other await.
        let _ = stop.wait_for(|stopping| *stopping).await;
    }

    /// One request held, counted until the guard is dropped (its verdict given, or its
    /// withdrawal recorded).
    pub fn holding(&self) -> Holding {
        self.0.held.send_modify(|held| *held += 1);
        Holding(Arc::clone(&self.0))
    }

    /// Waits, at most `within`, until no request is held; whether none is.
    pub async fn settled(&self, within: Duration) -> bool {
        let mut held = self.0.held.subscribe();
        tokio::time::timeout(within, async {
            let _ = held.wait_for(|held| *held == 0).await;
        })
        .await
        .is_ok()
    }
}

/// A request held for an approval, counted while it lives.
pub struct Holding(Arc<Inner>);

impl Drop for Holding {
    fn drop(&mut self) {
        self.0
            .held
            .send_modify(|held| *held = held.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_is_seen_by_waits_begun_before_and_after() {
        let stopping = Stopping::default();
        let before = tokio::spawn({
            let stopping = stopping.clone();
            async move { stopping.stopped().await }
        });
        stopping.stop();
        tokio::time::timeout(Duration::from_secs(1), before)
            .await
            .expect("seen by a wait begun before")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), stopping.stopped())
            .await
            .expect("seen by a wait begun after");
    }

    #[tokio::test]
    async fn settled_waits_for_every_held_request_within_its_bound() {
        let stopping = Stopping::default();
        assert!(stopping.settled(Duration::ZERO).await, "none held");
        let first = stopping.holding();
        let second = stopping.holding();
        assert!(!stopping.settled(Duration::from_millis(20)).await);
        drop(first);
        assert!(!stopping.settled(Duration::from_millis(20)).await);
        let waiting = tokio::spawn({
            let stopping = stopping.clone();
            async move { stopping.settled(Duration::from_secs(5)).await }
        });
        drop(second);
        assert!(waiting.await.unwrap(), "settled once the last is dropped");
    }
}
