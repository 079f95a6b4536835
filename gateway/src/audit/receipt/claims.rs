//! What a receipt says of one decision (its claims), and the action digest that ties it to
//! its decision record.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::event::AuditEvent;

/// What a receipt says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Always `warden`.
    pub iss: String,
    /// When it was decided (seconds since the epoch).
    pub iat: u64,
    /// The decision's id (`x-warden-decision-id`, the record's `decision_id`).
    pub decision_id: String,
    /// `sha256:<hex>` of the action ([`action_digest`]).
    pub action_digest: String,
    /// `allow`, `deny` or `approval_required`.
    pub decision: String,
    /// The determining policies (the first [`POLICIES_MAX`]; the record names them all).
    pub policies: Vec<String>,
    /// Determining policies past [`POLICIES_MAX`], not named here.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub policies_omitted: usize,
    /// The decision record's position in the audit chain.
    pub seq: u64,
}

/// The most policy ids a receipt names: a deny that many forbids matched keeps its header
/// small (each id is bounded already).
pub const POLICIES_MAX: usize = 16;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Receipt {
    /// `policies` as a receipt names them: the first [`POLICIES_MAX`], and how many more.
    pub fn named<T: AsRef<str>>(policies: &[T]) -> (Vec<String>, usize) {
        let named = policies
            .iter()
            .take(POLICIES_MAX)
            .map(|p| p.as_ref().to_owned())
            .collect();
        (named, policies.len().saturating_sub(POLICIES_MAX))
    }
}

#[cfg(test)]
impl Receipt {
    /// The claims of an allowed decision recorded at `seq`.
    pub(crate) fn example(seq: u64) -> Receipt {
        Receipt {
            iss: "warden".into(),
            iat: 1_796_300_000,
            decision_id: format!("d{seq}"),
            action_digest: "sha256:00".into(),
            decision: "allow".into(),
            policies: vec!["p".into()],
            policies_omitted: 0,
            seq,
        }
    }
}

/// `sha256:<hex>` over who asked for what: principal (kind, issuer, id), action, resource and
/// the arguments' digest, each on a line of its own after `warden-action/v1`, then, for the
/// egress of a local MCP server's process, `server` and the server's name (its
/// `detail.egress.server`: an approval given to the agent's own egress, or to one server's,
/// is not another's). The decision record carries it; approvals bind to it.
pub fn action_digest(event: &AuditEvent) -> String {
    let mut hash = Sha256::new();
    hash.update(b"warden-action/v1\n");
    for part in [
        &*event.principal.kind,
        &*event.principal.issuer,
        &*event.principal.id,
        &*event.action,
        &*event.resource,
        &*event.content_digest,
    ] {
        hash.update(part.as_bytes());
        hash.update(b"\n");
    }
    let server = event
        .detail
        .as_ref()
        .and_then(|detail| detail.pointer("/egress/server"))
        .and_then(serde_json::Value::as_str);
    if let Some(server) = server {
        hash.update(b"server\n");
        hash.update(server.as_bytes());
        hash.update(b"\n");
    }
    // Hex by table, not by `write!` per byte: this runs for every decision.
    let mut out = *b"sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let _ = hex::encode_to_slice(hash.finalize(), &mut out[7..]);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::EventKind;

    #[test]
    fn a_receipt_names_at_most_sixteen_policies_and_counts_the_rest() {
        let many: Vec<String> = (0..40).map(|i| format!("forbid-{i}")).collect();
        let (named, omitted) = Receipt::named(&many);
        assert_eq!(named, many[..POLICIES_MAX]);
        assert_eq!(omitted, 24);
        let claims = Receipt {
            policies: named,
            policies_omitted: omitted,
            ..Receipt::example(1)
        };
        let json = serde_json::to_string(&claims).unwrap();
        assert!(json.contains("\"policies_omitted\":24"), "{json}");
        assert_eq!(serde_json::from_str::<Receipt>(&json).unwrap(), claims);
        let few = Receipt::named(&["a", "b"]);
        assert_eq!(few, (vec!["a".to_owned(), "b".to_owned()], 0));
        let plain = serde_json::to_string(&Receipt::example(2)).unwrap();
        assert!(!plain.contains("policies_omitted"), "{plain}");
    }

    #[test]
    fn the_action_digest_covers_who_what_and_the_arguments() {
        let mut event = AuditEvent::now(EventKind::Decision);
        event.principal.id = "bot".into();
        event.action = "mcp:call_tool".into();
        event.resource = "Tool::\"github/create_issue\"".into();
        let base = action_digest(&event);
        assert!(base.starts_with("sha256:") && base.len() == 71);
        event.content_digest = "sha256:ab".into();
        assert_ne!(action_digest(&event), base);
        event.content_digest = "".into();
        event.time = crate::audit::event::Timestamp(std::time::UNIX_EPOCH);
        assert_eq!(
            action_digest(&event),
            base,
            "time is not part of the action"
        );
        event.principal.id = "bot2".into();
        assert_ne!(action_digest(&event), base);
    }

    #[test]
    fn the_action_digest_is_sha256_of_the_documented_lines_in_lower_case_hex() {
        let mut event = AuditEvent::now(EventKind::Decision);
        event.principal.kind = "agent".into();
        event.principal.issuer = "warden".into();
        event.principal.id = "bot".into();
        event.action = "llm:chat".into();
        event.resource = "Model::\"openai/gpt-4o-mini\"".into();
        let lines =
            "warden-action/v1\nagent\nwarden\nbot\nllm:chat\nModel::\"openai/gpt-4o-mini\"\n\n";
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(lines.as_bytes())));
        assert_eq!(action_digest(&event), expected);
    }

    #[test]
    fn the_action_digest_of_a_local_server_s_egress_covers_the_server() {
        let mut event = AuditEvent::now(EventKind::Decision);
        event.principal.id = "bot".into();
        event.action = "egress:connect".into();
        event.resource = "Host::\"api.example.com\"".into();
        event.detail = Some(serde_json::json!({"egress": {"host": "api.example.com"}}));
        let agents = action_digest(&event);
        event.detail =
            Some(serde_json::json!({"egress": {"host": "api.example.com", "server": "fs"}}));
        let fs = action_digest(&event);
        event.detail =
            Some(serde_json::json!({"egress": {"host": "api.example.com", "server": "git"}}));
        let git = action_digest(&event);
        assert_ne!(agents, fs);
        assert_ne!(fs, git);
        assert_ne!(agents, git);
        // Nothing else of the detail counts.
        event.detail =
            Some(serde_json::json!({"egress": {"host": "api.example.com", "port": 443}}));
        assert_eq!(action_digest(&event), agents);
    }
}
