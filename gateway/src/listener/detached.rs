//! Work a listener's requests hand off, that outlives the connection it came on (an egress
//! tunnel once its `CONNECT` is answered): counted while it runs, given the shutdown grace to
//! end by itself, then told to close, and waited for before its worker stops, so each piece
//! records how it ended.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Longest a worker waits, once told to close, for detached work to end.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// The detached work of one listener (shared by its workers); cheap to clone.
#[derive(Debug, Clone)]
pub struct Detached(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// How much work runs.
    open: watch::Sender<usize>,
    /// Raised when running work must close.
    close: watch::Sender<bool>,
}

/// One piece of detached work, counted until it is dropped.
#[derive(Debug)]
pub struct Held(Arc<Inner>);

impl Default for Detached {
    fn default() -> Self {
        Detached(Arc::new(Inner {
            open: watch::Sender::new(0),
            close: watch::Sender::new(false),
        }))
    }
}

impl Detached {
    /// Counts one piece of work until the returned guard is dropped.
    pub fn hold(&self) -> Held {
        self.0.open.send_modify(|n| *n += 1);
        Held(Arc::clone(&self.0))
    }

    /// Resolves once running work must close (the shutdown grace is over).
    pub fn closing(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut close = self.0.close.subscribe();
        async move {
            // The sender lives as long as this receiver's `Detached`: an error cannot happen.
            let _ = close.wait_for(|close| *close).await;
        }
    }

    /// Once `shutdown` resolves, waits up to `grace` for running work to end by itself, then
    /// tells what still runs to close and waits for it (at most [`CLOSE_WITHIN`]).
    pub async fn drain(&self, shutdown: impl Future<Output = ()>, grace: Duration) {
        shutdown.await;
        let mut open = self.0.open.subscribe();
        let running = *open.borrow();
        if running > 0 {
            tracing::info!(
                running,
                ?grace,
                "shutting down: letting open tunnels finish"
            );
        }
        if tokio::time::timeout(grace, open.wait_for(|n| *n == 0))
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(
            running = *open.borrow(),
            "shutdown grace elapsed; closing open tunnels"
        );
        self.0.close.send_replace(true);
        if tokio::time::timeout(CLOSE_WITHIN, open.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::error!(
                running = *open.borrow(),
                "open tunnels did not close in time"
            );
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_gets_the_grace_then_is_told_to_close_and_waited_for() {
        let detached = Detached::default();
        let held = detached.hold();
        let closing = detached.closing();
        let work = tokio::spawn(async move {
            closing.await;
            drop(held);
        });
        let started = std::time::Instant::now();
        detached
            .drain(std::future::ready(()), Duration::from_millis(300))
            .await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the whole grace"
        );
        assert_eq!(*detached.0.open.borrow(), 0, "waited for the work");
        work.await.unwrap();
    }

    #[tokio::test]
    async fn work_that_ends_within_the_grace_is_not_told_to_close() {
        let detached = Detached::default();
        let held = detached.hold();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        });
        let started = std::time::Instant::now();
        detached
            .drain(std::future::ready(()), Duration::from_secs(30))
            .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!*detached.0.close.borrow());
    }
}
