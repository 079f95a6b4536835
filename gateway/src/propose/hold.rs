//! A proposed call that needs a human's approval, held through the approval gate: the gate
//! finds or opens its approval (approvers told, as for any held request), waits for it in
//! `approvals.mode: wait` (up to `approvals.wait_timeout`), and the call is released unchanged
//! once approved, or replaced as refused (denied, expired, still pending) with why.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::action::{Action, Facts, ProposeFacts};
use crate::approval::Hold;
use crate::approval::gate::{Approved, Gate, Waiting};
use crate::decision::Decision;

/// A call waiting for its approval: polled until it is settled.
pub struct HeldCall {
    settle: Pin<Box<dyn Future<Output = Settled> + Send>>,
}

impl std::fmt::Debug for HeldCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldCall").finish_non_exhaustive()
    }
}

/// How a held call ended: what the approval came to.
#[derive(Debug)]
pub struct Settled {
    /// The call's action.
    pub action: Action,
    /// The approval used, or why the call does not go on.
    pub approval: Result<Approved, Hold>,
    /// The call's metric label.
    pub tool: String,
}

impl HeldCall {
    /// Holds `action` (a call to `tool`, labelled `label`, with `arguments`) that `decision`
    /// says needs an approval, through `gate`; approvers see the call's arguments only when
    /// `show_arguments`.
    pub fn new(
        gate: Arc<Gate>,
        decision: Decision,
        action: Action,
        arguments: &str,
        label: &str,
        show_arguments: bool,
    ) -> HeldCall {
        let waiting = waiting(&action, arguments, show_arguments);
        let tool = label.to_owned();
        let settle = async move {
            let approval = match gate.open(&decision, waiting).await {
                Ok(opened) => gate.conclude(opened).await,
                Err(hold) => Err(hold),
            };
            Settled {
                action,
                approval,
                tool,
            }
        };
        HeldCall {
            settle: Box::pin(settle),
        }
    }

    /// Polls the approval to its end.
    pub fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<Settled> {
        self.settle.as_mut().poll(cx)
    }
}

/// The gate's view of a proposed call: bound to the exact call (principal with its issuer,
/// tool, arguments), so that an approval lets through that call and no other.
fn waiting(action: &Action, arguments: &str, show_arguments: bool) -> Waiting {
    let principal = format!(
        "{}::{:?}",
        action.principal.kind.cedar_type(),
        &*action.principal.id
    );
    let resource = action.resource.cedar_ref();
    let verb = action.verb.as_str();
    let digest = call_digest(
        &principal,
        &action.principal.issuer,
        verb,
        &resource,
        arguments,
    );
    let context = match &action.context.facts {
        Facts::Propose(facts) => shown(facts, arguments, show_arguments),
        _ => json!({}),
    };
    Waiting {
        digest,
        principal,
        agent: action.principal.id.to_string(),
        action: verb.to_owned(),
        resource,
        context,
    }
}

/// `sha256:<hex>` over the call: the principal and the issuer that vouched for it (two
/// issuers' agents of one name are two agents), the action, the resource and the arguments,
/// each preceded by its length. Approvals opened by a Warden whose digest lacked the issuer
/// match no call after the upgrade: they stay pending until they expire, and the agent's
/// next call opens a new approval.
fn call_digest(
    principal: &str,
    issuer: &str,
    verb: &str,
    resource: &str,
    arguments: &str,
) -> String {
    let mut hash = Sha256::new();
    for part in [principal, issuer, verb, resource, arguments] {
        hash.update(part.len().to_le_bytes());
        hash.update(part.as_bytes());
    }
    let mut digest = String::from("sha256:");
    for b in hash.finalize() {
        let _ = write!(digest, "{b:02x}");
    }
    digest
}

/// What approvers are shown of a proposed call: what Warden read from its arguments (the
/// programs a command runs, the paths, hosts and recipients it names, the flags policies
/// test), and the arguments themselves only when configured (they may carry secrets).
fn shown(facts: &ProposeFacts, arguments: &str, show_arguments: bool) -> Value {
    let mut shown = json!({
        "proposed": true,
        "command_parsed": facts.command_parsed,
        "programs": facts.programs,
        "subcommands": facts.subcommands,
        "paths": facts.paths,
        "hosts": facts.hosts,
        "recipients": facts.recipients,
        "force_push": facts.force_push,
        "pipes_to_shell": facts.pipes_to_shell,
        "recursive_delete": facts.recursive_delete,
        "outside_workspace": facts.outside_workspace,
        "writes_outside_workspace": facts.writes_outside_workspace,
        "unknown_effect_outside_workspace": facts.unknown_effect_outside_workspace,
        "inline_code_programs": facts.inline_code_programs,
    });
    if show_arguments {
        shown["arguments"] = serde_json::from_str(arguments).unwrap_or(Value::Null);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_binds_to_the_agent_of_one_issuer() {
        let args = r#"{"command":"make deploy"}"#;
        let of = |issuer: &str| {
            call_digest(
                "Agent::\"ci\"",
                issuer,
                "tool:propose",
                "Tool::\"exec\"",
                args,
            )
        };
        let warden = of("warden");
        assert!(
            warden.starts_with("sha256:") && warden.len() == 71,
            "{warden}"
        );
        assert_eq!(warden, of("warden"), "the same call, the same digest");
        assert_ne!(
            warden,
            of("https://idp.example.com"),
            "another issuer's agent of one name"
        );
        // Lengths prefix the parts: moving text between issuer and principal changes it.
        assert_ne!(
            call_digest("Agent::\"ci\"", "ab", "v", "r", args),
            call_digest("Agent::\"ci\"a", "b", "v", "r", args)
        );
    }

    #[test]
    fn approvers_see_what_was_read_and_the_arguments_only_when_configured() {
        let facts = ProposeFacts {
            command: Some("git push --force origin main".into()),
            programs: vec!["git".into()],
            subcommands: vec!["git push".into()],
            force_push: true,
            command_parsed: true,
            ..Default::default()
        };
        let arguments = r#"{"command":"git push --force origin main"}"#;
        let hidden = shown(&facts, arguments, false);
        assert_eq!(hidden["subcommands"], json!(["git push"]));
        assert_eq!(hidden["force_push"], json!(true));
        assert!(!hidden.to_string().contains("origin main"), "{hidden}");
        let open = shown(&facts, arguments, true);
        assert_eq!(
            open["arguments"]["command"],
            json!("git push --force origin main")
        );
    }
}
