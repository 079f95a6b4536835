//! The approval gate: what the hold stage does with a decision that needs a human.
//!
//! The action's digest (principal, action, resource, arguments) and the decision's terms
//! (policy, approvers, how many) name the approval: the gate finds an open request for the
//! digest that asks at least as much, or opens one, telling approvers through the webhooks
//! ([`Gate::open`]; a streamed request is answered at once then, `proxy/held.rs`), then
//! ([`Gate::conclude`])
//!
//! - finds it approved: consumes it (once, for this digest, before it expires) and lets the
//!   request go on;
//! - finds it pending: in `wait` mode waits for a decision, up to `approvals.wait_timeout`,
//!   woken by the store's change announcements (another replica's console included); else,
//!   or when the wait ends undecided, answers "pending" with the approval's id and where to
//!   decide, and the agent sends the same request again later;
//! - finds it denied or expired: refuses.
//!
//! A state store that cannot answer refuses (fail closed). Where a held request ends on its
//! approval (used, denied, expired, or left by the agent while it waited), the wait is
//! observed in `warden_approval_wait_seconds` (`approval/metrics.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::Hold;
use super::config::{ApprovalMode, ApprovalsConfig};
use super::metrics::{ApprovalMetrics, WaitOutcome};
use super::notify::{Notice, Notifier, console_link};
use super::sealed::BindingKey;
use crate::decision::Decision;
use crate::state::StateError;
use crate::state::approvals::{
    ApprovalRecord, ApprovalRepository, ApprovalStatus, ConsumeOutcome, NewApproval,
    UNCOUNTED_ACTIONS,
};

/// The action waiting, as the gate asks about it.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// `sha256:<hex>` over the exact action (the decision record's `action_digest`).
    pub digest: String,
    /// `Agent::"ci-bot"`.
    pub principal: String,
    /// The principal's id (`ci-bot`), for notifications.
    pub agent: String,
    /// `llm:chat`, `mcp:call_tool`.
    pub action: String,
    /// `Tool::"github__create_issue"`.
    pub resource: String,
    /// What approvers are shown: the arguments of a tool call, the facts of the request.
    pub context: Value,
}

/// What webhooks with `include_arguments` are shown of an action: a tool call's arguments, or
/// what an LLM call asks (its masked last user message, in the context only when it may be
/// shown).
fn notified_arguments(context: &Value) -> Option<Value> {
    context
        .get("arguments")
        .or_else(|| context.get("prompt"))
        .or_else(|| context.get("body"))
        .cloned()
}

/// An approval a request went on with.
#[derive(Debug, Clone, PartialEq)]
pub struct Approved {
    /// Its id.
    pub id: String,
    /// The policy it was asked for under (`@id`): it stands for that policy's approval only.
    pub policy: String,
    /// Who approved, with which factor.
    pub approvers: Vec<(String, &'static str)>,
}

/// An approval an action waits for, as the gate found or opened it.
#[derive(Debug)]
pub struct Opened {
    record: ApprovalRecord,
    /// The digest of the action waiting.
    digest: String,
    /// Who must approve, under which policy and why (for a "pending" answer).
    needed: String,
}

impl Opened {
    /// The approval's id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// Whether it is still to be decided.
    pub fn is_pending(&self) -> bool {
        self.record.status == ApprovalStatus::Pending
    }
}

/// How long past an approval's time-to-live (by the monotonic clock, from when its wait began)
/// a request that cannot be sent again still waits for the store to say the approval ended.
/// Long enough for a vote taken just before the end to be recorded under the store's lock and
/// for the replicas' clocks to differ by what NTP keeps them within (milliseconds; an approval
/// opened on a replica whose clock is ahead ends later by this replica's clock); short enough
/// that a wall clock stepped back (an NTP step, a VM resumed) holds the request at most this
/// much past its time-to-live, not as long as the step. (Slewing moves the monotonic clock
/// with the wall clock, so it opens no gap between the two.)
const END_SLACK: Duration = Duration::from_secs(5);

/// The approval gate.
pub struct Gate {
    approvals: Arc<dyn ApprovalRepository>,
    notifier: Option<Notifier>,
    mode: ApprovalMode,
    wait: Duration,
    keepalive: Duration,
    default_ttl: Duration,
    max_pending: u32,
    console_url: Option<String>,
    metrics: ApprovalMetrics,
    binding: BindingKey,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("mode", &self.mode)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// The gate `config` describes, on the store's approvals, telling `notifier`'s webhooks;
    /// what an approval binds of a request's credentials is keyed with `binding`.
    pub fn new(
        config: &ApprovalsConfig,
        approvals: Arc<dyn ApprovalRepository>,
        notifier: Option<Notifier>,
        binding: BindingKey,
    ) -> Gate {
        Gate {
            approvals,
            notifier,
            mode: config.mode,
            wait: config.wait_timeout,
            keepalive: config.keepalive_interval,
            default_ttl: config.default_ttl,
            max_pending: config.max_pending_per_agent,
            console_url: config.console_url.clone(),
            metrics: ApprovalMetrics::new(),
            binding,
        }
    }

    /// The key an approval binds a request's credentials with (`proxy/bound_headers.rs`).
    pub fn binding_key(&self) -> &BindingKey {
        &self.binding
    }

    /// The gate's metrics, to register and keep current.
    pub fn metrics(&self) -> &ApprovalMetrics {
        &self.metrics
    }

    /// How often a streamed request waiting for its approval carries a keep-alive comment;
    /// `None` when requests do not wait (`mode: pending`).
    pub fn keepalive(&self) -> Option<Duration> {
        (self.mode == ApprovalMode::Wait).then_some(self.keepalive)
    }

    /// Finds the open approval `waiting` needs, or opens one and tells approvers.
    pub async fn open(&self, decision: &Decision, waiting: Waiting) -> Result<Opened, Hold> {
        let Decision::NeedsApproval {
            policy,
            approvers,
            reason,
            ttl,
            approvals,
        } = decision
        else {
            return Err(super::hold(decision).err().unwrap_or(Hold::Unavailable {
                error: "the gate was asked about a decision that needs no approval".into(),
            }));
        };
        let ttl = ttl.unwrap_or(self.default_ttl);
        let new = NewApproval {
            digest: waiting.digest.clone(),
            principal: waiting.principal.clone(),
            action: waiting.action.clone(),
            resource: waiting.resource.clone(),
            context: waiting.context.clone(),
            policy: policy.to_string(),
            reason: reason.clone().unwrap_or_default(),
            approver_groups: approvers.clone(),
            required: u32::from((*approvals).max(1)),
            ttl,
            // An MCP server's requests to the agent are not the agent's to count: they have
            // their own bounds (mcp::router's MAX_HELD a session, requests_to_agent_per_minute).
            pending_cap: (!UNCOUNTED_ACTIONS.contains(&waiting.action.as_str()))
                .then_some(self.max_pending),
        };
        let (record, created) = match self.approvals.create_or_find(new).await {
            Ok(opened) => opened,
            Err(StateError::TooManyPending { pending, cap, .. }) => {
                return Err(Hold::TooManyPending {
                    needed: decision.reasons().concat(),
                    pending,
                    cap,
                });
            }
            Err(e) => return Err(unavailable(e)),
        };
        if created && let Some(notifier) = &self.notifier {
            notifier.notify(Notice {
                approval_id: record.id.clone(),
                agent: waiting.agent.clone(),
                action: waiting.action.clone(),
                resource: waiting.resource.clone(),
                policy: policy.to_string(),
                reason: reason.clone(),
                approvers: approvers.clone(),
                approvals: *approvals,
                expires_at: SystemTime::UNIX_EPOCH
                    + Duration::from_millis(u64::try_from(record.expires_ms).unwrap_or(0)),
                arguments: notified_arguments(&waiting.context),
                undeclared: super::undeclared::note(&waiting.context, false),
            });
        }
        if created {
            tracing::info!(approval_id = %record.id, principal = %waiting.principal, action = %waiting.action, policy = %policy, "action waits for approval");
        }
        Ok(Opened {
            record,
            digest: waiting.digest,
            needed: decision.reasons().concat(),
        })
    }

    /// The end of `opened`: in `wait` mode it is waited for while pending; approved, it is
    /// consumed and the request goes on; else why not.
    pub async fn conclude(&self, opened: Opened) -> Result<Approved, Hold> {
        let Opened {
            record,
            digest,
            needed,
        } = opened;
        let record = match (record.status, self.mode) {
            (ApprovalStatus::Pending, ApprovalMode::Wait) => {
                let deadline = tokio::time::Instant::now() + self.wait;
                self.wait_for(record, deadline).await?
            }
            _ => record,
        };
        self.settle(record, &digest, &needed).await
    }

    /// The end of `opened` for a request that cannot be sent again (a server's request to the
    /// agent): waited for while pending, whatever the mode, until decided or expired (its
    /// time-to-live, not `wait_timeout`); approved, it is consumed; else why not.
    ///
    /// The store says when the approval ends, by its wall clock; a wall clock stepped back
    /// while the request waits would hold it that much longer. So the wait is also bounded on
    /// the monotonic clock, by what was left of the time-to-live when it began plus
    /// [`END_SLACK`]: still pending by the store then, the request is refused as expired.
    pub async fn decided(&self, opened: Opened) -> Result<Approved, Hold> {
        let Opened {
            record,
            digest,
            needed,
        } = opened;
        let record = match record.status {
            ApprovalStatus::Pending => {
                let bound = tokio::time::Instant::now() + self.time_left(&record) + END_SLACK;
                self.wait_for(record, bound).await?
            }
            _ => record,
        };
        if record.status == ApprovalStatus::Pending {
            // Gone from the store while it was waited for, or held pending by a store's clock
            // stepped back past the bound: fail closed, as its time is up.
            let behind = record.expires_ms - self.approvals.now_ms();
            if behind > 0 {
                tracing::warn!(approval_id = %record.id, store_clock_behind_ms = behind, slack_ms = END_SLACK.as_millis() as u64, "approval still pending by the store's clock past its time-to-live and the slack by the monotonic clock (this replica's wall clock was stepped back, or the replica that opened it runs ahead: keep the replicas' clocks in sync): the request that waits for it is refused as expired");
            }
            self.waited(&record, WaitOutcome::Expired);
            return Err(Hold::ApprovalExpired { id: record.id });
        }
        self.settle(record, &digest, &needed).await
    }

    /// What is left of `record`'s time-to-live by the store's clock, never more than all of it
    /// (`expires_ms - created_ms`): a clock stepped back since it was opened does not lengthen
    /// it.
    fn time_left(&self, record: &ApprovalRecord) -> Duration {
        let left = (record.expires_ms - self.approvals.now_ms())
            .min(record.expires_ms - record.created_ms)
            .max(0);
        Duration::from_millis(u64::try_from(left).unwrap_or(0))
    }

    /// Waits for `record` to be decided, until it expires or `deadline` comes, whichever is
    /// first; the record as it then is.
    async fn wait_for(
        &self,
        record: ApprovalRecord,
        deadline: tokio::time::Instant,
    ) -> Result<ApprovalRecord, Hold> {
        // Dropped before the wait ends, the agent left: a cancelled wait.
        let left = AgentLeaves {
            metrics: &self.metrics,
            created_ms: record.created_ms,
            waiting: true,
        };
        let decided = self.wait_until(record, deadline).await;
        left.ended();
        decided
    }

    /// The wait of [`Gate::wait_for`]. The approval's end is the store's to say: its timer is
    /// set by the store's clock, and a timer that strikes while the store still holds the
    /// approval pending (a timer runs on the monotonic clock, the store judges by the wall
    /// clock, which NTP slews and steps) is set again for what is left, so before `deadline`
    /// the wait never ends on an approval an approver can still decide, nor lasts past the
    /// store's end of it. At `deadline` it ends on the approval as the store then has it.
    async fn wait_until(
        &self,
        record: ApprovalRecord,
        deadline: tokio::time::Instant,
    ) -> Result<ApprovalRecord, Hold> {
        let mut record = record;
        loop {
            // Watch first, then read: a decision between the two is not missed.
            let mut watch = self.approvals.watch(&record.id);
            match self.approvals.get(&record.id).await.map_err(unavailable)? {
                Some(now) if now.status != ApprovalStatus::Pending => return Ok(now),
                Some(now) => record = now,
                None => return Ok(record),
            }
            // At least a millisecond: read pending, its end is still ahead by the store's clock.
            let left = record
                .expires_ms
                .saturating_sub(self.approvals.now_ms())
                .max(1);
            let expiry = tokio::time::Instant::now()
                + Duration::from_millis(u64::try_from(left).unwrap_or(u64::MAX));
            if deadline <= expiry {
                if tokio::time::timeout_at(deadline, watch.changed())
                    .await
                    .is_err()
                {
                    // The wait is over: the approval as it stands now.
                    return Ok(self
                        .approvals
                        .get(&record.id)
                        .await
                        .map_err(unavailable)?
                        .unwrap_or(record));
                }
            } else {
                // Woken by a change or by its end: read again (pending past the timer: the
                // store's clock has not reached the end yet, and the timer is set anew).
                let _ = tokio::time::timeout_at(expiry, watch.changed()).await;
            }
        }
    }

    /// What `record`'s state means for the request with `digest`.
    async fn settle(
        &self,
        record: ApprovalRecord,
        digest: &str,
        needed: &str,
    ) -> Result<Approved, Hold> {
        match record.status {
            ApprovalStatus::Approved => {
                match self
                    .approvals
                    .consume(&record.id, digest)
                    .await
                    .map_err(unavailable)?
                {
                    ConsumeOutcome::Consumed(used) => {
                        self.waited(&used, WaitOutcome::Approved);
                        Ok(Approved {
                            id: used.id.clone(),
                            policy: used.policy.clone(),
                            approvers: used
                                .votes
                                .iter()
                                .map(|v| (v.approver.clone(), v.factor.as_str()))
                                .collect(),
                        })
                    }
                    // Decided otherwise between the read and the use: another request with the
                    // same digest (on this replica or another) used it first, or its time ran
                    // out. Told as it now is, never as pending: the approval it names is spent.
                    ConsumeOutcome::NotApproved(now) => Err(self.not_approved(ApprovalRecord {
                        status: now,
                        ..record
                    })),
                    // Gone from the store since it was read: fail closed, as it is.
                    ConsumeOutcome::Unknown => Err(self.not_approved(record)),
                    ConsumeOutcome::DigestMismatch => Err(Hold::Unavailable {
                        error: format!("approval {} is for another action", record.id),
                    }),
                }
            }
            ApprovalStatus::Pending => Err(self.pending(&record, needed)),
            _ => Err(self.not_approved(record)),
        }
    }

    /// The refusal of a request whose approval `record` is denied, expired, used or withdrawn
    /// (pending or approved: as [`Gate::settle`] says).
    fn not_approved(&self, record: ApprovalRecord) -> Hold {
        match record.status {
            ApprovalStatus::Denied => {
                self.waited(&record, WaitOutcome::Denied);
                Hold::ApprovalDenied {
                    id: record.id.clone(),
                    by: record
                        .votes
                        .iter()
                        .rev()
                        .find(|v| v.decision == crate::state::approvals::VoteDecision::Deny)
                        .map(|v| v.approver.clone())
                        .unwrap_or_default(),
                }
            }
            ApprovalStatus::Expired => {
                self.waited(&record, WaitOutcome::Expired);
                Hold::ApprovalExpired { id: record.id }
            }
            // Used by another request with the same digest (counted there).
            ApprovalStatus::Consumed => Hold::ApprovalUsed { id: record.id },
            ApprovalStatus::Withdrawn => withdrawn(record),
            // Not a refusal of its own (the callers handle these before): fail closed.
            ApprovalStatus::Pending | ApprovalStatus::Approved => Hold::Unavailable {
                error: format!(
                    "approval {} could not be used: the approval store no longer holds it as \
                     approved",
                    record.id
                ),
            },
        }
    }

    /// Withdraws approval `id`, `why` (the request it was for no longer exists):
    /// approvers no longer see it, a vote on it is refused, it is never used. What the request
    /// ends with: withdrawn, or how it was decided before (denied, expired…).
    pub async fn withdraw(&self, id: &str, why: &str) -> Hold {
        match self.approvals.withdraw(id, why).await {
            Ok(Some(record)) if record.status == ApprovalStatus::Withdrawn => {
                tracing::info!(approval_id = %id, why, "approval withdrawn: the request it was for no longer exists");
                withdrawn(record)
            }
            // Decided or used meanwhile: the request is gone all the same.
            Ok(_) => Hold::ApprovalWithdrawn {
                id: id.to_owned(),
                why: why.to_owned(),
            },
            Err(e) => {
                // It stays in the store until it expires; it can only ever be used by this
                // request's digest, which is this request's alone (`Waiting::digest`).
                tracing::error!(approval_id = %id, error = %e, "approval store unavailable: the withdrawn approval stays until it expires");
                Hold::ApprovalWithdrawn {
                    id: id.to_owned(),
                    why: why.to_owned(),
                }
            }
        }
    }

    fn waited(&self, record: &ApprovalRecord, outcome: WaitOutcome) {
        self.metrics
            .waited(record, outcome, crate::state::pins::now_ms());
    }

    fn pending(&self, record: &ApprovalRecord, needed: &str) -> Hold {
        Hold::Pending {
            id: record.id.clone(),
            needed: needed.to_owned(),
            link: self
                .console_url
                .as_deref()
                .map(|url| console_link(url, &record.id)),
        }
    }
}

/// A wait in progress: dropped before [`AgentLeaves::ended`], the agent left while its
/// approval was undecided.
struct AgentLeaves<'a> {
    metrics: &'a ApprovalMetrics,
    created_ms: i64,
    waiting: bool,
}

impl AgentLeaves<'_> {
    fn ended(mut self) {
        self.waiting = false;
    }
}

impl Drop for AgentLeaves<'_> {
    fn drop(&mut self) {
        if self.waiting {
            self.metrics
                .left(self.created_ms, crate::state::pins::now_ms());
        }
    }
}

/// The refusal of a request whose approval `record` was withdrawn.
fn withdrawn(record: ApprovalRecord) -> Hold {
    Hold::ApprovalWithdrawn {
        id: record.id,
        why: record
            .withdrawn
            .unwrap_or_else(|| "the request no longer exists".into()),
    }
}

fn unavailable(e: crate::state::StateError) -> Hold {
    tracing::error!(error = %e, "approval store unavailable; the request is refused");
    Hold::Unavailable {
        error: "the approval store cannot be reached".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::sealed::{FactorKey, Sealer};
    use crate::state::Store;
    use crate::state::approvals::{SecondFactor, Vote, VoteDecision};
    use crate::state::sqlite::SqliteStore;

    /// A gate answering at once (`pending`), on a new SQLite store.
    async fn gate() -> (Gate, Store, tempfile::TempDir) {
        gate_with(ApprovalsConfig {
            mode: ApprovalMode::Pending,
            ..ApprovalsConfig::default()
        })
        .await
    }

    /// A gate answering at once that lets an agent have `cap` approvals pending.
    async fn capped_at(cap: u32) -> (Gate, Store, tempfile::TempDir) {
        gate_with(ApprovalsConfig {
            mode: ApprovalMode::Pending,
            max_pending_per_agent: cap,
            ..ApprovalsConfig::default()
        })
        .await
    }

    async fn gate_with(config: ApprovalsConfig) -> (Gate, Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite(
            SqliteStore::open(&dir.path().join("state.db"))
                .await
                .unwrap(),
        );
        let sealer = Sealer::new(vec![FactorKey::from_bytes(&[7; 32])]).unwrap();
        let binding = BindingKey::of(&sealer);
        (
            Gate::new(&config, store.approvals(), None, binding),
            store,
            dir,
        )
    }

    fn needs(policy: &str, group: &str, approvals: u8) -> Decision {
        Decision::NeedsApproval {
            policy: policy.into(),
            approvers: vec![format!("Group::{group:?}")],
            reason: None,
            ttl: None,
            approvals,
        }
    }

    fn waiting() -> Waiting {
        Waiting {
            digest: format!("sha256:{}", "ab".repeat(32)),
            principal: r#"Agent::"ci-bot""#.into(),
            agent: "ci-bot".into(),
            action: "mcp:call_tool".into(),
            resource: r#"Tool::"deploy""#.into(),
            context: serde_json::json!({"arguments": {"env": "prod"}}),
        }
    }

    /// [`waiting`] for `action` under a digest of its own, `n`.
    fn asking(n: u8, action: &str) -> Waiting {
        Waiting {
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            action: action.into(),
            ..waiting()
        }
    }

    /// The id of [`waiting`]'s approval under `policy`, opened and approved by one of `sre`.
    async fn approved(gate: &Gate, store: &Store, policy: &str) -> String {
        let opened = gate
            .open(&needs(policy, "sre", 1), waiting())
            .await
            .unwrap();
        let id = opened.id().to_owned();
        approve(store, &id, "alice").await;
        id
    }

    /// Approval `id` used by an identical request elsewhere (another replica's).
    async fn used_elsewhere(store: &Store, id: &str) {
        assert!(matches!(
            store
                .approvals()
                .consume(id, &waiting().digest)
                .await
                .unwrap(),
            ConsumeOutcome::Consumed(_)
        ));
    }

    async fn approve(store: &Store, id: &str, approver: &str) {
        approve_on(store.approvals().as_ref(), id, approver).await;
    }

    /// `approver`'s vote for approval `id` on `approvals`, recorded.
    async fn approve_on(approvals: &dyn ApprovalRepository, id: &str, approver: &str) {
        let voted = approvals
            .vote(
                id,
                Vote {
                    approver: approver.into(),
                    names: Vec::new(),
                    decision: VoteDecision::Approve,
                    factor: SecondFactor::Totp,
                    source: None,
                    at_ms: crate::state::pins::now_ms(),
                },
            )
            .await
            .unwrap();
        assert!(
            matches!(voted, crate::state::approvals::VoteOutcome::Recorded(_)),
            "{voted:?}"
        );
    }

    #[tokio::test]
    async fn an_agent_past_its_pending_cap_is_refused_and_still_finds_what_it_asked() {
        let (gate, store, _dir) = capped_at(2).await;
        let asking = |n: u8| asking(n, "mcp:call_tool");
        let decision = needs("prod-deploys", "sre", 1);
        let first = gate.open(&decision, asking(1)).await.unwrap();
        gate.open(&decision, asking(2)).await.unwrap();
        let refused = gate.open(&decision, asking(3)).await.unwrap_err();
        assert_eq!(refused.code(), "too_many_pending");
        assert!(
            refused
                .reason()
                .contains("has 2 approvals pending, the most it may have"),
            "{refused}"
        );
        let pending = store
            .approvals()
            .list(crate::state::approvals::ApprovalFilter::Pending)
            .await
            .unwrap();
        assert_eq!(pending.len(), 2);
        // Asking again about what it asked finds it.
        assert_eq!(
            gate.open(&decision, asking(1)).await.unwrap().id(),
            first.id()
        );
    }

    #[tokio::test]
    async fn an_mcp_servers_requests_neither_count_against_nor_meet_the_agents_pending_cap() {
        let (gate, _store, _dir) = capped_at(2).await;
        let decision = needs("prod-deploys", "sre", 1);
        for n in 1..=3 {
            gate.open(&decision, asking(n, "mcp:sample")).await.unwrap();
        }
        // The agent's own requests still have their two.
        gate.open(&decision, asking(4, "mcp:call_tool"))
            .await
            .unwrap();
        gate.open(&decision, asking(5, "mcp:call_tool"))
            .await
            .unwrap();
        let refused = gate
            .open(&decision, asking(6, "mcp:call_tool"))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), "too_many_pending");
    }

    #[tokio::test]
    async fn a_stricter_route_does_not_use_the_approval_given_under_a_laxer_one() {
        let (gate, store, _dir) = gate().await;
        let lax = needs("dev-may-deploy", "dev", 1);
        let strict = needs("sre-two-person", "sre", 2);
        let given = gate.open(&lax, waiting()).await.unwrap();
        approve(&store, given.id(), "dan").await;
        let asked = gate.open(&strict, waiting()).await.unwrap();
        assert_ne!(asked.id(), given.id());
        assert!(asked.is_pending());
        assert!(matches!(
            gate.conclude(asked).await,
            Err(Hold::Pending { .. })
        ));
        // The lax route's own request still goes on with it.
        let again = gate.open(&lax, waiting()).await.unwrap();
        assert_eq!(again.id(), given.id());
        assert_eq!(gate.conclude(again).await.unwrap().id, given.id());
    }

    #[tokio::test]
    async fn a_policy_tightened_while_its_approval_waits_asks_anew() {
        let (gate, store, _dir) = gate().await;
        let before = gate
            .open(&needs("prod-deploys", "dev", 1), waiting())
            .await
            .unwrap();
        let tightened = gate
            .open(&needs("prod-deploys", "sre", 2), waiting())
            .await
            .unwrap();
        assert_ne!(tightened.id(), before.id());
        let record = store
            .approvals()
            .get(tightened.id())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.approver_groups, [r#"Group::"sre""#]);
        assert_eq!(record.required, 2);
        // The old terms' approval, given now, does not release the tightened request.
        approve(&store, before.id(), "dan").await;
        let retried = gate
            .open(&needs("prod-deploys", "sre", 2), waiting())
            .await
            .unwrap();
        assert_eq!(retried.id(), tightened.id());
        assert!(matches!(
            gate.conclude(retried).await,
            Err(Hold::Pending { .. })
        ));
    }

    #[tokio::test]
    async fn a_request_that_cannot_be_sent_again_waits_for_its_decision_whatever_the_mode() {
        let (gate, store, _dir) = gate().await;
        let opened = gate
            .open(&needs("sampling", "sre", 1), waiting())
            .await
            .unwrap();
        let id = opened.id().to_owned();
        let approver = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            approve(&store, &id, "alice").await;
        };
        let (approved, ()) = tokio::join!(gate.decided(opened), approver);
        assert_eq!(
            approved.unwrap().id,
            id,
            "approved in pending mode, after a wait"
        );
        // Undecided until its time is up: expired, not "pending".
        let short = Decision::NeedsApproval {
            policy: "sampling".into(),
            approvers: vec![r#"Group::"sre""#.into()],
            reason: None,
            ttl: Some(Duration::from_millis(300)),
            approvals: 1,
        };
        let opened = gate.open(&short, waiting()).await.unwrap();
        assert!(matches!(
            gate.decided(opened).await,
            Err(Hold::ApprovalExpired { .. })
        ));
    }

    #[tokio::test]
    async fn the_loser_of_a_race_for_one_approval_is_told_it_was_used_not_that_it_expired() {
        let (gate, store, _dir) = gate().await;
        let id = approved(&gate, &store, "deploys").await;
        // Another replica's identical request uses it first.
        used_elsewhere(&store, &id).await;
        let used = store.approvals().get(&id).await.unwrap().unwrap();
        assert_eq!(used.status, ApprovalStatus::Consumed);
        let hold = gate
            .settle(used, &waiting().digest, "needs approval")
            .await
            .unwrap_err();
        assert_eq!(hold.code(), "approval_consumed");
        let told = hold.to_string();
        assert!(
            told.contains("already used") && !told.contains("expired"),
            "{told}"
        );
    }

    #[tokio::test]
    async fn a_request_that_read_its_approval_approved_and_lost_the_race_to_use_it_is_told_it_was_used()
     {
        let (gate, store, _dir) = gate().await;
        let id = approved(&gate, &store, "deploys").await;
        // This request reads it approved; before it uses it, an identical request (here, on
        // another replica) does.
        let read = store.approvals().get(&id).await.unwrap().unwrap();
        assert_eq!(read.status, ApprovalStatus::Approved);
        used_elsewhere(&store, &id).await;
        let hold = gate
            .settle(read, &waiting().digest, "needs approval")
            .await
            .unwrap_err();
        assert_eq!(
            hold.code(),
            "approval_consumed",
            "not told the used approval is pending: {hold}"
        );
        assert!(hold.to_string().contains(&id), "{hold}");
    }

    /// An approval store whose clock moves only when the test moves it, as a wall clock that
    /// NTP holds back (slewed, or stepped back) while the gate's timers run on: what it says of
    /// an approval's end is judged by its clock alone, as both backends judge it by theirs.
    struct HeldClock {
        now_ms: std::sync::atomic::AtomicI64,
        records: std::sync::Mutex<Vec<ApprovalRecord>>,
        changes: tokio::sync::broadcast::Sender<crate::state::approvals::Change>,
    }

    impl HeldClock {
        fn new() -> Arc<HeldClock> {
            Arc::new(HeldClock {
                now_ms: crate::state::pins::now_ms().into(),
                records: std::sync::Mutex::new(Vec::new()),
                changes: tokio::sync::broadcast::channel(16).0,
            })
        }

        /// Sets its clock to `now_ms`.
        fn set(&self, now_ms: i64) {
            self.now_ms
                .store(now_ms, std::sync::atomic::Ordering::SeqCst);
        }

        /// Record `id` as its clock now has it.
        fn record(&self, id: &str) -> Option<ApprovalRecord> {
            let now = ApprovalRepository::now_ms(self);
            let records = self.records.lock().unwrap();
            let mut record = records.iter().find(|r| r.id == id)?.clone();
            if matches!(
                record.status,
                ApprovalStatus::Pending | ApprovalStatus::Approved
            ) && record.expires_ms <= now
            {
                record.status = ApprovalStatus::Expired;
            }
            Some(record)
        }

        fn update(&self, id: &str, change: impl FnOnce(&mut ApprovalRecord)) {
            let mut records = self.records.lock().unwrap();
            if let Some(record) = records.iter_mut().find(|r| r.id == id) {
                change(record);
            }
            let _ = self.changes.send(Arc::from(id));
        }
    }

    impl ApprovalRepository for HeldClock {
        fn create_or_find(
            &self,
            new: NewApproval,
        ) -> futures_util::future::BoxFuture<'_, Result<(ApprovalRecord, bool), StateError>>
        {
            let now = ApprovalRepository::now_ms(self);
            let record = ApprovalRecord {
                id: crate::state::approvals::new_id(),
                digest: new.digest,
                principal: new.principal,
                action: new.action,
                resource: new.resource,
                context: new.context,
                policy: new.policy,
                reason: new.reason,
                approver_groups: new.approver_groups,
                required: new.required,
                created_ms: now,
                expires_ms: crate::state::approvals::expiry(now, new.ttl),
                status: ApprovalStatus::Pending,
                decided_ms: None,
                withdrawn: None,
                votes: Vec::new(),
            };
            self.records.lock().unwrap().push(record.clone());
            Box::pin(async move { Ok((record, true)) })
        }

        fn get<'a>(
            &'a self,
            id: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<Option<ApprovalRecord>, StateError>>
        {
            Box::pin(async move { Ok(self.record(id)) })
        }

        fn list(
            &self,
            _: crate::state::approvals::ApprovalFilter,
        ) -> futures_util::future::BoxFuture<'_, Result<Vec<ApprovalRecord>, StateError>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn vote<'a>(
            &'a self,
            id: &'a str,
            vote: Vote,
        ) -> futures_util::future::BoxFuture<
            'a,
            Result<crate::state::approvals::VoteOutcome, StateError>,
        > {
            use crate::state::approvals::VoteOutcome;
            Box::pin(async move {
                let Some(record) = self.record(id) else {
                    return Ok(VoteOutcome::Unknown);
                };
                if record.status != ApprovalStatus::Pending {
                    return Ok(VoteOutcome::NotPending(Box::new(record)));
                }
                let now = ApprovalRepository::now_ms(self);
                self.update(id, |r| {
                    r.votes.push(vote);
                    r.status = crate::state::approvals::decide(&r.votes, r.required);
                    r.decided_ms = (r.status != ApprovalStatus::Pending).then_some(now);
                });
                Ok(VoteOutcome::Recorded(Box::new(self.record(id).unwrap())))
            })
        }

        fn consume<'a>(
            &'a self,
            id: &'a str,
            digest: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<ConsumeOutcome, StateError>> {
            Box::pin(async move {
                let Some(record) = self.record(id) else {
                    return Ok(ConsumeOutcome::Unknown);
                };
                if record.digest != digest {
                    return Ok(ConsumeOutcome::DigestMismatch);
                }
                if record.status != ApprovalStatus::Approved {
                    return Ok(ConsumeOutcome::NotApproved(record.status));
                }
                self.update(id, |r| r.status = ApprovalStatus::Consumed);
                Ok(ConsumeOutcome::Consumed(Box::new(self.record(id).unwrap())))
            })
        }

        fn withdraw<'a>(
            &'a self,
            id: &'a str,
            _: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<Option<ApprovalRecord>, StateError>>
        {
            Box::pin(async move { Ok(self.record(id)) })
        }

        fn expire_due(
            &self,
        ) -> futures_util::future::BoxFuture<'_, Result<Vec<String>, StateError>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn watch(&self, id: &str) -> crate::state::approvals::ApprovalWatch {
            crate::state::approvals::ApprovalWatch::new(id, self.changes.subscribe())
        }

        fn now_ms(&self) -> i64 {
            self.now_ms.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// A gate in `mode` on `store`, and [`waiting`]'s approval opened on it for 200 ms.
    async fn opened_on(store: &Arc<HeldClock>, mode: ApprovalMode) -> (Gate, Opened) {
        let sealer = Sealer::new(vec![FactorKey::from_bytes(&[7; 32])]).unwrap();
        let config = ApprovalsConfig {
            mode,
            wait_timeout: Duration::from_secs(30),
            ..ApprovalsConfig::default()
        };
        let gate = Gate::new(&config, store.clone(), None, BindingKey::of(&sealer));
        let short = Decision::NeedsApproval {
            policy: "sampling".into(),
            approvers: vec![r#"Group::"sre""#.into()],
            reason: None,
            ttl: Some(Duration::from_millis(200)),
            approvals: 1,
        };
        let opened = gate.open(&short, waiting()).await.unwrap();
        (gate, opened)
    }

    #[tokio::test]
    async fn a_wait_whose_timer_strikes_before_the_stores_end_goes_on_and_lets_a_late_vote_in() {
        let store = HeldClock::new();
        let (gate, opened) = opened_on(&store, ApprovalMode::Pending).await;
        let id = opened.id().to_owned();
        // The gate's timer strikes at 200 ms; the store's clock has not moved: still pending,
        // and an approver's vote at 400 ms is recorded, approving it.
        let approver = async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            approve_on(store.as_ref(), &id, "alice").await;
        };
        let (decided, ()) = tokio::join!(gate.decided(opened), approver);
        assert_eq!(
            decided
                .expect("not told it expired while the store held it pending")
                .id,
            id
        );
    }

    #[tokio::test]
    async fn a_wait_ends_expired_when_the_stores_clock_reaches_the_end_never_before() {
        for mode in [ApprovalMode::Pending, ApprovalMode::Wait] {
            let store = HeldClock::new();
            let (gate, opened) = opened_on(&store, mode).await;
            let end = store.record(opened.id()).unwrap().expires_ms;
            let ended = std::sync::atomic::AtomicBool::new(false);
            let clock = async {
                // Well past the gate's timer (200 ms), the store's clock reaches the end.
                tokio::time::sleep(Duration::from_millis(500)).await;
                ended.store(true, std::sync::atomic::Ordering::SeqCst);
                store.set(end);
            };
            let waited = async {
                // `wait` mode waits up to wait_timeout (30 s); a request that cannot be sent
                // again, until the approval's end.
                let hold = match mode {
                    ApprovalMode::Wait => gate.conclude(opened).await,
                    ApprovalMode::Pending => gate.decided(opened).await,
                }
                .unwrap_err();
                (hold, ended.load(std::sync::atomic::Ordering::SeqCst))
            };
            let ((hold, after_the_end), ()) =
                tokio::time::timeout(Duration::from_secs(10), async {
                    tokio::join!(waited, clock)
                })
                .await
                .expect("the wait ends once the store's clock reaches the end");
            assert!(
                matches!(hold, Hold::ApprovalExpired { .. }),
                "{mode:?}: told {hold:?}"
            );
            assert!(
                after_the_end,
                "{mode:?}: told it expired before the store's end"
            );
        }
    }

    /// A wall clock stepped back an hour (an NTP step, a VM resumed) as the wait begins or while
    /// it runs holds the store's end an hour off; the request still ends, expired, within the
    /// approval's time-to-live (200 ms) and [`END_SLACK`] by the monotonic clock, and not
    /// before the slack has let the store's clock catch up. (Real time: both cases at once.)
    #[tokio::test]
    async fn a_wait_ends_within_the_ttl_and_slack_though_the_stores_clock_is_stepped_back() {
        const HOUR_MS: i64 = 3_600_000;
        let stepped_after = |step_after: Duration| async move {
            let store = HeldClock::new();
            let (gate, opened) = opened_on(&store, ApprovalMode::Pending).await;
            let id = opened.id().to_owned();
            let created_ms = store.record(&id).unwrap().created_ms;
            let began = tokio::time::Instant::now();
            let step = async {
                tokio::time::sleep(step_after).await;
                store.set(created_ms + step_after.as_millis() as i64 - HOUR_MS);
            };
            let (hold, ()) = tokio::time::timeout(END_SLACK * 6, async {
                tokio::join!(gate.decided(opened), step)
            })
            .await
            .unwrap_or_else(|_| {
                panic!("step after {step_after:?}: still waiting for the store's end, an hour off")
            });
            let waited = began.elapsed();
            assert!(
                matches!(hold, Err(Hold::ApprovalExpired { .. })),
                "step after {step_after:?}: told {hold:?}"
            );
            // (A second of margin for a loaded machine; the store's end is an hour away.)
            assert!(
                waited <= Duration::from_millis(200) + END_SLACK + Duration::from_secs(1),
                "step after {step_after:?}: waited {waited:?}"
            );
            assert!(
                waited >= END_SLACK,
                "step after {step_after:?}: ended after {waited:?}, before the slack"
            );
            assert_eq!(
                store.record(&id).unwrap().status,
                ApprovalStatus::Pending,
                "the store's own clock has not reached the end"
            );
        };
        tokio::join!(
            stepped_after(Duration::ZERO),
            stepped_after(Duration::from_millis(100))
        );
    }

    #[test]
    fn webhooks_are_given_a_tool_calls_arguments_or_what_an_llm_call_asks() {
        let tool = serde_json::json!({"arguments": {"env": "prod"}, "findings": []});
        assert_eq!(
            notified_arguments(&tool),
            Some(serde_json::json!({"env": "prod"}))
        );
        let asked = serde_json::json!({"last_user_message": "wire it", "truncated": false});
        let llm = serde_json::json!({"stream": false, "prompt": asked, "findings": []});
        assert_eq!(notified_arguments(&llm), Some(asked));
        // An LLM call whose content may not be shown has nothing to give.
        assert_eq!(
            notified_arguments(&serde_json::json!({"stream": false})),
            None
        );
    }
}
