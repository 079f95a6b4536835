//! One audit record's content, before the chain fields (sequence, previous hash) are added.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// A tool definition an MCP server offers changed from the approved one, or waits for
    /// approval: the detail holds both digests, a bounded diff and the findings
    /// (`pins::PinChange::audit_detail`).
    ToolChange,
    /// A signed checkpoint: the detail holds the seq range it covers, the hash of its last
    /// record, the key id and the Ed25519 signature (`audit/checkpoint.rs`).
    Checkpoint,
    /// Retention removes the oldest segments: the detail names each (its first and last seq,
    /// the last record's hash), why (`max_age`, `max_bytes`, `when_full`) and, when a sink
    /// had not received them, what it lost (`audit/retention.rs`).
    Retention,
}

impl EventKind {
    /// The kind as records write it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Decision => "decision",
            EventKind::Outcome => "outcome",
            EventKind::Rejected => "rejected",
            EventKind::System => "system",
            EventKind::ToolChange => "tool_change",
            EventKind::Checkpoint => "checkpoint",
            EventKind::Retention => "retention",
        }
    }
}

/// Text shared between a request's records without copying.
pub type Text = Arc<str>;

/// Text that is usually a constant (`llm:chat`, `allow`).
pub type Label = Cow<'static, str>;

fn is_zero(n: &u16) -> bool {
    *n == 0
}

fn is_empty<T: AsRef<str>>(text: &T) -> bool {
    text.as_ref().is_empty()
}

/// The empty text, shared: a blank event costs no allocation per field.
pub fn empty_text() -> Text {
    static EMPTY: std::sync::LazyLock<Text> = std::sync::LazyLock::new(|| Arc::from(""));
    Arc::clone(&EMPTY)
}

/// Who asked, as recorded. Never contains the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPrincipal {
    /// `agent` or `user`; empty when the caller could not be identified.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub kind: Label,
    /// Principal id; empty when unknown.
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub id: Text,
    /// Issuer that vouched for the principal.
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub issuer: Text,
}

impl Default for AuditPrincipal {
    fn default() -> Self {
        AuditPrincipal {
            kind: Label::Borrowed(""),
            id: empty_text(),
            issuer: empty_text(),
        }
    }
}

/// What happened upstream (outcome records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AuditOutcome {
    /// HTTP status returned to the agent; 0 (left out) when none is known (an interrupted
    /// request).
    #[serde(default, skip_serializing_if = "is_zero")]
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
    /// The tokens above are Warden's estimate, charged to budgets because the provider's usage
    /// could not be read (`fleet::budget::estimate`); left out when they are the provider's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    /// The model the provider says answered, as it named it (bounded), when it named one:
    /// budgets price the tokens by the model the request asked for (the one policy judged),
    /// or by this one when it costs more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    /// Why the exchange failed, if it did (upstream down, stream cut, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// An MCP tool call's result said `isError` (the tool ran and failed, or Warden's refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// Bytes an egress tunnel carried from the agent to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_up: Option<u64>,
    /// Bytes an egress tunnel carried from the destination back to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_down: Option<u64>,
    /// What policy said of an MCP server's answer (`mcp:receive_result`), when a loaded
    /// policy judges answers: withheld (`deny`) or passed (`allow`), and by which policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<AuditAnswer>,
    /// What an LLM call a budget bounds reserved against its budgets while it was in flight
    /// (its worst case, `fleet::budget::reserve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<AuditReserved>,
}

/// What an LLM call reserved against its budgets, on its outcome record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AuditReserved {
    /// Input tokens: the request's input ceiling, else Warden's input estimate.
    pub input_tokens: u64,
    /// Output tokens: its output limit (or the default) times its choices, each choice at
    /// most `budgets.reserve.max_output_tokens`.
    pub output_tokens: u64,
    /// US dollars, priced by the model asked for.
    pub usd: f64,
}

/// The judgement of an MCP server's answer, on its request's outcome record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAnswer {
    /// `deny` (the agent got a refusal instead of the answer) or `allow`.
    pub decision: Label,
    /// The determining policies: the forbids that withheld it, or the permits that matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Text>,
    /// The forbids' `@reason`s (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// What the shadow policy set would have decided of the answer, where it differs (as on
    /// a decision record; never applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<AuditShadow>,
}

/// One finding of the inspect stage, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFinding {
    /// The detector that matched.
    pub detector: Text,
    /// Where in the request.
    pub location: String,
}

/// What the shadow policy set would have decided, on a decision record where it differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditShadow {
    /// `allow`, `deny` or `approval_required`.
    pub decision: Label,
    /// The policy the difference is counted under (`warden_shadow_differences_total`).
    pub policy: Text,
    /// The shadow decision's determining policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Text>,
    /// The shadow set's version.
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub version: Text,
}

/// Which Vault secret a request's upstream credential came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSecret {
    /// Its path (`secret/agents/team-a/github`, `database/creds/readonly`).
    pub path: String,
    /// The KV version read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The lease of a dynamic secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
}

/// JSON text embedded in a record as it is (a decision record's `facts`): written once by
/// its producer, never parsed into a tree on the way to the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<serde_json::value::RawValue>);

impl RawJson {
    /// `value` written as compact JSON text (one line, as a record must be).
    pub fn of(value: &impl Serialize) -> serde_json::Result<RawJson> {
        serde_json::value::to_raw_value(value).map(RawJson)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// One audit event: who, what, on what, decision, outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// RFC 3339 UTC timestamp with milliseconds.
    pub time: Timestamp,
    pub kind: EventKind,
    /// The replica that wrote the record (`audit.replica_id`): set by the writer.
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub replica: Text,
    /// Request id (also in logs and the `x-request-id` response header).
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub request_id: Text,
    /// Decision id (shown to the agent in refusals).
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub decision_id: Text,
    #[serde(default)]
    pub principal: AuditPrincipal,
    /// Cedar action id, e.g. `llm:chat`.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub action: Label,
    /// Cedar resource, e.g. `Model::"openai/gpt-4o"`.
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub resource: Text,
    /// Route name.
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub route: Text,
    /// Peer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// The identity of the verified client certificate the request came with (mTLS).
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub client_certificate: Text,
    /// `allow`, `deny`, `approval_required`; empty for outcome and system records.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub decision: Label,
    /// Reasons for a deny or rejection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Determining policy ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Text>,
    /// The version (content digest) of the policy set that decided.
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub policy_version: Text,
    /// What the shadow policy set would have decided, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Box<AuditShadow>>,
    /// What inspection found in the request: detector and location, never the content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<AuditFinding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AuditOutcome>,
    /// Request content, only when `audit.record_content` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
    /// `sha256:<hex>` of a tool call's (prompt's, completion's) arguments, always: the
    /// arguments themselves are in `content` only with `audit.record_content`.
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub content_digest: Text,
    /// `sha256:<hex>` of the action a decision record judged: principal, action, resource and
    /// the arguments' digest (`audit::receipt::action_digest`); receipts name it.
    #[serde(default = "empty_text", skip_serializing_if = "is_empty")]
    pub action_digest: Text,
    /// What policy judged, for `warden policy replay`: principal with its attributes, action,
    /// resource and context as a policy test case writes them (`audit.decision_facts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<RawJson>,
    /// Why a decision record carries no `facts` (`too large`, `arguments not recorded`).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub facts_omitted: Label,
    /// What made a decision other than policy's verdict, when something beyond policy did:
    /// `quarantine` (a quarantine trigger fired), `internal_address` (the egress guard).
    /// `warden policy replay` does not judge such a decision again.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub overruled_by: Label,
    /// A rejected record's refusal code (`rate_limited`, `agent_quarantined`, `missing_credential`,
    /// …), as the agent was told.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub code: Label,
    /// The Vault secret whose credential went upstream: path, version, lease (never the
    /// value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<AuditSecret>,
    /// Free-form detail for system records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl AuditEvent {
    /// A blank event of `kind` stamped with the current time.
    pub fn now(kind: EventKind) -> Self {
        AuditEvent {
            time: Timestamp::now(),
            kind,
            replica: empty_text(),
            request_id: empty_text(),
            decision_id: empty_text(),
            principal: AuditPrincipal::default(),
            action: Label::Borrowed(""),
            resource: empty_text(),
            route: empty_text(),
            source_ip: None,
            client_certificate: empty_text(),
            decision: Label::Borrowed(""),
            reasons: Vec::new(),
            policies: Vec::new(),
            policy_version: empty_text(),
            shadow: None,
            findings: Vec::new(),
            outcome: None,
            content: None,
            content_digest: empty_text(),
            action_digest: empty_text(),
            facts: None,
            facts_omitted: Label::Borrowed(""),
            overruled_by: Label::Borrowed(""),
            code: Label::Borrowed(""),
            secret: None,
            detail: None,
        }
    }
}

/// A point in time, written as RFC 3339 UTC with milliseconds (`2026-11-05T10:00:00.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// Now, to the millisecond (what a record keeps).
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let millis = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        Timestamp(UNIX_EPOCH + std::time::Duration::from_millis(millis))
    }

    /// The RFC 3339 text, without allocating.
    pub fn rfc3339(&self) -> [u8; 24] {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let millis = since.subsec_millis();
        let (year, month, day) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, value: u64, width: usize| {
            let mut v = value;
            for i in (0..width).rev() {
                out[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year.clamp(0, 9999) as u64, 4);
        put(5, u64::from(month), 2);
        put(8, u64::from(day), 2);
        put(11, rem / 3600, 2);
        put(14, rem % 3600 / 60, 2);
        put(17, rem % 60, 2);
        put(20, u64::from(millis), 3);
        out
    }
}

/// Year, month (1-12) and day (1-31) of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.rfc3339();
        f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.rfc3339();
        let text = std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        humantime::parse_rfc3339(&text)
            .map(Timestamp)
            .map_err(|e| serde::de::Error::custom(format!("time {text:?}: {e}")))
    }
}

/// The current UTC time as RFC 3339 with milliseconds.
pub fn rfc3339_now() -> String {
    Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_humantime_rfc3339_millis() {
        for secs in [0, 951_782_400, 1_793_613_600, 4_102_444_799, 1_709_208_000] {
            for millis in [0, 7, 999] {
                let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
                assert_eq!(
                    Timestamp(t).to_string(),
                    humantime::format_rfc3339_millis(t).to_string(),
                    "{secs}.{millis}"
                );
            }
        }
    }

    #[test]
    fn timestamps_round_trip_through_json() {
        let t = Timestamp(UNIX_EPOCH + Duration::from_millis(1_793_613_600_123));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-02T10:00:00.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}
