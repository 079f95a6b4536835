//! One audit record's content, before the chain fields (sequence, previous hash) are added.

use serde::{Deserialize, Serialize};

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The policy decision for a request, written before the upstream is called.
    Decision,
    /// What happened after the decision: upstream status, latency, usage.
    Outcome,
    /// A refusal before a decision could be made (authentication, malformed input, ...).
    Rejected,
    /// Gateway lifecycle: start, stop, policy reload.
    System,
}

/// Who asked, as recorded. Never contains the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuditPrincipal {
    /// `agent` or `user`; empty when the caller could not be identified.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Principal id; empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Issuer that vouched for the principal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
}

/// What happened upstream (outcome records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AuditOutcome {
    /// HTTP status returned to the agent.
    pub status: u16,
    /// Total time in Warden and upstream, milliseconds.
    pub latency_ms: f64,
    /// Time to the upstream's response headers, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    /// Input tokens the provider reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Output tokens the provider reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Why the exchange failed, if it did (upstream down, stream cut, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One audit event: who, what, on what, decision, outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// RFC 3339 UTC timestamp with milliseconds.
    pub time: String,
    pub kind: EventKind,
    /// Request id (also in logs and the `x-request-id` response header).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// Decision id (shown to the agent in refusals).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decision_id: String,
    #[serde(default)]
    pub principal: AuditPrincipal,
    /// Cedar action id, e.g. `llm:chat`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// Cedar resource, e.g. `Model::"openai/gpt-4o"`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    /// Route name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub route: String,
    /// Peer address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_ip: String,
    /// `allow`, `deny`, `approval_required`; empty for outcome and system records.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decision: String,
    /// Reasons for a deny or rejection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Determining policy ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AuditOutcome>,
    /// Request content, only when `audit.record_prompts` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
    /// Free-form detail for system records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl AuditEvent {
    /// A blank event of `kind` stamped with the current time.
    pub fn now(kind: EventKind) -> Self {
        AuditEvent {
            time: rfc3339_now(),
            kind,
            request_id: String::new(),
            decision_id: String::new(),
            principal: AuditPrincipal::default(),
            action: String::new(),
            resource: String::new(),
            route: String::new(),
            source_ip: String::new(),
            decision: String::new(),
            reasons: Vec::new(),
            policies: Vec::new(),
            outcome: None,
            content: None,
            detail: None,
        }
    }
}

/// The current UTC time as RFC 3339 with milliseconds.
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
