//! The verdict of the decide stage.

use std::sync::Arc;
use std::time::Duration;

/// What policy says about an [`crate::action::Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// At least one permit matched and no forbid did.
    Allow {
        /// Ids (`@id`) of the permit policies that matched.
        policies: Vec<Arc<str>>,
    },
    /// A forbid matched, or nothing permitted (default deny).
    Deny {
        /// Human-readable reasons (`@reason` of the determining policies; a default-deny
        /// explanation when no policy matched). Shown to the agent.
        reasons: Vec<String>,
        /// Ids of the determining policies (empty on default deny).
        policies: Vec<Arc<str>>,
    },
    /// A permit that carries `@approval("required")` matched: a human must approve first.
    NeedsApproval {
        /// Id of the policy that asks for approval.
        policy: Arc<str>,
        /// Who may approve (`@approvers`), as Cedar entity references.
        approvers: Vec<String>,
        /// `@reason` of that policy, if any.
        reason: Option<String>,
        /// `@approval_ttl`: how long the approval may wait before it expires into a deny
        /// (`None`: the approval gate's default).
        ttl: Option<Duration>,
        /// `@approvals`: how many distinct approvers must approve (1 unless a two-person
        /// rule).
        approvals: u8,
    },
}

impl Decision {
    /// Short label used in metrics, logs and the audit record.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
            Decision::NeedsApproval { .. } => "approval_required",
        }
    }

    /// The reasons a record keeps for this decision: a deny's (`@reason` of its forbids), or
    /// who must approve, under which policy and why.
    pub fn reasons(&self) -> Vec<String> {
        match self {
            Decision::Allow { .. } => Vec::new(),
            Decision::Deny { reasons, .. } => reasons.clone(),
            Decision::NeedsApproval {
                policy,
                approvers,
                reason,
                approvals,
                ..
            } => vec![format!(
                "{}requires {} by {} (policy {policy})",
                reason
                    .as_deref()
                    .map(|r| format!("{r}: "))
                    .unwrap_or_default(),
                match approvals {
                    0 | 1 => "approval".to_string(),
                    n => format!("{n} approvals"),
                },
                if approvers.is_empty() {
                    "an approver".to_string()
                } else {
                    approvers.join(", ")
                },
            )],
        }
    }

    /// Ids of the policies that determined the decision.
    pub fn policy_ids(&self) -> Vec<Arc<str>> {
        match self {
            Decision::Allow { policies } | Decision::Deny { policies, .. } => policies.clone(),
            Decision::NeedsApproval { policy, .. } => vec![policy.clone()],
        }
    }
}
