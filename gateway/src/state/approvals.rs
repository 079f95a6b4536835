//! The approval repository: requests for a human's approval of one exact action, the votes
//! approvers cast on them, and the atomic steps between their states. Who may vote, with which
//! second factor, is decided by the approval gate (`approval/`); this is what is stored and the
//! rules every backend keeps: one vote per approver, a deny ends it, the required count of
//! approvals approves it, an approval is consumed once, for its own digest, before it expires.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::error::StateError;

/// Where an approval goes: pending until decided, then approved or denied; approved until
/// consumed; pending or approved until it expires, or until it is withdrawn (the request it
/// was for no longer exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    /// Waiting for votes.
    Pending,
    /// Approved by the required number of approvers, not yet used.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Its time ran out before it was decided or used.
    Expired,
    /// Approved and used by the request it was for (single use).
    Consumed,
    /// The request it was for no longer exists (an MCP server's request whose session ended,
    /// or which the server cancelled): it can be neither decided nor used. Stored as
    /// `expired` with the reason in `withdrawn`, so that a replica of an earlier version reads
    /// it as expired.
    Withdrawn,
}

impl ApprovalStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Consumed => "consumed",
            ApprovalStatus::Withdrawn => "withdrawn",
        }
    }

    /// The status from its stored text.
    pub fn from_stored(text: &str) -> Option<ApprovalStatus> {
        Some(match text {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "expired" => ApprovalStatus::Expired,
            "consumed" => ApprovalStatus::Consumed,
            "withdrawn" => ApprovalStatus::Withdrawn,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an approver said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VoteDecision {
    Approve,
    Deny,
}

impl VoteDecision {
    /// The decision as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            VoteDecision::Approve => "approve",
            VoteDecision::Deny => "deny",
        }
    }

    /// The decision from its stored text.
    pub fn from_stored(text: &str) -> Option<VoteDecision> {
        match text {
            "approve" => Some(VoteDecision::Approve),
            "deny" => Some(VoteDecision::Deny),
            _ => None,
        }
    }
}

/// The second factor an approver confirmed a vote with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecondFactor {
    /// A time-based one-time password (RFC 6238).
    Totp,
    /// A WebAuthn passkey.
    Webauthn,
}

impl SecondFactor {
    /// The factor as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SecondFactor::Totp => "totp",
            SecondFactor::Webauthn => "webauthn",
        }
    }

    /// The factor from its stored text.
    pub fn from_stored(text: &str) -> Option<SecondFactor> {
        match text {
            "totp" => Some(SecondFactor::Totp),
            "webauthn" => Some(SecondFactor::Webauthn),
            _ => None,
        }
    }
}

/// The actions of an MCP server's requests to the agent: not the agent's doing, so neither
/// counted against nor bounded by what it may have pending (`NewApproval::pending_cap`; their
/// own bounds are the MCP router's).
pub const UNCOUNTED_ACTIONS: [&str; 3] = ["mcp:sample", "mcp:elicit", "mcp:list_roots"];

/// A request for approval, as the hold stage asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewApproval {
    /// `sha256:<64 hex digits>` over the exact action (principal, action, resource, arguments).
    pub digest: String,
    /// The principal that asked (`Agent::"ci-bot"`).
    pub principal: String,
    /// The Cedar action (`Action::"mcp:call_tool"`).
    pub action: String,
    /// The resource (`Tool::"github__create_issue"`).
    pub resource: String,
    /// What the approver is shown of the action's context and arguments, as the caller gives it.
    pub context: serde_json::Value,
    /// The id of the policy that asked for approval.
    pub policy: String,
    /// The policy's reason, shown to approvers and the agent.
    pub reason: String,
    /// The groups whose members may approve (empty: whoever policy allows to decide).
    pub approver_groups: Vec<String>,
    /// Approvals needed (two for a two-person rule); at least one.
    pub required: u32,
    /// How long the request, and the approval once given, stay valid.
    pub ttl: Duration,
    /// The most approvals `principal` may have pending (not past their time): a new request
    /// beyond it is refused ([`StateError::TooManyPending`]), one found for the same action
    /// is not. `None`: no bound.
    pub pending_cap: Option<u32>,
}

/// One approver's vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The approver's subject (their identity at the SSO provider, or their name in
    /// `approvals.operators` on the command line).
    pub approver: String,
    /// The other names the approver goes by (the console's `sub`, preferred username, e-mail
    /// address): one person votes once, under whichever of their names.
    pub names: Vec<String>,
    pub decision: VoteDecision,
    /// The second factor the vote was confirmed with.
    pub factor: SecondFactor,
    /// Where the vote came from, when known.
    pub source: Option<IpAddr>,
    /// When it was cast, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

impl Vote {
    /// Every name of the voter: their subject, then their other names.
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.approver.as_str()).chain(self.names.iter().map(String::as_str))
    }

    /// Whether `other` was cast by the same person: they share a name (e-mail addresses
    /// compared without regard to case).
    pub fn by_same_person(&self, other: &Vote) -> bool {
        self.all_names()
            .any(|mine| other.all_names().any(|theirs| same_name(mine, theirs)))
    }
}

/// Whether `a` and `b` name the same person: equal, or e-mail addresses equal without regard
/// to case.
pub fn same_name(a: &str, b: &str) -> bool {
    a == b || (a.contains('@') && a.eq_ignore_ascii_case(b))
}

/// An approval request as stored, with its votes in the order they were cast.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRecord {
    /// Random and unguessable (`apr_` and 32 hex digits): it is in the console's URLs and
    /// told to the agent.
    pub id: String,
    pub digest: String,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub context: serde_json::Value,
    pub policy: String,
    pub reason: String,
    pub approver_groups: Vec<String>,
    pub required: u32,
    /// When it was asked for, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_ms: i64,
    pub status: ApprovalStatus,
    /// When it was approved, denied, expired, consumed or withdrawn.
    pub decided_ms: Option<i64>,
    /// Why it was withdrawn (status [`ApprovalStatus::Withdrawn`]).
    pub withdrawn: Option<String>,
    pub votes: Vec<Vote>,
}

impl ApprovalRecord {
    /// Whether this approval asks at least what `new` asks, so that it may stand for it: the
    /// same policy, the same approvers (in any order), and at least as many approvals.
    pub fn covers(&self, new: &NewApproval) -> bool {
        self.policy == new.policy
            && as_set(&self.approver_groups) == as_set(&new.approver_groups)
            && self.required >= new.required.max(1)
    }
}

fn as_set(list: &[String]) -> BTreeSet<&str> {
    list.iter().map(String::as_str).collect()
}

/// Which approvals to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalFilter {
    /// Pending and not yet past their time, oldest first.
    Pending,
    /// The most recent ones, whatever their status, newest first.
    Recent { limit: u32 },
}

/// What [`ApprovalRepository::vote`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum VoteOutcome {
    /// The vote is recorded; the approval as it is afterwards (pending, approved or denied).
    Recorded(Box<ApprovalRecord>),
    /// This approver has voted on it already: nothing changed.
    AlreadyVoted(Box<ApprovalRecord>),
    /// It is no longer pending (decided, consumed, or expired now or before): nothing changed.
    NotPending(Box<ApprovalRecord>),
    /// No approval has this id.
    Unknown,
}

/// What [`ApprovalRepository::consume`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsumeOutcome {
    /// It was approved for this digest and is now used up.
    Consumed(Box<ApprovalRecord>),
    /// It is for another action: nothing changed.
    DigestMismatch,
    /// It is not approved (pending, denied, expired or consumed already): nothing changed.
    NotApproved(ApprovalStatus),
    /// No approval has this id.
    Unknown,
}

/// Approval requests and votes in the state store. Every step is one transaction, and every
/// change is announced to watchers in every process sharing the store ([`ApprovalWatch`]).
pub trait ApprovalRepository: Send + Sync {
    /// A pending or approved request for `new.digest` that asks at least what `new` asks
    /// ([`ApprovalRecord::covers`]; an approved one first, then the oldest), or a new pending
    /// one: an agent that retries the same action finds its request, but one asked under
    /// laxer rules (another route's policy, or the policy before it was tightened) does not
    /// stand for it. A request past its time is expired first. A new one past
    /// `new.pending_cap` is refused ([`StateError::TooManyPending`]). Returns the request and
    /// whether this call created it.
    fn create_or_find(
        &self,
        new: NewApproval,
    ) -> BoxFuture<'_, Result<(ApprovalRecord, bool), StateError>>;

    /// The request with `id`.
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<ApprovalRecord>, StateError>>;

    /// The requests `filter` selects.
    fn list(
        &self,
        filter: ApprovalFilter,
    ) -> BoxFuture<'_, Result<Vec<ApprovalRecord>, StateError>>;

    /// Records `approver`'s vote on `id`, if it is pending and not past its time, and decides
    /// it: denied on a deny, approved once `required` approvers approved.
    fn vote<'a>(
        &'a self,
        id: &'a str,
        vote: Vote,
    ) -> BoxFuture<'a, Result<VoteOutcome, StateError>>;

    /// Uses the approval `id` up for the action with `digest`: only once, only if approved,
    /// only before it expires.
    fn consume<'a>(
        &'a self,
        id: &'a str,
        digest: &'a str,
    ) -> BoxFuture<'a, Result<ConsumeOutcome, StateError>>;

    /// Withdraws the pending or approved request `id`, `why` (the request it was for no longer
    /// exists): it can be neither decided nor used from now on. The record as it then is
    /// (withdrawn, or decided before: unchanged); `None` when no approval has this id.
    fn withdraw<'a>(
        &'a self,
        id: &'a str,
        why: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApprovalRecord>, StateError>>;

    /// Marks every pending or approved request past its time as expired; returns their ids.
    fn expire_due(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>>;

    /// A watch on the changes of approval `id`. Take it before reading the approval, then wait
    /// on it: a change between the read and the wait is not missed.
    fn watch(&self, id: &str) -> ApprovalWatch;

    /// The time now by the clock this store judges an approval's end with (`expires_ms`), in
    /// milliseconds since the Unix epoch: this process's wall clock on both backends.
    fn now_ms(&self) -> i64 {
        super::pins::now_ms()
    }
}

/// What a change announcement carries: the id of the approval that changed, or [`ANY`] when
/// the store cannot say which (another process wrote, or notifications were interrupted).
pub(crate) type Change = Arc<str>;

/// The announcement that any approval may have changed.
pub(crate) const ANY: &str = "*";

/// How many announcements a slow watcher may fall behind before it is told "something changed".
pub(crate) const CHANGES_CAPACITY: usize = 256;

/// A wait for changes of one approval (from any process or replica sharing the store).
#[derive(Debug)]
pub struct ApprovalWatch {
    id: Arc<str>,
    changes: broadcast::Receiver<Change>,
}

impl ApprovalWatch {
    pub(crate) fn new(id: &str, changes: broadcast::Receiver<Change>) -> ApprovalWatch {
        ApprovalWatch {
            id: Arc::from(id),
            changes,
        }
    }

    /// Returns when the approval may have changed: read it again then. An error when the
    /// store has closed.
    pub async fn changed(&mut self) -> Result<(), StateError> {
        loop {
            match self.changes.recv().await {
                Ok(id) if *id == *self.id || &*id == ANY => return Ok(()),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(StateError::Closed {
                        store: "(approval changes)".into(),
                    });
                }
            }
        }
    }
}

/// A new approval id: `apr_` and 128 random bits in hex.
pub(crate) fn new_id() -> String {
    format!("apr_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// The status `votes` decide for an approval needing `required` approvals.
pub(crate) fn decide(votes: &[Vote], required: u32) -> ApprovalStatus {
    if votes.iter().any(|v| v.decision == VoteDecision::Deny) {
        return ApprovalStatus::Denied;
    }
    let approvals = votes
        .iter()
        .filter(|v| v.decision == VoteDecision::Approve)
        .count();
    if approvals >= usize::try_from(required.max(1)).unwrap_or(usize::MAX) {
        ApprovalStatus::Approved
    } else {
        ApprovalStatus::Pending
    }
}

/// The time `ttl` after `now_ms`.
pub(crate) fn expiry(now_ms: i64, ttl: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// An approval's columns as both backends store them, before they are checked.
pub(crate) struct ApprovalRow {
    pub id: String,
    pub digest: String,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub context_json: String,
    pub policy: String,
    pub reason: String,
    pub groups_json: String,
    pub required: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub status: String,
    pub decided_ms: Option<i64>,
    pub withdrawn: Option<String>,
}

/// The columns of [`ApprovalRow`], in its order.
pub(crate) const APPROVAL_COLUMNS: &str = "id, digest, principal, action, resource, \
     context_json, policy, reason, groups_json, required, created_ms, expires_ms, status, \
     decided_ms, withdrawn";

/// How both backends withdraw approval 1 for reason 2 at time 3 (parameters prefixed with
/// `placeholder`: `?` or `$`), unless it is decided, used or past its time.
pub(crate) fn withdraw_sql(placeholder: char) -> String {
    let p = placeholder;
    format!(
        "UPDATE approvals SET status = 'expired', decided_ms = {p}3, withdrawn = {p}2 \
         WHERE id = {p}1 AND status IN ('pending', 'approved') AND expires_ms > {p}3"
    )
}

/// A vote's columns as both backends store them.
pub(crate) struct VoteRow {
    pub approver: String,
    pub decision: String,
    pub factor: String,
    pub source: Option<String>,
    pub at_ms: i64,
    pub names_json: String,
}

/// A vote's other names as stored.
pub(crate) fn names_json(names: &[String]) -> String {
    serde_json::Value::from(names).to_string()
}

/// The columns of [`VoteRow`], in its order.
pub(crate) const VOTE_COLUMNS: &str = "approver, decision, factor, source, at_ms, names_json";

impl ApprovalRow {
    /// The record, as of `now_ms`: a pending or approved request past its time reads as
    /// expired even before [`ApprovalRepository::expire_due`] writes it. `Err` names what is
    /// unreadable.
    pub(crate) fn into_record(
        self,
        votes: Vec<VoteRow>,
        now_ms: i64,
    ) -> Result<ApprovalRecord, String> {
        let what = |field: &str| format!("{field} of approval {}", self.id);
        let context = serde_json::from_str(&self.context_json).map_err(|_| what("context"))?;
        let approver_groups =
            serde_json::from_str(&self.groups_json).map_err(|_| what("approver groups"))?;
        let required = u32::try_from(self.required).map_err(|_| what("required approvals"))?;
        let mut status = ApprovalStatus::from_stored(&self.status).ok_or_else(|| what("status"))?;
        if matches!(status, ApprovalStatus::Pending | ApprovalStatus::Approved)
            && self.expires_ms <= now_ms
        {
            status = ApprovalStatus::Expired;
        }
        if status == ApprovalStatus::Expired && self.withdrawn.is_some() {
            status = ApprovalStatus::Withdrawn;
        }
        let votes = votes
            .into_iter()
            .map(|v| {
                Some(Vote {
                    decision: VoteDecision::from_stored(&v.decision)?,
                    factor: SecondFactor::from_stored(&v.factor)?,
                    source: match v.source {
                        Some(s) => Some(s.parse().ok()?),
                        None => None,
                    },
                    names: serde_json::from_str(&v.names_json).ok()?,
                    approver: v.approver,
                    at_ms: v.at_ms,
                })
            })
            .collect::<Option<Vec<Vote>>>()
            .ok_or_else(|| what("votes"))?;
        Ok(ApprovalRecord {
            id: self.id,
            digest: self.digest,
            principal: self.principal,
            action: self.action,
            resource: self.resource,
            context,
            policy: self.policy,
            reason: self.reason,
            approver_groups,
            required,
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
            status,
            decided_ms: self.decided_ms,
            withdrawn: self.withdrawn,
            votes,
        })
    }
}

impl NewApproval {
    /// Refuses this request when its principal has `pending` approvals pending already, as
    /// many as `cap` allows or more.
    pub(crate) fn within_cap(&self, pending: i64, cap: u32) -> Result<(), StateError> {
        let pending = u64::try_from(pending).unwrap_or(0);
        if pending >= u64::from(cap) {
            return Err(StateError::TooManyPending {
                principal: self.principal.clone(),
                pending,
                cap,
            });
        }
        Ok(())
    }

    /// The JSON texts of the context and the approver groups, as stored.
    pub(crate) fn json_columns(&self) -> (String, String) {
        (
            self.context.to_string(),
            serde_json::to_string(&self.approver_groups).unwrap_or_else(|_| "[]".into()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_stored_text() {
        for status in [
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            ApprovalStatus::Denied,
            ApprovalStatus::Expired,
            ApprovalStatus::Consumed,
            ApprovalStatus::Withdrawn,
        ] {
            assert_eq!(ApprovalStatus::from_stored(status.as_str()), Some(status));
        }
        assert_eq!(ApprovalStatus::from_stored("maybe"), None);
    }

    #[test]
    fn ids_are_random_and_long_enough_not_to_be_guessed() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 32);
        assert!(a.starts_with("apr_"));
    }
}
