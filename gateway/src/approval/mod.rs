//! Hold: what a decision lets through. An allow goes on; a deny stops here; a decision that
//! needs a human's approval goes to the approval gate (`gate`), which lets it go on once
//! approved, has it wait, or tells the agent how to retry; without a gate it stops here.
//!
//! The gate's building blocks live beside it: `config` (the `approvals:` section), `totp`
//! (the second factor), `attempts` (the wrong-code brake every replica shares), `sealed`
//! (second-factor secrets encrypted for the state store), `notify` (webhooks telling
//! approvers that an action waits), `prompt` (what an LLM call that waits asks, masked),
//! `rounded` (numbers approvers may read rounded) and `undeclared` (a REST body's fields no
//! policy judged).

pub mod attempts;
pub mod config;
pub mod gate;
pub mod metrics;
pub mod notify;
pub mod operator;
pub mod passkey;
pub mod prompt;
pub mod rounded;
pub mod sealed;
pub mod totp;
pub mod undeclared;

use crate::decision::Decision;
use crate::state::approvals::ApprovalStatus;

/// Why a decided request does not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hold {
    /// Policy denied it.
    #[error("denied by policy: {}", reasons.join("; "))]
    Denied {
        /// The reasons the agent is shown (`@reason` of the determining forbids).
        reasons: Vec<String>,
    },
    /// A permit asks for a human's approval, and this gateway has no approval gate.
    #[error("{needed}, and approvals are not enabled on this gateway")]
    ApprovalUnavailable {
        /// Who must approve, under which policy and why.
        needed: String,
    },
    /// The approval this action needs is pending: the agent sends the same request again once
    /// it is approved.
    #[error(
        "{needed}. Approval {id} is pending{}; send the same request again once it is approved",
        link.as_deref().map(|l| format!(": an approver decides at {l}")).unwrap_or_default()
    )]
    Pending {
        /// The approval's id.
        id: String,
        /// Who must approve, under which policy and why.
        needed: String,
        /// The console's page for it, when a console URL is configured.
        link: Option<String>,
    },
    /// An approver denied it.
    #[error("approval {id} was denied by {by}")]
    ApprovalDenied {
        /// The approval's id.
        id: String,
        /// Who denied it.
        by: String,
    },
    /// Its approval expired before the request came back.
    #[error(
        "approval {id} expired before it was used; the next identical request asks for a new one"
    )]
    ApprovalExpired {
        /// The approval's id.
        id: String,
    },
    /// Its approval was used by another request with the same digest first (an approval
    /// lets one request through; replicas racing for it: one wins).
    #[error(
        "approval {id} was already used by another identical request (an approval lets one request through); the next identical request asks for a new one"
    )]
    ApprovalUsed {
        /// The approval's id.
        id: String,
    },
    /// The request no longer exists (its MCP session ended, its server cancelled it): its
    /// approval was withdrawn, and can be neither decided nor used.
    #[error("approval {id} was withdrawn: {why}")]
    ApprovalWithdrawn {
        /// The approval's id.
        id: String,
        /// Why (`its MCP session ended`).
        why: String,
    },
    /// The agent has as many approvals pending as `approvals.max_pending_per_agent` allows: no
    /// new one is opened, nor approvers told, until some are decided or expire.
    #[error(
        "{needed}, but this agent has {pending} approvals pending, the most it may have \
         (approvals.max_pending_per_agent: {cap}); send the request again once approvers have \
         decided some"
    )]
    TooManyPending {
        /// Who must approve, under which policy and why.
        needed: String,
        /// The approvals it has pending.
        pending: u64,
        /// The most it may have.
        cap: u32,
    },
    /// Approved, then judged again on what its budgets had left once it waited, it needs an
    /// approval under another policy than the one it was given under (an approval stands for
    /// its own policy only): not sent; the same request sent again asks for that one.
    #[error(
        "approval {id} was given under policy {approved}; judged again once approved, on what \
         its budgets have left now, the request needs another: {needed}. It was not sent: send \
         the same request again to ask for that approval"
    )]
    AnotherApprovalNeeded {
        /// The approval the request waited for, and used.
        id: String,
        /// The policy that approval was given under.
        approved: String,
        /// Who must approve now, under which policy and why.
        needed: String,
    },
    /// The approval store cannot answer: refused (fail closed).
    #[error("{error}, so actions that need approval are refused")]
    Unavailable {
        /// What failed (no secret, no store address).
        error: String,
    },
}

impl Hold {
    /// The stable code of this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Hold::Denied { .. } => "policy_denied",
            Hold::ApprovalUnavailable { .. } => "approval_required",
            Hold::Pending { .. } => "approval_pending",
            Hold::ApprovalDenied { .. } => "approval_denied",
            Hold::ApprovalExpired { .. } => "approval_expired",
            Hold::ApprovalUsed { .. } => "approval_consumed",
            Hold::ApprovalWithdrawn { .. } => "approval_withdrawn",
            Hold::AnotherApprovalNeeded { .. } => "another_approval_required",
            Hold::TooManyPending { .. } => "too_many_pending",
            Hold::Unavailable { .. } => "approval_unavailable",
        }
    }

    /// The approval this refusal is about, and where it stands: the one the request waits
    /// for, or the one it was refused on (denied, expired, used by another request first,
    /// withdrawn, or used and then judged to need another). The agent is told its id
    /// (`x-warden-approval-id`) whichever it is, so that it and its operator can tell which
    /// approval was spent.
    pub fn approval(&self) -> Option<(&str, ApprovalStatus)> {
        match self {
            Hold::Pending { id, .. } => Some((id, ApprovalStatus::Pending)),
            Hold::ApprovalDenied { id, .. } => Some((id, ApprovalStatus::Denied)),
            Hold::ApprovalExpired { id } => Some((id, ApprovalStatus::Expired)),
            Hold::ApprovalUsed { id } | Hold::AnotherApprovalNeeded { id, .. } => {
                Some((id, ApprovalStatus::Consumed))
            }
            Hold::ApprovalWithdrawn { id, .. } => Some((id, ApprovalStatus::Withdrawn)),
            Hold::Denied { .. }
            | Hold::ApprovalUnavailable { .. }
            | Hold::TooManyPending { .. }
            | Hold::Unavailable { .. } => None,
        }
    }

    /// What the agent is told.
    pub fn reason(&self) -> String {
        match self {
            Hold::Denied { reasons } => reasons.join("; "),
            _ => self.to_string(),
        }
    }
}

/// Lets an allowed request go on; holds back any other.
pub fn hold(decision: &Decision) -> Result<(), Hold> {
    match decision {
        Decision::Allow { .. } => Ok(()),
        Decision::Deny { reasons, .. } => Err(Hold::Denied {
            reasons: reasons.clone(),
        }),
        Decision::NeedsApproval { .. } => Err(Hold::ApprovalUnavailable {
            needed: decision.reasons().concat(),
        }),
    }
}

/// What policy's `decision` on a request approved (`approved`) and then judged again (an LLM
/// call, on what its budgets had left once it waited) lets through: an allow, or an approval
/// under the policy it was approved under, goes on; a deny stops with its reasons; an approval
/// under another policy stops too ([`Hold::AnotherApprovalNeeded`]): an approval stands for its
/// own policy only, as one found for a request does
/// ([`crate::state::approvals::ApprovalRecord::covers`]).
pub fn still_approved(decision: &Decision, approved: &gate::Approved) -> Result<(), Hold> {
    match decision {
        Decision::NeedsApproval { policy, .. } if **policy == *approved.policy => Ok(()),
        Decision::NeedsApproval { .. } => Err(Hold::AnotherApprovalNeeded {
            id: approved.id.clone(),
            approved: approved.policy.clone(),
            needed: decision.reasons().concat(),
        }),
        _ => hold(decision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_goes_on_and_deny_stops_with_its_reasons() {
        assert_eq!(
            hold(&Decision::Allow {
                policies: vec!["p".into()]
            }),
            Ok(())
        );
        let denied = hold(&Decision::Deny {
            reasons: vec!["too big".into(), "after hours".into()],
            policies: vec!["a".into(), "b".into()],
        })
        .unwrap_err();
        assert_eq!(denied.code(), "policy_denied");
        assert_eq!(denied.reason(), "too big; after hours");
    }

    fn approval(policy: &str, approvals: u8) -> Decision {
        Decision::NeedsApproval {
            policy: policy.into(),
            approvers: vec!["Group::\"finance\"".into()],
            reason: Some("half the group's budget is spent".into()),
            ttl: None,
            approvals,
        }
    }

    fn approved_under(policy: &str) -> gate::Approved {
        gate::Approved {
            id: "apr-1".into(),
            policy: policy.into(),
            approvers: vec![("alice".into(), "totp")],
        }
    }

    #[test]
    fn an_approved_request_judged_again_goes_on_only_allowed_or_under_the_same_policy() {
        let approved = approved_under("gpt4o-needs-sre");
        let allowed = Decision::Allow {
            policies: vec!["p".into()],
        };
        assert_eq!(still_approved(&allowed, &approved), Ok(()));
        assert_eq!(
            still_approved(&approval("gpt4o-needs-sre", 1), &approved),
            Ok(())
        );
        let denied = Decision::Deny {
            reasons: vec!["the budget is spent".into()],
            policies: vec!["budget-exceeded-deny".into()],
        };
        let refused = still_approved(&denied, &approved).unwrap_err();
        assert_eq!(refused.code(), "policy_denied");
        assert_eq!(refused.reason(), "the budget is spent");
    }

    #[test]
    fn an_approved_request_judged_again_to_need_another_policys_approval_is_refused() {
        let refused = still_approved(
            &approval("half-spent-needs-finance", 2),
            &approved_under("gpt4o-needs-sre"),
        )
        .unwrap_err();
        assert_eq!(refused.code(), "another_approval_required");
        assert_eq!(
            refused.reason(),
            "approval apr-1 was given under policy gpt4o-needs-sre; judged again once approved, \
             on what its budgets have left now, the request needs another: half the group's \
             budget is spent: requires 2 approvals by Group::\"finance\" (policy \
             half-spent-needs-finance). It was not sent: send the same request again to ask for \
             that approval"
        );
    }

    #[test]
    fn approval_is_held_with_an_explanation_until_a_gate_exists() {
        let decision = Decision::NeedsApproval {
            policy: "prod-deploys".into(),
            approvers: vec!["Group::\"sre\"".into()],
            reason: Some("production change".into()),
            ttl: None,
            approvals: 1,
        };
        assert_eq!(
            decision.reasons(),
            ["production change: requires approval by Group::\"sre\" (policy prod-deploys)"]
        );
        let held = hold(&decision).unwrap_err();
        assert_eq!(held.code(), "approval_required");
        assert_eq!(
            held.reason(),
            "production change: requires approval by Group::\"sre\" (policy prod-deploys), and \
             approvals are not enabled on this gateway"
        );
    }
}
