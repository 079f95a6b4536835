//! Agents on the legacy HTTP+SSE transport (MCP 2024-11-05). The agent opens an event stream
//! with GET `<prefix>/sse`; its first event, `endpoint`, names where to post messages
//! (`<prefix>/messages?session_id=<id>`, 256 random bits); every answer, notification and
//! request of the servers then reaches the agent on that stream as an `event: message`. The
//! stream is bound to the principal that opened it, its queue is bounded (a full queue makes
//! the senders wait for the agent to read), it carries a keep-alive comment every 15 s, and
//! the session ends when the stream closes or rests unused past `mcp.session_idle_timeout`.
//! Once the agent posts `initialize`, its Warden session (`session.rs`) has the stream's id.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use serde_json::Value;
use tokio::sync::mpsc;

use super::binding::{Binding, InUse, new_session_id};
use super::endpoint::Endpoint;
use super::error::McpError;
use super::per_agent::{AgentSlots, Slot};
use super::relay::relay;
use super::stream::EventBody;
use crate::action::Principal;

/// Where an agent opens a legacy session's event stream, below the endpoint's prefix.
pub const SSE_PATH: &str = "/sse";
/// Where it posts the session's messages, below the endpoint's prefix.
pub const MESSAGES_PATH: &str = "/messages";
/// The query parameter of the messages' URI that names the session.
pub const SESSION_PARAM: &str = "session_id";

/// Events waiting for the agent to read them, at most; past this, senders wait.
const QUEUE: usize = 64;
/// Server messages waiting for the stream's relay, at most; past this, they are dropped.
const EVENTS_BUFFER: usize = 256;
/// How often a quiet stream carries a keep-alive comment.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The open legacy sessions.
#[derive(Default)]
pub struct LegacySessions {
    map: DashMap<Arc<str>, Arc<LegacySession>>,
    /// The streams each agent holds.
    slots: AgentSlots,
}

impl LegacySessions {
    /// Opens a session of `principal` on `endpoint`: the body of its event stream, whose first
    /// event names where to post. Past `max_sessions` open streams, or
    /// `max_sessions_per_agent` of the agent's, refused.
    pub(super) fn open(
        &self,
        endpoint: &Endpoint,
        principal: &Principal,
    ) -> Result<(Arc<LegacySession>, EventBody), McpError> {
        if self.map.len() >= endpoint.max_sessions {
            return Err(McpError::TooManySessions(endpoint.max_sessions));
        }
        let slot = self
            .slots
            .take(principal, endpoint.max_sessions_per_agent)?;
        let id = new_session_id();
        let (tx, body) = EventBody::channel(QUEUE);
        // The queue is empty: the endpoint event always fits.
        let _ = tx.try_send(endpoint_event(&endpoint.prefix, &id));
        let (events_tx, events_rx) = mpsc::channel(EVENTS_BUFFER);
        let session = Arc::new(LegacySession {
            id: Arc::clone(&id),
            binding: Binding::new(principal, &endpoint.name, endpoint.idle_timeout),
            queue: Mutex::new(Some(tx)),
            events_tx,
            events_rx: Mutex::new(Some(events_rx)),
            initialised: AtomicBool::new(false),
            _slot: slot,
        });
        self.map.insert(id, Arc::clone(&session));
        Ok((session, body))
    }

    /// The session `id` of `principal` on route `route`; any other's (or one that rested
    /// past its idle timeout) is unknown.
    pub(super) fn get(
        &self,
        id: &str,
        principal: &Principal,
        route: &str,
    ) -> Result<Arc<LegacySession>, McpError> {
        let session = self
            .map
            .get(id)
            .map(|s| Arc::clone(s.value()))
            .ok_or(McpError::UnknownSession)?;
        if !session.binding.admits(principal, route) || session.binding.idle() {
            return Err(McpError::UnknownSession);
        }
        session.binding.touch();
        Ok(session)
    }

    /// Forgets session `id` and closes its stream.
    pub(super) fn remove(&self, id: &str) {
        if let Some((_, session)) = self.map.remove(id) {
            session.close();
        }
    }
}

/// One agent's legacy session: its event stream, and what goes on it.
pub struct LegacySession {
    /// The session id (in the endpoint's URI, and the id of its Warden session).
    pub id: Arc<str>,
    binding: Binding,
    /// The stream's queue (`None` once the stream is closed).
    queue: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// Where the servers' own messages go, once the session is initialised.
    events_tx: mpsc::Sender<Value>,
    /// Their receiver, taken by [`LegacySession::keep`].
    events_rx: Mutex<Option<mpsc::Receiver<Value>>>,
    initialised: AtomicBool,
    /// Its agent's slot, given back when the session is dropped.
    _slot: Slot,
}

impl LegacySession {
    /// Puts one server-sent event on the stream, waiting while its queue is full; `false`
    /// once the stream is gone.
    pub async fn push(&self, event: Bytes) -> bool {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match queue {
            Some(tx) => tx.send(event).await.is_ok(),
            None => false,
        }
    }

    /// Keeps the stream for as long as the session lasts: relays the servers' own messages,
    /// with keep-alive comments, until the agent leaves or the session rests past its idle
    /// timeout; then closes the stream.
    pub async fn keep(&self) {
        let events = self
            .events_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let (Some(mut events), Some(tx)) = (events, queue) {
            let period = KEEPALIVE.min(self.binding.idle_timeout());
            relay(&mut events, None, &tx, period, || self.binding.idle()).await;
        }
        self.close();
    }

    /// A message of the session is under way (its stream stays open) until the guard is
    /// dropped.
    pub fn in_use(&self) -> InUse {
        self.binding.in_use()
    }

    /// Whether the agent initialised the session.
    pub fn initialised(&self) -> bool {
        self.initialised.load(Ordering::Acquire)
    }

    /// The sender of the servers' own messages for a new Warden session on this stream.
    pub(super) fn events(&self) -> mpsc::Sender<Value> {
        self.events_tx.clone()
    }

    /// The session is initialised.
    pub(super) fn set_initialised(&self) {
        self.initialised.store(true, Ordering::Release);
    }

    /// Whether the stream is closed (the session is over).
    pub(super) fn closed(&self) -> bool {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Closes the stream (once what is being sent has gone).
    fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The first event of a session's stream: where to post its messages.
fn endpoint_event(prefix: &str, id: &str) -> Bytes {
    Bytes::from(format!(
        "event: endpoint\ndata: {prefix}{MESSAGES_PATH}?{SESSION_PARAM}={id}\n\n"
    ))
}

/// The session a POST names in its query (`session_id`, exactly once), if it does.
pub fn session_param(query: Option<&str>) -> Option<String> {
    let mut found = form_urlencoded::parse(query?.as_bytes())
        .filter(|(key, _)| key == SESSION_PARAM)
        .map(|(_, value)| value.into_owned());
    let id = found.next()?;
    found.next().is_none().then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_event_names_the_messages_uri_of_the_session() {
        let e = endpoint_event("/mcp/tools", "ab12");
        assert_eq!(
            &e[..],
            b"event: endpoint\ndata: /mcp/tools/messages?session_id=ab12\n\n"
        );
    }

    #[test]
    fn a_post_names_its_session_once() {
        assert_eq!(
            session_param(Some("session_id=ab12")).as_deref(),
            Some("ab12")
        );
        assert_eq!(
            session_param(Some("x=1&session_id=ab12")).as_deref(),
            Some("ab12")
        );
        assert_eq!(session_param(None), None);
        assert_eq!(session_param(Some("sessionId=ab12")), None);
        assert_eq!(session_param(Some("session_id=a&session_id=b")), None);
    }
}
