//! The shutdown signal every listener of the process watches: raised once (SIGTERM, SIGINT),
//! it closes the listening sockets and lets in-flight requests finish within the grace period.

use tokio::sync::watch;

/// Raises the shutdown signal; held by whoever decides the process stops.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// The shutdown signal as a listener watches it; cheap to clone into every listener and task.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new, not yet raised, shutdown signal.
pub fn shutdown_signal() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Raises the signal: every [`Shutdown::requested`] resolves.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown is requested (at once if it already was). Also resolves when the
    /// trigger is dropped without being raised: nothing can keep the listener running then.
    pub async fn requested(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_watcher_sees_the_signal_once_raised() {
        let (trigger, shutdown) = shutdown_signal();
        let early = tokio::spawn(shutdown.clone().requested());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!early.is_finished(), "not raised yet");
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(2), early)
            .await
            .expect("a watcher from before the signal wakes")
            .expect("task");
        tokio::time::timeout(Duration::from_secs(2), shutdown.requested())
            .await
            .expect("a watcher after the signal resolves at once");
    }
}
