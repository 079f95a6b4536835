//! A session's end as its event streams wait for it: set once, when the session closes or a
//! quarantine of its agent or a revocation of its token cuts it (then with why).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::fleet::cut::Cause;

/// Whether, and why, a session ended; wakes whoever waits for it.
#[derive(Debug, Default)]
pub struct Ended {
    flag: AtomicBool,
    notify: Notify,
    /// Why the session was cut, when it was.
    cut: Mutex<Option<Cause>>,
}

impl Ended {
    /// Ends the session; `cut` says why when it was cut.
    pub fn end(&self, cut: Option<Cause>) {
        if let Some(cause) = cut {
            *self.cut.lock().unwrap_or_else(|e| e.into_inner()) = Some(cause);
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

    /// Why the session was cut, when it was.
    pub fn cut(&self) -> Option<Cause> {
        self.cut.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The last message of a stream that is cut (`cause`: its agent quarantined, or its token
/// revoked): an MCP logging notification at level `error` from `warden`, with the stable code
/// and the sentence the agent is told.
pub fn cut_notice(cause: &Cause) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/message",
        "params": {
            "level": "error",
            "logger": "warden",
            "data": { "code": cause.code(), "message": cause.message() },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A quarantine of an agent, for `tool abuse`.
    fn cause() -> Cause {
        use crate::state::quarantine::{Actor, QuarantineRecord, Target};
        Cause::Quarantined(Arc::new(QuarantineRecord {
            target: Target::Agent("bot".into()),
            reason: "tool abuse".into(),
            trigger: "manual".into(),
            by: Actor::warden(),
            created_ms: 0,
            until_ms: None,
        }))
    }

    #[tokio::test]
    async fn waiters_wake_when_the_session_ends_and_learn_why() {
        let ended = Arc::new(Ended::default());
        let waiter = tokio::spawn({
            let ended = Arc::clone(&ended);
            async move { ended.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        ended.end(Some(cause()));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        let told = cut_notice(&ended.cut().expect("why it was cut"));
        assert_eq!(told["params"]["data"]["code"], "agent_quarantined");
        assert!(
            told["params"]["data"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("tool abuse")),
            "{told}"
        );
        // Ended already: no wait.
        tokio::time::timeout(Duration::from_secs(1), ended.wait())
            .await
            .unwrap();
    }
}
