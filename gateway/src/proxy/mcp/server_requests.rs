//! The requests MCP servers send agents, on the request path. Each (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`; `protocol/mcp/server_ask.rs`) is an action on its
//! server (`mcp:sample`, `mcp:elicit`, `mcp:list_roots`) judged by Cedar before it reaches the
//! agent, in an exchange of its own: a decision record (the request's params as
//! `content_digest`, as content with `audit.record_content`) and its metrics. A denied one is
//! answered to the server with a JSON-RPC error and never reaches the agent. One that needs an
//! approval waits at the approval gate (whatever `approvals.mode`: the server cannot send it
//! again) in a task of its own, approvers shown its facts and, with `audit.record_content`,
//! its params masked: approved, it is relayed then; denied or expired, the server gets the
//! JSON-RPC error (`data.code` `approval_denied` or `approval_expired`); without approvals
//! enabled it is refused at once (`-32003`). Its approval is its own (no other request finds
//! or uses it, however alike): when the request no longer exists (its session ended or was
//! cut, the server's connection closed, the server cancelled it) the approval
//! is withdrawn (`approval_withdrawn` recorded), and the server, unless it cancelled, gets the
//! JSON-RPC error (`data.code` `approval_withdrawn`).
//!
//! The agent's answer is data leaving for the server: inspected as any request's content
//! (detectors, canary tokens) and, when something is found, judged again with the findings
//! (a second decision record, on the agent's POST); a denied answer is replaced by a JSON-RPC
//! error to the server, a redacted one (`@on_match("redact")`) goes on redacted. The request's
//! outcome record is written when the answer passes, is withheld, or never comes.

use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::StatusCode;
use http_body_util::{BodyExt, Either};
use serde_json::{Map, Value, json};

use super::answer::empty;
use crate::action::{Action, Findings, Principal, Resource, Verb};
use crate::approval::Hold;
use crate::decision::Decision;
use crate::fleet::cut::{Cause, Cut};
use crate::fleet::session::Named;
use crate::listener::ConnInfo;
use crate::mcp::{Judge, Ticket, Verdict, Withdrawal};
use crate::protocol::Shape;
use crate::protocol::mcp::McpShape;
use crate::protocol::mcp::jsonrpc::{self, Kind, Message};
use crate::protocol::mcp::server_ask::{self, ServerAsk};
use crate::proxy::exchange::{Exchange, PendingOutcome, ProxyBody, digest};
use crate::proxy::refusal::Refusal;
use crate::proxy::stages::{
    self, Approval, approval_body, context, decide, inspect, quarantine, recall,
};
use crate::route::Route;
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::text::{FIELD_MAX, bounded};

/// What the outcome record says of a request the agent never answered.
const UNANSWERED: &str = "the agent did not answer";

/// Judges the requests the servers of one agent session send the agent.
pub(super) struct ServerJudge {
    /// What the process shares (weak: the sessions it holds hold this).
    shared: Weak<Shared>,
    route: Arc<Route>,
    /// Whose session it is: the principal of every action judged.
    principal: Arc<Principal>,
    /// The connection that opened the session: the context's source address and TLS.
    conn: ConnInfo,
    /// The agent session's id, once it is open: its facts are the context's `session`.
    session: OnceLock<Arc<str>>,
    /// The stamp of the Warden token the session was opened with: a request of the server's
    /// is refused once it is revoked, however long it waited for an approval.
    token: Option<crate::identity::revocation::TokenStamp>,
}

impl ServerJudge {
    /// The judge of a session `principal` opens on `route` in `ex`.
    pub(super) fn new(
        ex: &Exchange,
        route: &Arc<Route>,
        principal: &Arc<Principal>,
    ) -> Arc<ServerJudge> {
        Arc::new(ServerJudge {
            shared: Arc::downgrade(ex.shared()),
            route: Arc::clone(route),
            principal: Arc::clone(principal),
            conn: ex.conn().clone(),
            session: OnceLock::new(),
            token: ex.token(),
        })
    }

    /// The requests it judges are of agent session `id` (`context.session`).
    pub(super) fn in_session(&self, id: &Arc<str>) {
        let _ = self.session.set(Arc::clone(id));
    }

    async fn verdict(&self, server: &Arc<str>, message: &Message) -> Verdict {
        let Kind::Request { id, method } = &message.kind else {
            return Verdict::Relay(None);
        };
        let id = id.to_value();
        let (verb, facts) = match server_ask::interpret(method, message.params()) {
            Ok(ServerAsk::Ping) => return Verdict::Relay(None),
            Ok(ServerAsk::Judged { verb, facts }) => (verb, facts),
            Err(e) => return Verdict::Refuse(jsonrpc::error(&id, e.code, &e.message)),
        };
        let Some(shared) = self.shared.upgrade() else {
            return Verdict::Refuse(jsonrpc::error(
                &id,
                jsonrpc::code::INTERNAL_ERROR,
                "Warden is stopping",
            ));
        };
        let snap = shared.snapshot.load_full();
        let mut head = http::Request::new(());
        *head.method_mut() = http::Method::POST;
        if let Ok(uri) = self.route.prefix.parse() {
            *head.uri_mut() = uri;
        }
        let mut ex = Exchange::new(
            shared,
            self.conn.clone(),
            snap.config.log.access,
            snap.config.audit.receipts,
            &head,
        );
        ex.routed(&self.route);
        ex.identified(&self.principal);
        ex.identified_by_token(self.token.clone());
        ex.not_the_agents();
        if let Err(revoked) = ex.token_still_valid() {
            return refuse(ex, Refusal::from(revoked), &id).await;
        }
        let resource = Resource::McpServer {
            name: Arc::clone(server),
        };
        ex.interpreted(&verb, &resource, &facts, shape(&id));
        let params = serde_json::to_vec(message.params()).unwrap_or_default();
        ex.digested(Arc::from(digest(&params)));
        let mut action = Action {
            principal: Arc::clone(&self.principal),
            verb,
            resource,
            context: context(&ex, &self.route, Findings::none(), facts),
        };
        // What the agent's session did before, as its own requests see it.
        let named = self.session.get().map_or(Named::Window, |id| Named::By(id));
        if let Err(refusal) = recall(&snap, &ex, &mut action, named) {
            return refuse(ex, refusal, &id).await;
        }
        let mut content = Bytes::from(params);
        // Its approval is its own: withdrawn when it ends, used by no other request.
        ex.approved_alone();
        match judge(&snap, &mut ex, &mut action, &mut content).await {
            Ok(None) => relay(ex, action).await,
            Ok(Some(approval)) => Verdict::Held(Box::new(move |withdrawal| {
                Box::pin(async move {
                    let withdrawn = withdrawn(ex.cut(), withdrawal);
                    match approval.settle_unless_withdrawn(&mut ex, withdrawn).await {
                        Ok(()) => relay(ex, action).await,
                        Err(refusal) => refuse(ex, refusal, &id).await,
                    }
                })
            })),
            Err(refusal) => refuse(ex, refusal, &id).await,
        }
    }
}

/// Why a held request no longer exists, once it does not: `withdrawal` (its session ended,
/// the server's connection closed, the server cancelled it) or `cut` (its agent
/// quarantined, its token revoked; such a cut ends the session too, and is named first).
async fn withdrawn(mut cut: Option<Cut>, withdrawal: Withdrawal) -> String {
    let named = |cause: Cause| format!("its MCP session was cut: {}", cause.what());
    tokio::select! {
        cause = async {
            match cut.as_mut() {
                Some(cut) => cut.cut().await,
                None => std::future::pending().await,
            }
        } => named(cause),
        why = withdrawal => match cut.as_mut().and_then(|cut| cut.cut().now_or_never()) {
            Some(cause) => named(cause),
            None => why.why().to_owned(),
        },
    }
}

/// A server's request let through (allowed, or approved): relayed to the agent, its outcome
/// recorded with the agent's answer.
async fn relay(mut ex: Exchange, action: Action) -> Verdict {
    let outcome = ex.outcome(StatusCode::OK);
    let _ = ex.finish(Ok(empty(StatusCode::OK))).await;
    Verdict::Relay(Some(Box::new(Relayed {
        outcome: Some(outcome),
        action,
    })))
}

/// A server's request `id` refused: recorded, and answered to the server with a JSON-RPC
/// error whose `data.code` is the refusal's stable code (`approval_denied`,
/// `approval_expired`…); one that needs an approval no gate can give under
/// [`jsonrpc::code::NEEDS_APPROVAL`].
async fn refuse(ex: Exchange, refusal: Refusal, id: &Value) -> Verdict {
    let rpc = match &refusal {
        Refusal::Hold(Hold::ApprovalUnavailable { .. }) => Some(jsonrpc::code::NEEDS_APPROVAL),
        _ => None,
    };
    // Who denied it stays in the record: the server is a third party.
    let denied = matches!(&refusal, Refusal::Hold(Hold::ApprovalDenied { .. }));
    let code = refusal.code();
    let response = ex.finish(Err(refusal)).await;
    let mut error = error_to_server(response, id, rpc).await;
    if denied {
        error["error"]["message"] = Value::from("an approver denied this request");
    }
    if let Some(data) = error["error"].as_object_mut() {
        let data = data.entry("data").or_insert_with(|| json!({}));
        if data.is_object() {
            data["code"] = Value::from(code);
        }
    }
    Verdict::Refuse(error)
}

impl Judge for ServerJudge {
    fn judge<'a>(&'a self, server: &'a Arc<str>, message: &'a Message) -> BoxFuture<'a, Verdict> {
        Box::pin(self.verdict(server, message))
    }
}

/// How a refusal of a server's request `id` is answered: a JSON-RPC error.
fn shape(id: &Value) -> Shape {
    Shape::Mcp(McpShape {
        id: id.clone(),
        deny_as_tool_result: false,
        tool_call: false,
    })
}

/// Quarantine, decide and hold for a server's request: `Ok(None)` when it goes on, the
/// approval it waits for when it needs one (approvers are shown its facts and, when
/// `audit.record_content` lets request content be kept, its params masked; an elicitation's
/// own words, its `message` and the `url` it sends the user to, masked, in any case: they are
/// what is approved), else the refusal.
async fn judge(
    snap: &Snapshot,
    ex: &mut Exchange,
    action: &mut Action,
    content: &mut Bytes,
) -> Result<Option<Approval>, Refusal> {
    quarantine(ex, &action.principal)?;
    let decision = decide(snap, ex, action, content).await?;
    if matches!(decision, Decision::NeedsApproval { .. }) {
        let shown = if snap.config.audit.record_content {
            approval_body(content, &snap.config.inspect)
        } else if action.verb == Verb::McpElicit {
            elicitation_words(content).and_then(|words| approval_body(&words, &snap.config.inspect))
        } else {
            None
        };
        if let Some(shown) = shown {
            ex.show_body(shown);
        }
    }
    stages::open(ex, action, &decision, None).await
}

/// What an elicitation request (`params`, as JSON) says to the agent's user: its `message`
/// and, in `url` mode, the `url` it sends them to, as JSON; `None` when it says neither.
fn elicitation_words(params: &[u8]) -> Option<Vec<u8>> {
    let params: Map<String, Value> = serde_json::from_slice(params).ok()?;
    let words: Map<String, Value> = ["message", "url"]
        .into_iter()
        .filter_map(|key| Some((key.to_owned(), params.get(key)?.clone())))
        .collect();
    (!words.is_empty()).then(|| serde_json::to_vec(&words).unwrap_or_default())
}

/// The JSON-RPC error of `response` (a refusal Warden answered in MCP's shape) as the answer
/// to the server's request `id`, under `code` when given.
async fn error_to_server(
    response: http::Response<ProxyBody>,
    id: &Value,
    code: Option<i64>,
) -> Value {
    let body = match response.into_body() {
        Either::Left(full) => full.collect().await.ok().map(|c| c.to_bytes()),
        Either::Right(_) => None,
    };
    let mut error = body
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|v| v.get("error").is_some_and(Value::is_object))
        .unwrap_or_else(|| {
            jsonrpc::error(id, jsonrpc::code::DENIED, "Warden refused this request")
        });
    error["id"] = id.clone();
    if let Some(code) = code {
        error["error"]["code"] = Value::from(code);
    }
    error
}

/// A server's request relayed to the agent, until the agent answers.
struct Relayed {
    /// The request's outcome record, written with the answer (or its absence).
    outcome: Option<PendingOutcome>,
    /// The request as judged: the answer is judged as the same action, with its findings.
    action: Action,
}

impl Drop for Relayed {
    fn drop(&mut self) {
        if let Some(outcome) = self.outcome.take() {
            outcome.mcp_result(None, Some(UNANSWERED.into()));
        }
    }
}

/// The agent's answer `message` to a server's request (its `ticket`; the server's own id is
/// `id`), as it goes to the server: only what JSON-RPC defines of an answer (`jsonrpc`, `id`,
/// `result` or `error`), its `result` or `error` inspected and judged, then as sent, redacted,
/// or a JSON-RPC error that says why it was withheld. A request that was not judged (a
/// `ping`) has no ticket of this module's: its answer carries nothing of the agent's
/// ([`unjudged`]).
pub(super) async fn answer(
    snap: &Snapshot,
    ex: &mut Exchange,
    route: &Route,
    ticket: Option<Ticket>,
    mut message: Message,
    id: &Value,
) -> Message {
    let Some(mut relayed) = ticket.and_then(|t| t.downcast::<Relayed>().ok()) else {
        return unjudged(message);
    };
    let Some(outcome) = relayed.outcome.take() else {
        return unjudged(message);
    };
    bare(&mut message);
    // The agent declined, or failed: its error leaves in the result's place, inspected as
    // a result is.
    let key = if message.body.contains_key("error") {
        "error"
    } else {
        "result"
    };
    let declined = message.body.get("error").map(|error| {
        let why = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the agent answered with an error");
        bounded(why, FIELD_MAX).into_owned()
    });
    let result = message.body.get(key).cloned().unwrap_or(Value::Null);
    let sent = serde_json::to_vec(&result).unwrap_or_default();
    let Action {
        principal,
        verb,
        resource,
        context: asked,
    } = &relayed.action;
    let mut action = Action {
        principal: Arc::clone(principal),
        verb: verb.clone(),
        resource: resource.clone(),
        context: context(ex, route, Findings::none(), asked.facts.clone()),
    };
    inspect(snap, ex, &mut action, &sent);
    if action.context.findings.0.is_empty() {
        outcome.mcp_result(None, declined);
        return message;
    }
    ex.interpreted(verb, resource, &action.context.facts, shape(id));
    let mut content = Bytes::from(sent.clone());
    let withheld = match decide(snap, ex, &mut action, &mut content).await {
        Ok(Decision::Allow { .. }) if content == sent => None,
        Ok(Decision::Allow { .. }) => match serde_json::from_slice::<Value>(&content) {
            Ok(redacted) => {
                message.body.insert(key.into(), redacted);
                None
            }
            Err(_) => Some("the redacted answer is not JSON".to_owned()),
        },
        Ok(decision) => Some(decision.reasons().join("; ")),
        Err(refusal) => Some(refusal.to_string()),
    };
    let Some(why) = withheld else {
        outcome.mcp_result(None, declined);
        return message;
    };
    let why = bounded(&why, FIELD_MAX).into_owned();
    let text = format!(
        "Warden withheld the agent's answer: {why} (decision {})",
        ex.decision_id()
    );
    outcome.mcp_result(None, Some(format!("withheld: {why}")));
    let mut error = jsonrpc::error(id, jsonrpc::code::DENIED, &text);
    error["error"]["data"] = json!({"decision_id": ex.decision_id()});
    Message::from_value(error).unwrap_or(message)
}

/// Keeps of an answer only what JSON-RPC defines: `jsonrpc`, `id`, and `result` or `error`.
/// Anything else the agent put beside them would leave uninspected.
fn bare(message: &mut Message) {
    message
        .body
        .retain(|key, _| matches!(key.as_str(), "jsonrpc" | "id" | "result" | "error"));
}

/// An answer to a request Warden did not judge (a `ping`, whose result is empty by the
/// specification): nothing of what the agent wrote leaves, only an empty result, or its
/// error's code with a message of Warden's.
fn unjudged(mut message: Message) -> Message {
    bare(&mut message);
    if let Some(error) = message.body.get_mut("error") {
        let code = error
            .get("code")
            .filter(|code| code.is_i64())
            .cloned()
            .unwrap_or(json!(-32603));
        *error = json!({"code": code, "message": "the agent answered with an error"});
    } else {
        message.body.insert("result".into(), json!({}));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_json_rpc_defines_of_an_unjudged_answer_leaves_and_none_of_its_content() {
        let message = |value: Value| Message::from_value(value).unwrap();
        let sent = unjudged(message(json!({
            "jsonrpc": "2.0", "id": 4, "result": {"leak": "AKIAIOSFODNN7EXAMPLE"},
            "x": "AKIAIOSFODNN7EXAMPLE"
        })));
        assert_eq!(
            Value::Object(sent.body),
            json!({"jsonrpc": "2.0", "id": 4, "result": {}})
        );
        let sent = unjudged(message(json!({
            "jsonrpc": "2.0", "id": 5,
            "error": {"code": 7, "message": "AKIAIOSFODNN7EXAMPLE", "data": {"k": "v"}}
        })));
        assert_eq!(
            Value::Object(sent.body),
            json!({"jsonrpc": "2.0", "id": 5,
                   "error": {"code": 7, "message": "the agent answered with an error"}})
        );
        let mut judged = message(json!({"jsonrpc": "2.0", "id": 6, "result": {}, "extra": 1}));
        bare(&mut judged);
        assert_eq!(
            Value::Object(judged.body),
            json!({"jsonrpc": "2.0", "id": 6, "result": {}})
        );
    }

    #[test]
    fn approvers_of_an_elicitation_read_its_message_and_the_page_it_sends_the_user_to() {
        let params = json!({
            "mode": "url", "elicitationId": "e-1",
            "message": "Sign in again to keep your session",
            "url": "https://login.ex\u{430}mple.com/sso",
        });
        let words = elicitation_words(params.to_string().as_bytes()).unwrap();
        let inspect = crate::inspect::InspectConfig::default();
        assert_eq!(
            approval_body(&words, &inspect).unwrap(),
            json!({
                "message": "Sign in again to keep your session",
                "url": "https://login.ex\u{430}mple.com/sso",
            })
        );
        // A form says only its message; a request that says nothing shows nothing.
        let form = json!({"message": "Your name?", "requestedSchema": {"type": "object"}});
        let words = elicitation_words(form.to_string().as_bytes()).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&words).unwrap(),
            json!({"message": "Your name?"})
        );
        assert_eq!(elicitation_words(br#"{"mode": "form"}"#), None);
    }

    #[tokio::test]
    async fn a_refusal_answers_the_server_under_its_own_id_with_the_code_asked() {
        let body = jsonrpc::error(&Value::Null, jsonrpc::code::DENIED, "blocked (decision d1)");
        let response = super::super::answer::json_response(StatusCode::OK, &body);
        let error =
            error_to_server(response, &json!("s-9"), Some(jsonrpc::code::NEEDS_APPROVAL)).await;
        assert_eq!(error["id"], "s-9");
        assert_eq!(error["error"]["code"], jsonrpc::code::NEEDS_APPROVAL);
        assert_eq!(error["error"]["message"], "blocked (decision d1)");
        // A body that is no JSON-RPC error (none): Warden's own, never the agent's.
        let error = error_to_server(empty(StatusCode::OK), &json!(3), None).await;
        assert_eq!(error["id"], 3);
        assert_eq!(error["error"]["code"], jsonrpc::code::DENIED);
    }
}
