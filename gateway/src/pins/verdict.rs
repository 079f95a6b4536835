//! What pinning says about a tool definition, and what the audit log and an approver see of a
//! change.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::action::Finding;

/// The verdict on one tool definition from a `tools/list` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinVerdict {
    /// The definition is the approved one: list it, allow calls (policy permitting).
    Trusted,
    /// Never seen before, pinned now (trust on first use): list it, allow calls.
    FirstSeen,
    /// It differs from the approved definition (or the server has shown another one that is
    /// not approved yet): hide it and refuse calls until the change is approved.
    Changed(Arc<PinChange>),
    /// No approval counts for it (`approved` mode, or an unapproved new tool): hide it and
    /// refuse calls until it is approved.
    Unapproved(Arc<PinChange>),
}

/// The verdict on one tool definition, with what Warden learnt from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinCheck {
    /// What to do with the tool.
    pub verdict: PinVerdict,
    /// The digest of the definition checked.
    pub digest: Arc<str>,
    /// Hidden instructions found in the definition (detector and field): for the policy
    /// context (`context.findings`) and for approvers.
    pub findings: Vec<Finding>,
    /// This check recorded something new (a first pin, a change, a tool awaiting approval):
    /// audit it once ([`PinChange::audit_detail`] for a change).
    pub first_report: bool,
}

impl PinCheck {
    /// Whether the tool may be listed and called.
    pub fn allows(&self) -> bool {
        matches!(self.verdict, PinVerdict::Trusted | PinVerdict::FirstSeen)
    }
}

/// A definition waiting for approval, as an approver or the audit log sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinChange {
    /// The MCP server.
    pub server: String,
    /// The tool.
    pub tool: String,
    /// The approved definition's digest, if there is one.
    pub approved_digest: Option<Arc<str>>,
    /// The waiting definition's digest.
    pub digest: Arc<str>,
    /// A unified diff from the approved definition to the waiting one (bounded, escaped).
    pub diff: String,
    /// Hidden instructions found in the waiting definition.
    pub findings: Vec<Finding>,
}

impl PinChange {
    /// The audit record's detail: server, the pinned name (`tool`: a tool's name,
    /// `prompt:<name>`, `resource:<uri>`, ...) and its `kind`, both digests, the diff, the
    /// findings (detector and field only).
    pub fn audit_detail(&self) -> Value {
        json!({
            "server": crate::text::bounded(&self.server, crate::text::QUOTE_MAX),
            "tool": crate::text::bounded(&self.tool, super::definition::PINNED_NAME_MAX),
            "kind": super::definition::ItemKind::of_pinned(&self.tool).as_str(),
            "approved_digest": self.approved_digest.as_deref(),
            "digest": &*self.digest,
            "diff": self.diff,
            "findings": self.findings.iter().map(|f| json!({
                "detector": &*f.detector,
                "location": f.location,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Whether a `tools/call` may go ahead, by what pinning knows of the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    /// The tool's latest definition is approved.
    Allowed,
    /// A definition of the tool waits for approval: refuse the call.
    Held,
    /// Warden has never seen the tool in a `tools/list` result: refuse the call (list first).
    Unknown,
    /// The name is one only another kind of item may be pinned under (a tool called
    /// `prompt:summarize` or `(instructions)`): refuse the call, whatever is pinned under it.
    Reserved,
}

/// Where an item a request uses stands by what pinning holds in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Whether it may be used.
    pub status: CallStatus,
    /// The pin that says so: the item's pinned name, or that of the resource template a
    /// read's URI matches.
    pub pinned: String,
    /// Hidden instructions in what allows it (for the policy context); empty unless allowed.
    pub findings: Vec<Finding>,
}
