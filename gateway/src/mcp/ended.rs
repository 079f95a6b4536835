//! A session's end as its event streams wait for it: set once, when the session closes or a
//! quarantine of its agent cuts it (then with what the agent is told).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tokio::sync::Notify;

/// Whether, and why, a session ended; wakes whoever waits for it.
#[derive(Debug, Default)]
pub struct Ended {
    flag: AtomicBool,
    notify: Notify,
    /// What the agent is told when a quarantine cut the session.
    cut: Mutex<Option<String>>,
}

impl Ended {
    /// Ends the session; `cut` says why when a quarantine cut it.
    pub fn end(&self, cut: Option<String>) {
        if let Some(message) = cut {
            *self.cut.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
        }
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether the session ended.
    pub fn is_ended(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Waits until the session ends.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check: an end after it wakes this wait.
            notified.as_mut().enable();
            if self.is_ended() {
                return;
            }
            notified.await;
        }
    }

    /// What the agent is told, when a quarantine cut the session.
    pub fn cut(&self) -> Option<String> {
        self.cut.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The last message of a stream a quarantine cuts: an MCP logging notification at level
/// `error` from `warden`, with the stable code and the sentence the agent is told.
pub fn cut_notice(message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/message",
        "params": {
            "level": "error",
            "logger": "warden",
            "data": { "code": crate::fleet::quarantine::CODE, "message": message },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_wake_when_the_session_ends_and_learn_why() {
        let ended = Arc::new(Ended::default());
        let waiter = tokio::spawn({
            let ended = Arc::clone(&ended);
            async move { ended.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        ended.end(Some("quarantined".into()));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ended.cut().as_deref(), Some("quarantined"));
        // Ended already: no wait.
        tokio::time::timeout(Duration::from_secs(1), ended.wait())
            .await
            .unwrap();
    }
}
