//! What cuts the in-flight work a request opened (a response stream, an MCP session and its
//! streams, an egress tunnel): a quarantine of its agent, or a revocation of the Warden token
//! it was opened with. Woken by every change of either set (made here or read from the store,
//! so a change made on another replica wakes it too), it checks its agent and token, and is
//! ready once one of them is stopped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

use super::quarantine::{self, Quarantines};
use crate::action::Principal;
use crate::identity::revocation::{self, Revocations, TokenStamp};
use crate::state::quarantine::QuarantineRecord;
use crate::state::revocations::RevocationRecord;

/// Why in-flight work is cut.
#[derive(Debug, Clone)]
pub enum Cause {
    /// Its agent, or a group it is in, was quarantined.
    Quarantined(Arc<QuarantineRecord>),
    /// The token it was opened with was revoked (`whom`: how the revocation names it).
    Revoked {
        record: Arc<RevocationRecord>,
        whom: &'static str,
    },
}

impl Cause {
    /// The stable code the agent and the metrics see (`agent_quarantined`, `token_revoked`).
    pub fn code(&self) -> &'static str {
        match self {
            Cause::Quarantined(_) => quarantine::CODE,
            Cause::Revoked { .. } => revocation::CODE,
        }
    }

    /// What the agent is told.
    pub fn message(&self) -> String {
        match self {
            Cause::Quarantined(record) => quarantine::message(record),
            Cause::Revoked { record, whom } => revocation::refusal(record, whom).to_string(),
        }
    }

    /// Why the work ended, for its outcome record.
    pub fn outcome(&self) -> String {
        match self {
            Cause::Quarantined(record) => {
                format!("cut: the agent was quarantined ({})", record.reason)
            }
            Cause::Revoked { record, .. } => {
                format!("cut: its token was revoked ({})", record.reason)
            }
        }
    }

    /// Why, for logs.
    pub fn what(&self) -> &'static str {
        match self {
            Cause::Quarantined(_) => "the agent was quarantined",
            Cause::Revoked { .. } => "its token was revoked",
        }
    }
}

/// Ready with why its agent's work is cut; pending until a quarantine or a revocation stops it.
pub struct Cut {
    quarantines: Arc<Quarantines>,
    revocations: Arc<Revocations>,
    principal: Arc<Principal>,
    /// The Warden token the work was opened with (`None`: another issuer's, or mTLS, which
    /// Warden does not revoke).
    token: Option<TokenStamp>,
    /// Armed before each check, so a change between the check and the wait is not missed.
    quarantined: Pin<Box<OwnedNotified>>,
    revoked: Pin<Box<OwnedNotified>>,
    /// Whether both sets were checked once (a quarantine or revocation that came between the
    /// request's admission and this cut's making is found then).
    checked: bool,
}

impl std::fmt::Debug for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cut")
            .field("principal", &self.principal.id)
            .finish_non_exhaustive()
    }
}

/// A wait for the next `notify`.
fn armed(notify: &Arc<Notify>) -> Pin<Box<OwnedNotified>> {
    Box::pin(Arc::clone(notify).notified_owned())
}

impl Cut {
    /// Watches `principal`'s quarantines and, when `token` is given, that token's revocations.
    pub fn new(
        quarantines: Arc<Quarantines>,
        revocations: Arc<Revocations>,
        principal: Arc<Principal>,
        token: Option<TokenStamp>,
    ) -> Cut {
        let quarantined = armed(quarantines.changed());
        let revoked = armed(revocations.changed());
        Cut {
            quarantines,
            revocations,
            principal,
            token,
            quarantined,
            revoked,
            checked: false,
        }
    }

    /// Why this agent's work is cut, once it is.
    pub fn poll_cut(&mut self, cx: &mut Context<'_>) -> Poll<Cause> {
        if !self.checked {
            self.checked = true;
            if let Some(cause) = self.check() {
                return Poll::Ready(cause);
            }
        }
        loop {
            let quarantined = self.quarantined.as_mut().poll(cx).is_ready();
            let revoked = self.revoked.as_mut().poll(cx).is_ready();
            if !quarantined && !revoked {
                return Poll::Pending;
            }
            // Re-armed before the check: a change after it wakes the new one.
            if quarantined {
                self.quarantined = armed(self.quarantines.changed());
            }
            if revoked {
                self.revoked = armed(self.revocations.changed());
            }
            if let Some(cause) = self.check() {
                return Poll::Ready(cause);
            }
        }
    }

    /// Waits until this agent's work is cut; why.
    pub async fn cut(&mut self) -> Cause {
        std::future::poll_fn(|cx| self.poll_cut(cx)).await
    }

    /// The agent this watches.
    pub fn principal(&self) -> &Arc<Principal> {
        &self.principal
    }

    /// The Warden token this watches, when it watches one.
    pub fn token(&self) -> Option<&TokenStamp> {
        self.token.as_ref()
    }

    /// Records that `cause` cut this agent's work: what, in `detail` (a revocation's target
    /// is the token's id, never the token).
    pub fn record(&self, cause: &Cause, detail: serde_json::Value) {
        match cause {
            Cause::Quarantined(record) => self.quarantines.record_cut(record, detail),
            Cause::Revoked { record, .. } => {
                self.revocations
                    .record_cut(record, &self.principal.id, detail)
            }
        }
    }

    /// The quarantine of the agent, else the revocation of the token, in force now.
    fn check(&self) -> Option<Cause> {
        if let Some(record) = self.quarantines.check(&self.principal) {
            return Some(Cause::Quarantined(record));
        }
        let token = self.token.as_ref()?;
        self.revocations
            .revoking(&self.principal.id, token)
            .map(|(record, whom)| Cause::Revoked { record, whom })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::AuditLog;
    use crate::audit::config::AuditConfig;
    use crate::fleet::quarantine::QuarantineMetrics;
    use crate::identity::revocation::revocation;
    use crate::state::pins::now_ms;
    use crate::state::quarantine::{Actor, Target};
    use crate::state::revocations::{RevocationRepository, Revoked};
    use crate::state::sqlite::SqliteStore;

    struct Sets {
        dir: tempfile::TempDir,
        quarantines: Arc<Quarantines>,
        revocations: Arc<Revocations>,
    }

    /// Empty sets of this process, its revocations following a store on disk.
    async fn sets() -> Sets {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::open(&dir.path().join("audit"), &AuditConfig::default()).unwrap();
        let quarantines = Arc::new(Quarantines::new(audit.clone(), QuarantineMetrics::new()));
        let revocations = Arc::new(Revocations::new(audit));
        let store = SqliteStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        revocations
            .attach(Arc::new(store), Duration::from_millis(20))
            .await
            .unwrap();
        Sets {
            dir,
            quarantines,
            revocations,
        }
    }

    impl Sets {
        fn cut(&self, agent: &str, token: Option<TokenStamp>) -> Cut {
            let mut principal = Principal::anonymous();
            principal.id = Arc::from(agent);
            Cut::new(
                Arc::clone(&self.quarantines),
                Arc::clone(&self.revocations),
                Arc::new(principal),
                token,
            )
        }

        /// Revokes `target` from another process on the same store (as `warden token
        /// revoke` does, or another replica).
        async fn revoke_elsewhere(&self, target: Revoked, reason: &str) {
            let elsewhere = SqliteStore::open(&self.dir.path().join("state.db"))
                .await
                .unwrap();
            let record = revocation(target, reason.into(), Actor::cli("bob"));
            elsewhere.revoke(record).await.unwrap();
        }
    }

    fn stamp(id: &str) -> Option<TokenStamp> {
        Some(TokenStamp {
            id: Some(Arc::from(id)),
            issued_at: u64::try_from(now_ms() / 1000).unwrap() - 10,
        })
    }

    /// Whether `cut` is still pending after a while.
    async fn pending(cut: &mut Cut) -> bool {
        tokio::time::timeout(Duration::from_millis(150), cut.cut())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_revocation_of_its_token_made_elsewhere_cuts_the_work_it_opened() {
        let sets = sets().await;
        let mut cut = sets.cut("bot-1", stamp("t-1"));
        let mut other_token = sets.cut("bot-1", stamp("t-2"));
        assert!(pending(&mut cut).await);
        sets.revoke_elsewhere(Revoked::Token("t-1".into()), "leaked in a CI log")
            .await;
        let cause = tokio::time::timeout(Duration::from_secs(5), cut.cut())
            .await
            .expect("the revocation, read from the store, wakes the cut");
        assert_eq!(cause.code(), "token_revoked");
        assert!(cause.message().contains("leaked in a CI log"), "{cause:?}");
        assert_eq!(
            cause.outcome(),
            "cut: its token was revoked (leaked in a CI log)"
        );
        assert!(
            pending(&mut other_token).await,
            "another token's work goes on"
        );
    }

    #[tokio::test]
    async fn an_agent_revocation_cuts_its_tokens_work_and_a_quarantine_any_work() {
        let sets = sets().await;
        let mut with_token = sets.cut("bot-1", stamp("t-1"));
        let mut without_token = sets.cut("bot-1", None);
        sets.revocations
            .revoke(revocation(
                Revoked::Agent("bot-1".into()),
                "runner compromised".into(),
                Actor::cli("bob"),
            ))
            .await
            .unwrap();
        let cause = tokio::time::timeout(Duration::from_secs(5), with_token.cut())
            .await
            .expect("a revocation made here wakes the cut");
        assert!(matches!(cause, Cause::Revoked { .. }), "{cause:?}");
        assert!(
            pending(&mut without_token).await,
            "work opened without a Warden token is no token's to revoke"
        );
        let _ = sets
            .quarantines
            .quarantine(crate::state::quarantine::QuarantineRecord {
                target: Target::Agent("bot-1".into()),
                reason: "incident 5150".into(),
                trigger: "manual".into(),
                by: Actor::cli("bob"),
                created_ms: now_ms(),
                until_ms: None,
            })
            .await;
        let cause = tokio::time::timeout(Duration::from_secs(5), without_token.cut())
            .await
            .expect("the quarantine wakes the cut");
        assert_eq!(cause.code(), "agent_quarantined");
        // A cut made once they are in force is ready at once.
        let mut late = sets.cut("bot-1", stamp("t-3"));
        assert!(!pending(&mut late).await);
    }
}
