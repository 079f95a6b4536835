//! The requests servers send the agent (`sampling/createMessage`, `elicitation/create`,
//! `roots/list`, `ping`): each is judged before it reaches the agent by what the request
//! path gives the session ([`Judge`], `proxy/mcp/server_requests.rs`: sessions know nothing
//! of policy), then remembered under an id of Warden's (`warden-<n>`) until the agent
//! answers, with what the judge keeps for that answer ([`Ticket`]). One the judge holds for
//! a human's approval ([`Verdict::Held`]) waits in a task of its own: the session's other
//! traffic goes on meanwhile. It is withdrawn ([`Withdrawn`]) when it no longer exists: its
//! session ends, the server's connection closes, the server cancels it, Warden stops
//! ([`Stopping`]).

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::stopping::Stopping;
use crate::protocol::mcp::jsonrpc::{Id, Message};

/// What a judge keeps of a request it let through, given back with the agent's answer (the
/// request path's own type: sessions only carry it). Dropped unanswered, it may say so.
pub type Ticket = Box<dyn Any + Send>;

/// A judge's verdict on one request of a server.
pub enum Verdict {
    /// It goes on to the agent; the ticket comes back with the agent's answer.
    Relay(Option<Ticket>),
    /// It never reaches the agent: this JSON-RPC error (under the server's id) answers the
    /// server instead.
    Refuse(Value),
    /// It waits for a human's approval: given what withdraws it, the verdict once the approval
    /// is settled (approved: relayed; denied or expired: refused) or the request withdrawn
    /// (refused, its approval withdrawn).
    Held(Held),
}

/// A request held for an approval: given the [`Withdrawal`] that ends its wait early, the
/// verdict.
pub type Held = Box<dyn FnOnce(Withdrawal) -> BoxFuture<'static, Verdict> + Send>;

/// Ready, with why, once a held request no longer exists.
pub type Withdrawal = BoxFuture<'static, Withdrawn>;

/// Why a request held for an approval no longer exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawn {
    /// Its agent session ended (deleted by the agent, expired, idle, cut).
    SessionEnded,
    /// The server's connection closed (the process exited, its session ended).
    ServerGone,
    /// The server cancelled it (`notifications/cancelled`).
    Cancelled,
    /// Warden stops: nobody will wait for its approval any more.
    Stopping,
}

impl Withdrawn {
    /// Why, as approvers and the audit log are told (`this request was withdrawn: <why>`).
    pub fn why(self) -> &'static str {
        match self {
            Withdrawn::SessionEnded => "its MCP session ended",
            Withdrawn::ServerGone => "the MCP server's connection closed",
            Withdrawn::Cancelled => "the MCP server cancelled it",
            Withdrawn::Stopping => "Warden stopped",
        }
    }
}

/// Judges the requests a server sends the agent, before they reach it.
pub trait Judge: Send + Sync {
    /// The verdict on `message`, a request from `server`.
    fn judge<'a>(&'a self, server: &'a Arc<str>, message: &'a Message) -> BoxFuture<'a, Verdict>;
}

/// A request a server sent the agent, waiting for the agent's answer.
pub struct Asked {
    /// The server that asked.
    pub server: Arc<str>,
    /// The server's own id for it.
    pub id: Value,
    /// What the judge kept for the answer.
    pub ticket: Option<Ticket>,
}

/// The requests servers sent the agent, by the id Warden gave them, and their judge: shared
/// by one agent session's links.
#[derive(Default)]
pub struct ServerRequests {
    next: AtomicU64,
    waiting: Mutex<HashMap<String, Asked>>,
    /// `None`: relayed unjudged (a session no request path opened: tests of the transports).
    judge: Option<Arc<dyn Judge>>,
    /// Warden stopping: the held requests are withdrawn, and counted until they are.
    stopping: Stopping,
}

/// Server requests remembered at most per agent session (unanswered ones are forgotten).
const SERVER_REQUESTS_MAX: usize = 1024;

impl ServerRequests {
    /// The requests of a session whose servers' requests `judge` judges, withdrawn when
    /// `stopping` says Warden stops.
    pub fn judged_by(judge: Arc<dyn Judge>, stopping: &Stopping) -> ServerRequests {
        ServerRequests {
            judge: Some(judge),
            stopping: stopping.clone(),
            ..ServerRequests::default()
        }
    }

    /// Whether Warden stops, and the count of held requests it waits for.
    pub(super) fn stopping(&self) -> &Stopping {
        &self.stopping
    }

    /// The verdict on `message`, a request from `server`.
    pub(super) async fn judge(&self, server: &Arc<str>, message: &Message) -> Verdict {
        match &self.judge {
            Some(judge) => judge.judge(server, message).await,
            None => Verdict::Relay(None),
        }
    }

    /// Gives `id` of `server` an id of Warden's for the agent, keeping `ticket` for the
    /// answer.
    pub(super) fn remember(&self, server: &Arc<str>, id: Value, ticket: Option<Ticket>) -> String {
        let ours = format!("warden-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let forgotten = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let forgotten = if waiting.len() >= SERVER_REQUESTS_MAX {
                std::mem::take(&mut *waiting)
            } else {
                HashMap::new()
            };
            waiting.insert(
                ours.clone(),
                Asked {
                    server: Arc::clone(server),
                    id,
                    ticket,
                },
            );
            forgotten
        };
        // Their tickets may record that they went unanswered: outside the lock.
        drop(forgotten);
        ours
    }

    /// The request the agent's answer `ours` answers.
    pub fn take(&self, ours: &Id) -> Option<Asked> {
        let Id::Str(key) = ours else { return None };
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Refuser;

    impl Judge for Refuser {
        fn judge<'a>(
            &'a self,
            _server: &'a Arc<str>,
            message: &'a Message,
        ) -> BoxFuture<'a, Verdict> {
            let id = message.body.get("id").cloned().unwrap_or(Value::Null);
            Box::pin(async move { Verdict::Refuse(json!({"id": id, "error": {"code": -1}})) })
        }
    }

    #[tokio::test]
    async fn a_sessions_judge_gives_the_verdict_and_none_relays() {
        let message = Message::from_value(
            json!({"jsonrpc": "2.0", "id": 4, "method": "sampling/createMessage"}),
        )
        .unwrap();
        let server: Arc<str> = Arc::from("files");
        let judged = ServerRequests::judged_by(Arc::new(Refuser), &Stopping::default());
        assert!(
            matches!(judged.judge(&server, &message).await, Verdict::Refuse(v) if v["id"] == 4)
        );
        let unjudged = ServerRequests::default();
        assert!(matches!(
            unjudged.judge(&server, &message).await,
            Verdict::Relay(None)
        ));
    }

    #[test]
    fn an_answer_finds_its_request_and_ticket_once() {
        let requests = ServerRequests::default();
        let ours = requests.remember(&Arc::from("files"), json!("s-1"), Some(Box::new(7u8)));
        let asked = requests.take(&Id::Str(ours.clone())).expect("remembered");
        assert_eq!(asked.id, json!("s-1"));
        assert_eq!(
            asked
                .ticket
                .and_then(|t| t.downcast::<u8>().ok())
                .map(|t| *t),
            Some(7)
        );
        assert!(requests.take(&Id::Str(ours)).is_none());
    }
}
