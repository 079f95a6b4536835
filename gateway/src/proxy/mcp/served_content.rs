//! Observe, for what a server answers for the model to read: a `prompts/get` result reaches
//! the agent with the description of the prompt as it was approved (a server can list an
//! innocent prompt and describe it otherwise when asked for it), and a `prompts/get`,
//! `resources/read`, `tools/call` or `tasks/result` result is read by the detectors of
//! `inspect::server_content`, and so is a JSON-RPC error answered to any of them (its
//! `message` and `data`). A replaced
//! description (the finding [`DESCRIPTION_NOT_PINNED`]) and what the detectors find join the
//! request's outcome record and Warden's log, by detector and location, never the text.
//!
//! Then the answer is judged ([`Answering`]): what the detectors found is remembered in the
//! agent's session when a loaded policy reads `context.session`
//! (`context.session.answer_findings`), and, when a loaded policy names
//! `mcp:receive_result`, Cedar decides on it, with the arguments of the request it answers
//! (`context.arguments`; a `resources/read`'s URI as `context.uri`); an answer a forbid
//! withholds is replaced by a refusal in the protocol's shape before the agent gets it. A
//! shadow set that names the action judges it too, and how its decision differs is recorded,
//! never applied.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::action::{
    Action, ActionContext, AnswerFacts, Facts, Finding, Findings, Principal, Resource, Verb,
};
use crate::config::Config;
use crate::decision::Decision;
use crate::fleet::session::AgentSessions;
use crate::inspect::InspectConfig;
use crate::inspect::server_content::{
    inspect_error, inspect_prompt_result, inspect_resource_result, inspect_tool_result,
};
use crate::pins::{ItemKind, Pins};
use crate::policy::{PolicyEngine, ShadowDifference};
use crate::protocol::mcp::jsonrpc;
use crate::text::{FIELD_MAX, Quoted, bounded};

/// The finding of a `prompts/get` result whose description is not the approved prompt's:
/// the agent got the approved one instead.
pub(super) const DESCRIPTION_NOT_PINNED: &str = "prompt_description_not_pinned";

/// Where [`DESCRIPTION_NOT_PINNED`] is found.
const DESCRIPTION: &str = "result.description";

/// A request whose answer is read before the agent gets it.
pub(super) struct Served {
    /// Tool pinning, when on.
    pins: Option<Arc<Pins>>,
    /// Which content detectors run (`inspect:`).
    inspect: InspectConfig,
    server: Arc<str>,
    item: Item,
    /// A `tools/call` that asked for a task (`params.task`, a place among the session's
    /// tasks taken): only its answer can be a task's handle.
    task_call: bool,
    /// How its answer is judged, when it is.
    judge: Option<Judge>,
}

/// What the request asks for, by the server's own name for it.
enum Item {
    /// `prompts/get` of the prompt of this name.
    Prompt(String),
    /// `resources/read` of the resource at this URI.
    Resource(String),
    /// `tools/call` of the tool of this name.
    Tool(String),
    /// `tasks/result` of a task that runs the tool of this name: its answer is the tool's.
    TaskResult(String),
    /// `tasks/get` or `tasks/cancel` (the method): its answer is the task, of which only a
    /// task's own keys and a known `status` reach the agent
    /// ([`crate::mcp::without_status_message`]): the rest is server text no rule judges.
    TaskStatus(&'static str),
}

impl Item {
    /// The method whose answer this is.
    fn method(&self) -> &'static str {
        match self {
            Item::Prompt(_) => "prompts/get",
            Item::Resource(_) => "resources/read",
            Item::Tool(_) => "tools/call",
            Item::TaskResult(_) => "tasks/result",
            Item::TaskStatus(method) => method,
        }
    }
}

/// Who asked, for what, in which context: the request's agent, resource (the tool, or the
/// server of a prompt or resource) and context, for judging its answer. Built only when
/// answers are judged (a loaded policy names `mcp:receive_result`) or remembered in the
/// session (a loaded policy reads `context.session`): otherwise an answer costs no more than
/// its reading.
pub(super) struct Answering {
    pub principal: Arc<Principal>,
    pub resource: Resource,
    /// The request's context (its findings and facts are replaced by the answer's).
    pub context: ActionContext,
    /// The arguments of the request (`context.arguments` of its answer): a `tools/call`'s or
    /// `prompts/get`'s as judged, an empty object for a `resources/read`, a task's creating
    /// call's when Warden kept them (`None`: not kept).
    pub arguments: Option<Arc<Value>>,
    /// The request's decision id, which a refusal names.
    pub decision_id: Arc<str>,
    /// A withheld tool result is answered as a tool result with `isError` (the endpoint's
    /// `on_deny: tool_result`), else as a JSON-RPC error.
    pub deny_as_tool_result: bool,
}

impl Answering {
    /// For `action` (decided, about to be sent) under `policy`: `None` when no loaded policy
    /// judges answers or reads the session.
    pub(super) fn of(
        policy: &PolicyEngine,
        action: &Action,
        decision_id: &str,
        deny_as_tool_result: bool,
    ) -> Option<Answering> {
        if !policy.judges_answers() && action.context.session.is_none() {
            return None;
        }
        let arguments = match &action.context.facts {
            Facts::Tool(tool) => Arc::clone(&tool.arguments),
            _ => Arc::new(Value::Object(Map::new())),
        };
        Some(Answering {
            principal: Arc::clone(&action.principal),
            resource: action.resource.clone(),
            context: action.context.clone(),
            arguments: Some(arguments),
            decision_id: Arc::from(decision_id),
            deny_as_tool_result,
        })
    }
}

/// What policy said of an answer: the enforced set's decision (a deny withheld it) and, with
/// a shadow set that decides otherwise, how (recorded as a request's, never applied).
pub(super) struct AnswerVerdict {
    pub decision: Decision,
    pub shadow: Option<ShadowDifference>,
}

/// What judges an answer: the request's [`Answering`], the policies and the sessions.
struct Judge {
    answering: Answering,
    policy: Arc<PolicyEngine>,
    config: Arc<Config>,
    sessions: Arc<AgentSessions>,
}

impl Served {
    /// What `method` with `params` (as sent to `server`, under the server's own names) asks
    /// for that its answer is read for: a `prompts/get`, a `resources/read` or a `tools/call`;
    /// `None` for any other request. Its answer is read with `pins` and the detectors `inspect` enables.
    pub(super) fn of(
        (pins, inspect): (Option<Arc<Pins>>, &InspectConfig),
        method: &str,
        server: &Arc<str>,
        params: &Map<String, Value>,
    ) -> Option<Served> {
        let own = |key: &str| params.get(key).and_then(Value::as_str).map(str::to_owned);
        let item = match method {
            "prompts/get" => Item::Prompt(own("name")?),
            "resources/read" => Item::Resource(own("uri")?),
            "tools/call" => Item::Tool(own("name")?),
            "tasks/get" => Item::TaskStatus("tasks/get"),
            "tasks/cancel" => Item::TaskStatus("tasks/cancel"),
            _ => return None,
        };
        Some(Served {
            pins,
            inspect: inspect.clone(),
            server: Arc::clone(server),
            item,
            task_call: false,
            judge: None,
        })
    }

    /// A `tasks/result` of a task that runs `tool` on `server`: its answer is read as the
    /// tool's result.
    pub(super) fn task_result(
        (pins, inspect): (Option<Arc<Pins>>, &InspectConfig),
        server: &Arc<str>,
        tool: &str,
    ) -> Served {
        Served {
            pins,
            inspect: inspect.clone(),
            server: Arc::clone(server),
            item: Item::TaskResult(tool.to_owned()),
            task_call: false,
            judge: None,
        }
    }

    /// The request is a task-augmented `tools/call` (it took a place among the session's
    /// tasks): its answer may be a task's handle ([`Served::observe`]).
    pub(super) fn asked_for_a_task(mut self) -> Served {
        self.task_call = matches!(self.item, Item::Tool(_));
        self
    }

    /// Judges the answer for `answering` with `policy`, remembering what it held in
    /// `sessions` (`config.sessions`).
    pub(super) fn judged(
        mut self,
        answering: Answering,
        (policy, config, sessions): (Arc<PolicyEngine>, Arc<Config>, Arc<AgentSessions>),
    ) -> Served {
        self.judge = Some(Judge {
            answering,
            policy,
            config,
            sessions,
        });
        self
    }

    /// Reads `response`, then judges it ([`Served::judge`]): what was found (which the
    /// caller adds to the outcome record) and, when policy judged the answer, what it said
    /// (a deny: the answer was replaced by a refusal).
    ///
    /// The answer to a task-augmented call that created a task is its handle: it reaches the
    /// agent as `task` and `_meta` only ([`handle_only`]), and is not judged (the task's
    /// result is, at `tasks/result`).
    pub(super) fn observe(&self, response: &mut Value) -> (Vec<Finding>, Option<AnswerVerdict>) {
        if let Item::TaskStatus(_) = self.item {
            if let Some(task) = response.get_mut("result") {
                crate::mcp::without_status_message(task);
            }
            return (Vec::new(), None);
        }
        if self.is_handle(response) {
            handle_only(response, &self.server);
        }
        let found = self.read(response);
        let decision = self.judge(response, &found);
        (found, decision)
    }

    /// Whether `response` is a task's handle: the answer to a call that asked for a task,
    /// naming the task it created. The same `task` in any other answer is not one: that
    /// answer is the tool's, judged as any.
    fn is_handle(&self, response: &Value) -> bool {
        self.task_call && crate::mcp::created_task(response).is_some()
    }

    /// Judges the answer `response` in which the detectors found `found`: remembered in the
    /// agent's session (when a loaded policy reads it), then decided as `mcp:receive_result`
    /// (when a loaded policy names it); a deny replaces the answer by a refusal that names
    /// the forbids' reasons. An error answer is judged as a result is, and withheld as a
    /// JSON-RPC error, the shape the agent was getting. The shadow set, if any, judges it too:
    /// how its decision differs is returned, never applied. `None` when not decided (an answer
    /// that is neither a result nor an error).
    pub(super) fn judge(&self, response: &mut Value, found: &[Finding]) -> Option<AnswerVerdict> {
        let judge = self.judge.as_ref()?;
        let error = match response.get("result") {
            Some(result) if result.is_object() => false,
            _ if response.get("error").is_some() => true,
            _ => return None,
        };
        let answering = &judge.answering;
        if let Some(session) = &answering.context.session {
            judge.sessions.remember_answer(
                &judge.config.sessions,
                session,
                found.iter().map(|f| &*f.detector),
            );
        }
        if !judge.policy.judges_answers() {
            return None;
        }
        // A task-augmented call's answer is the task's handle, not the tool's result: that is
        // judged when the agent asks for it (`tasks/result`), with this call's arguments. Only
        // an answer holding nothing but the handle passes unjudged: a `task` beside content,
        // or in the answer to a call that asked for none, is no reason not to judge it.
        if !error && self.is_handle(response) && holds_only_a_handle(response) {
            return None;
        }
        let mut locations: Vec<String> = Vec::new();
        for f in found {
            if !locations.contains(&f.location) {
                locations.push(f.location.clone());
            }
        }
        let action = Action {
            principal: Arc::clone(&answering.principal),
            verb: Verb::McpReceiveResult,
            resource: answering.resource.clone(),
            context: ActionContext {
                findings: Findings(found.to_vec()),
                facts: Facts::Answer(AnswerFacts {
                    server: self.server.to_string(),
                    method: self.item.method().to_owned(),
                    locations,
                    arguments: answering.arguments.clone(),
                    uri: match &self.item {
                        Item::Resource(uri) => Some(uri.clone()),
                        _ => None,
                    },
                }),
                ..answering.context.clone()
            },
        };
        let decision = judge.policy.decide(&action);
        // Judged beside it, never applied: the shadow set's would-be decision.
        let shadow = judge.policy.shadow_difference(&action, &decision);
        if let Decision::Deny { reasons, policies } = &decision {
            tracing::warn!(
                server = %self.server,
                method = self.item.method(),
                resource = %bounded(&action.resource.cedar_ref(), FIELD_MAX),
                policies = %bounded(&policies.join(", "), FIELD_MAX),
                decision_id = %answering.decision_id,
                "an MCP server's answer was withheld by policy (mcp:receive_result); the agent \
                 got a refusal instead"
            );
            let tool_result = !error
                && answering.deny_as_tool_result
                && matches!(self.item, Item::Tool(_) | Item::TaskResult(_));
            withhold(response, reasons, &answering.decision_id, tool_result);
        }
        Some(AnswerVerdict { decision, shadow })
    }

    /// Reads `response` (the server's JSON-RPC response, as the agent gets it): a prompt's
    /// description put back as approved, its content read, or, for an error, the error's
    /// message and data read; returns what was found, which the caller adds to the outcome
    /// record.
    pub(super) fn read(&self, response: &mut Value) -> Vec<Finding> {
        let (kind, name) = match &self.item {
            Item::Prompt(name) => (ItemKind::Prompt, name),
            Item::Resource(uri) => (ItemKind::Resource, uri),
            Item::Tool(name) | Item::TaskResult(name) => (ItemKind::Tool, name),
            Item::TaskStatus(_) => return Vec::new(),
        };
        let mut findings = Vec::new();
        let found = if let Some(result) = response.get_mut("result").filter(|r| r.is_object()) {
            match &self.item {
                Item::Prompt(name) => {
                    if self.restore_description(name, result) {
                        findings.push(Finding {
                            detector: Arc::from(DESCRIPTION_NOT_PINNED),
                            location: DESCRIPTION.to_owned(),
                        });
                    }
                    inspect_prompt_result(result, &self.inspect)
                }
                Item::Resource(_) => inspect_resource_result(result, &self.inspect),
                Item::Tool(_) | Item::TaskResult(_) => inspect_tool_result(result, &self.inspect),
                Item::TaskStatus(_) => Vec::new(),
            }
        } else if let Some(error) = response.get("error") {
            // The model reads an error as it reads a result: a server can put there what it
            // would have put in one.
            inspect_error(error, &self.inspect)
        } else {
            return Vec::new();
        };
        if !found.is_empty() {
            let said: Vec<String> = found
                .iter()
                .map(|f| format!("{} at {}", f.detector, f.location))
                .collect();
            tracing::warn!(
                server = %self.server,
                kind = kind.as_str(),
                item = %Quoted::of(&kind.shown(name)),
                findings = %bounded(&said.join("; "), FIELD_MAX),
                "an MCP server's answer carries what the detectors find (hidden instructions, \
                 secrets); recorded in the request's outcome record"
            );
        }
        findings.extend(found);
        findings
    }

    /// With pinning on, makes the description of the prompt `name`'s `result` the approved
    /// prompt's (removed when the approved prompt has none, or none is approved); returns
    /// whether it differed. A result without a description is left so.
    fn restore_description(&self, name: &str, result: &mut Value) -> bool {
        let Some(pins) = &self.pins else {
            return false;
        };
        let Some(map) = result.as_object_mut() else {
            return false;
        };
        let Some(offered) = map.get("description").filter(|d| !d.is_null()) else {
            return false;
        };
        let pinned = pins.pinned_name(ItemKind::Prompt, name);
        let approved = pins
            .approved_definition(&self.server, &pinned)
            .and_then(|d| d.get("description").filter(|d| !d.is_null()).cloned());
        if approved.as_ref() == Some(offered) {
            return false;
        }
        tracing::warn!(
            server = %self.server,
            prompt = %Quoted::of(name),
            "an MCP server's prompts/get result describes the prompt otherwise than the \
             approved definition; the agent gets the approved description (`warden tools diff \
             SERVER 'prompt:NAME'` shows the approved one)"
        );
        match approved {
            Some(approved) => map.insert("description".to_owned(), approved),
            None => map.remove("description"),
        };
        true
    }
}

/// What a task's handle (`CreateTaskResult`) holds: the task, and `_meta`.
const HANDLE_KEYS: [&str; 2] = ["task", "_meta"];

/// Whether `response`'s result holds nothing but what a task's handle holds.
fn holds_only_a_handle(response: &Value) -> bool {
    response
        .get("result")
        .and_then(Value::as_object)
        .is_some_and(|r| r.keys().all(|k| HANDLE_KEYS.contains(&k.as_str())))
}

/// Makes the result of `response`, a task's handle from `server`, hold only the task (without
/// its `statusMessage`) and `_meta`: what else a server puts beside them (content, structured
/// content) is not part of a handle, and would reach the model unjudged; it is removed, and
/// that logged (by key).
fn handle_only(response: &mut Value, server: &str) {
    let Some(result) = response.get_mut("result").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(task) = result.get_mut("task") {
        crate::mcp::without_status_message(task);
    }
    let extra: Vec<String> = result
        .keys()
        .filter(|k| !HANDLE_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    if extra.is_empty() {
        return;
    }
    for key in &extra {
        result.remove(key);
    }
    tracing::warn!(
        server = %server,
        removed = %bounded(&extra.join(", "), FIELD_MAX),
        "an MCP server answered a task-augmented tools/call with a task and more beside it; \
         the agent gets the task's handle only (task, _meta), the task's result is judged at \
         tasks/result"
    );
}

/// What the code of a withheld answer's JSON-RPC error says (`error.data.code`).
pub(super) const WITHHELD: &str = "answer_withheld";

/// Replaces the answer `response` by a refusal that gives `reasons` and the decision id: a
/// tool result with `isError` (`tool_result`), which the model reads and adapts to, or a
/// JSON-RPC error, which the agent's SDK raises (a `prompts/get` or `resources/read` result
/// has no way to say it failed, and a made-up prompt or resource would reach the model as
/// content). Nothing of the answer is kept: not its content, not its `_meta`.
fn withhold(response: &mut Value, reasons: &[String], decision_id: &str, tool_result: bool) {
    let text = format!(
        "Warden withheld the server's answer: {} (decision {decision_id}). Ask your operator if \
         you need it.",
        reasons.join("; ")
    );
    let Some(map) = response.as_object_mut() else {
        return;
    };
    map.remove("result");
    map.remove("error");
    if tool_result {
        map.insert(
            "result".into(),
            serde_json::json!({"content": [{"type": "text", "text": text}], "isError": true}),
        );
    } else {
        map.insert(
            "error".into(),
            serde_json::json!({
                "code": jsonrpc::code::DENIED,
                "message": text,
                "data": {"code": WITHHELD, "decision_id": decision_id},
            }),
        );
    }
}

#[cfg(test)]
mod tests;
