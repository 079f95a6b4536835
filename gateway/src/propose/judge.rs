//! The judge of the tool calls a model proposes: each becomes the action `tool:propose` on
//! `Tool::"<name>"` (in its catalogue group), with the context read from its arguments, is
//! decided by the policies, recorded, and answered as a verdict the dialect's rewriter applies.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::config::{ProposeConfig, ToolEntry, ToolKind};
use super::facts;
use super::paths::{Workspace, normalise};
use crate::action::{Action, ActionContext, Facts, Principal, Resource, Verb};
use crate::decision::Decision;
use crate::policy::PolicyEngine;
use crate::protocol::proposed::{JudgeCalls, ProposedCall, Verdict};

/// OpenClaw's deferred-tool call: `tool_call {id, args}` names the tool it runs.
const DEFERRED: &str = "tool_call";
/// Longest tool name judged as given; a longer one is judged as `other`... and denied by name.
const MAX_TOOL_NAME: usize = 128;

/// Where each judged call's decision goes: the audit log and the metrics.
pub trait RecordProposal: Send {
    /// Records the decision on one call (`arguments`: as proposed; `tool`: a bounded label).
    fn record(&self, action: &Action, decision: &Decision, arguments: &[u8], tool: &str);
}

/// The catalogue and workspace of `propose:`, ready for judging.
#[derive(Debug)]
pub struct Catalogue {
    tools: BTreeMap<String, ToolEntry>,
    groups: BTreeMap<String, Arc<str>>,
    workspace: Workspace,
}

impl Catalogue {
    /// The catalogue `config` describes.
    pub fn new(config: &ProposeConfig) -> Catalogue {
        let groups = config
            .tools
            .values()
            .map(|e| (e.group.clone(), Arc::from(e.group.as_str())))
            .collect();
        Catalogue {
            tools: config.tools.clone(),
            groups,
            workspace: Workspace {
                root: normalise(&config.workspace),
                home: normalise(&config.home),
            },
        }
    }

    /// The tool's resource and kind.
    fn tool(&self, name: &str) -> (Resource, ToolKind) {
        let entry = self.tools.get(name);
        let resource = Resource::AgentTool {
            name: name.to_owned(),
            group: entry.and_then(|e| self.groups.get(&e.group).cloned()),
        };
        (resource, entry.map_or(ToolKind::Other, |e| e.kind))
    }

    /// The metric label of a tool: its name when the catalogue knows it, else `other`.
    fn label<'a>(&'a self, name: &'a str) -> &'a str {
        if self.tools.contains_key(name) {
            name
        } else {
            "other"
        }
    }
}

/// Judges the calls of one response for one agent.
pub struct Judge {
    policy: Arc<PolicyEngine>,
    catalogue: Arc<Catalogue>,
    principal: Arc<Principal>,
    /// The request's context, its facts replaced per call.
    context: ActionContext,
    records: Box<dyn RecordProposal>,
}

impl Judge {
    /// A judge of `principal`'s calls, in the request's `context`.
    pub fn new(
        policy: Arc<PolicyEngine>,
        catalogue: Arc<Catalogue>,
        principal: Arc<Principal>,
        context: &ActionContext,
        records: Box<dyn RecordProposal>,
    ) -> Judge {
        let mut context = context.clone();
        context.facts = Facts::None;
        Judge {
            policy,
            catalogue,
            principal,
            context,
            records,
        }
    }

    /// The action one call is: the tool it names (through `tool_call`) and its arguments.
    fn action(&self, call: &ProposedCall<'_>) -> (Action, ToolKind) {
        let mut name = call.name;
        let mut arguments: Value = serde_json::from_str(call.arguments)
            .unwrap_or_else(|_| Value::Object(Default::default()));
        let unwrapped;
        if name == DEFERRED
            && let Some(Value::String(target)) = arguments.get("id")
        {
            unwrapped = target.clone();
            name = &unwrapped;
            arguments = match arguments.get("args") {
                Some(Value::String(text)) => {
                    serde_json::from_str(text).unwrap_or(Value::Object(Default::default()))
                }
                Some(args) => args.clone(),
                None => Value::Object(Default::default()),
            };
        }
        let name = if name.len() > MAX_TOOL_NAME || name.is_empty() {
            "other"
        } else {
            name
        };
        let (resource, kind) = self.catalogue.tool(name);
        let mut context = self.context.clone();
        context.facts = Facts::Propose(Box::new(facts::read(
            kind,
            &arguments,
            &self.catalogue.workspace,
        )));
        (
            Action {
                principal: Arc::clone(&self.principal),
                verb: Verb::ToolPropose,
                resource,
                context,
            },
            kind,
        )
    }
}

impl JudgeCalls for Judge {
    fn judge(&mut self, call: &ProposedCall<'_>) -> Verdict {
        let (action, _) = self.action(call);
        let decision = self.policy.decide(&action);
        let name = action.resource.cedar_id();
        self.records.record(
            &action,
            &decision,
            call.arguments.as_bytes(),
            self.catalogue.label(&name),
        );
        match decision {
            Decision::Allow { .. } => Verdict::Allow,
            Decision::Deny { reasons, .. } => Verdict::Deny {
                text: refusal_text(&name, &reasons.join("; ")),
            },
            // Holding one call of a stream for a human is not done: it is refused, saying so.
            Decision::NeedsApproval { reason, policy, .. } => Verdict::Deny {
                text: refusal_text(
                    &name,
                    &format!(
                        "it needs a human's approval (policy {policy}{}), which Warden cannot wait for inside a response; ask the user to approve running it another way",
                        reason.map(|r| format!(": {r}")).unwrap_or_default()
                    ),
                ),
            },
        }
    }
}

/// What the agent reads about a refused call.
fn refusal_text(tool: &str, why: &str) -> String {
    let why = if why.is_empty() {
        "no policy permits it"
    } else {
        why
    };
    format!("Warden refused the `{tool}` tool call the model proposed: {why}. It was not run.")
}
