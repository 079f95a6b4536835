//! What a server sends back, routed: a response and the progress of a request to that
//! request; the server's own requests (judged first, `server_requests.rs`: a refused one is
//! answered to the server and never reaches the agent; a relayed one goes under an id of
//! Warden's, `warden-<n>`, remembered until the agent answers) and notifications to the
//! request they belong to, else to the agent session's event stream. What the agent gets of
//! them carries no `_meta` key of Warden's namespace but `warden/server`, the server's name.
//! Shared by the transports and the link.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::ask_rate::{Admitted, AskRate, DEFAULT_PER_MINUTE, DENIED, REFUSED};
use super::error::LinkError;
use super::server_requests::{Held, ServerRequests, Verdict, Withdrawn};
use super::tasks::Tasks;
use crate::protocol::mcp::jsonrpc::{self, Id, Kind, Message};
use crate::protocol::mcp::names;
use crate::secrets::redact::Echo;
use crate::upstream::breaker::BreakerSlot;

/// Messages of one request held for the agent at most; past this, progress is dropped.
const REQUEST_BUFFER: usize = 64;
/// Warden's answers to a server's requests waiting to be sent, at most.
const OUTBOX: usize = 64;
/// The `_meta` key that names the server a request or notification the agent gets came from.
pub const SERVER_META: &str = "warden/server";

/// What one request to a server gives back: what the server sends while it works (progress,
/// its own requests to the agent), then the response.
pub struct Call {
    /// The id Warden gave the request.
    pub upstream_id: i64,
    /// Messages the server sends while it works.
    pub progress: mpsc::Receiver<Value>,
    /// The response (its id is Warden's: the caller puts the agent's back).
    pub done: oneshot::Receiver<Answer>,
}

/// How a request ended.
#[derive(Debug)]
pub struct Answer {
    /// The response: the server's, or a JSON-RPC error of Warden's.
    pub message: Value,
    /// The server failed it (went away, broke the exchange, did not answer in time): Warden
    /// wrote `message`. A JSON-RPC error the server sent itself is an answer, not a failure.
    pub server_failed: bool,
}

/// Where the server's messages that belong to no request go: the agent session's event
/// stream.
pub type Events = mpsc::Sender<Value>;

/// One request in flight.
struct Pending {
    progress: mpsc::Sender<Value>,
    done: oneshot::Sender<Answer>,
    token: Option<String>,
    /// Warden's own request (a list it reads, `initialize`): nobody reads its progress, so
    /// what the server sends with it goes to the session's event stream.
    own: bool,
}

/// The state of a link, watched by callers that wait for a restarting server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Connecting or restarting.
    Starting,
    /// Initialised: requests go through.
    Ready,
    /// Closed for good (the agent session ended, or the first start failed).
    Closed,
}

/// Waits until the link is closed for good.
pub async fn closed(state: &mut watch::Receiver<State>) {
    // The guard `wait_for` returns is dropped here, before any other await.
    let _ = state.wait_for(|s| *s == State::Closed).await;
}

/// What the transports share with the link: the routing of everything the server sends.
pub struct Router {
    pub server: Arc<str>,
    pending: Mutex<HashMap<i64, Pending>>,
    /// Progress tokens of requests in flight → their ids.
    tokens: Mutex<HashMap<String, i64>>,
    /// The most recent request in flight, to which a stdio server's own requests are
    /// attributed (stdio has no per-request stream).
    latest: AtomicI64,
    events: Events,
    requests: Arc<ServerRequests>,
    pub state: watch::Sender<State>,
    /// The server's `initialize` result, once it answered.
    pub initialized: Mutex<Option<Value>>,
    /// The forms of the credential Warden last sent the server: replaced with `[REDACTED]`
    /// wherever its messages echo them (`inject.redact`).
    echo: Mutex<Option<Arc<Echo>>>,
    /// The server's circuit breaker, as the settings in force make it (shared by every
    /// session's link to it).
    pub breaker: Arc<BreakerSlot>,
    /// Warden's own answers to the server's requests (refusals), sent by the link.
    outbox: mpsc::Sender<Value>,
    /// The other end of `outbox`, until the link takes it.
    outbox_rx: Mutex<Option<mpsc::Receiver<Value>>>,
    /// The server's requests waiting for an approval now (at most [`MAX_HELD`]).
    held: Arc<AtomicUsize>,
    /// What withdraws each of them, by the server's id for it.
    withdrawals: Mutex<HashMap<String, oneshot::Sender<Withdrawn>>>,
    /// How many requests the server may send the agent (in this session).
    rate: AskRate,
    /// The session's tasks: the server's status notifications reach the agent only for its
    /// own tasks there.
    tasks: Arc<Tasks>,
}

/// How many of one server's requests may wait for an approval at once in a session: more
/// are refused before they are judged, so a server cannot flood approvers (each waiting
/// request is an approval and a notification).
pub const MAX_HELD: usize = 8;

/// One of a server's requests waiting for an approval, counted while it lives.
struct HeldCount(Arc<AtomicUsize>);

impl HeldCount {
    fn new(count: &Arc<AtomicUsize>) -> HeldCount {
        count.fetch_add(1, Ordering::AcqRel);
        HeldCount(Arc::clone(count))
    }
}

impl Drop for HeldCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Router {
    /// The router of a new link to `server`, whose circuit breaker is `breaker`.
    pub fn new(
        server: Arc<str>,
        events: Events,
        requests: Arc<ServerRequests>,
        breaker: Arc<BreakerSlot>,
    ) -> Router {
        let (state, _) = watch::channel(State::Starting);
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        Router {
            breaker,
            outbox,
            outbox_rx: Mutex::new(Some(outbox_rx)),
            server,
            pending: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            latest: AtomicI64::new(-1),
            events,
            requests,
            state,
            initialized: Mutex::new(None),
            echo: Mutex::new(None),
            held: Arc::new(AtomicUsize::new(0)),
            withdrawals: Mutex::new(HashMap::new()),
            rate: AskRate::new(DEFAULT_PER_MINUTE),
            tasks: Arc::default(),
        }
    }

    /// The session's tasks are `tasks` (none known otherwise).
    pub fn with_tasks(mut self, tasks: Arc<Tasks>) -> Router {
        self.tasks = tasks;
        self
    }

    /// The server may send the agent at most `per_minute` requests a minute in this session.
    pub fn asking_at_most(mut self, per_minute: u32) -> Router {
        self.rate = AskRate::new(per_minute);
        self
    }

    /// Redacts `echo` (a credential's forms; empty: nothing) from the server's messages from
    /// now on.
    pub fn redact(&self, echo: &Arc<Echo>) {
        let mut current = self.echo.lock().unwrap_or_else(|e| e.into_inner());
        match (&*current, echo.is_empty()) {
            (_, true) => *current = None,
            (Some(known), false) if Arc::ptr_eq(known, echo) => {}
            _ => *current = Some(Arc::clone(echo)),
        }
    }

    /// What Warden answers the server's requests itself, for the link to send (once).
    pub(super) fn take_outbox(&self) -> Option<mpsc::Receiver<Value>> {
        self.outbox_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Handles one message from the server; `during`: the request whose HTTP response
    /// carried it, if any. A request of the server's waits for its judgement here.
    pub async fn dispatch(self: &Arc<Self>, mut value: Value, during: Option<i64>) {
        let echo = self.echo.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(echo) = echo
            && crate::secrets::redact::redact_json(&mut value, &echo) > 0
        {
            tracing::info!(server = %self.server, "MCP server echoed its credential; redacted");
        }
        let message = match Message::from_value(value) {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(server = %self.server, error = %e, "MCP server sent a message that is not JSON-RPC; dropped");
                return;
            }
        };
        match &message.kind {
            Kind::Response { id } => {
                let Id::Int(n) = id else {
                    tracing::debug!(server = %self.server, "response to an id Warden never sent; dropped");
                    return;
                };
                let pending = self.lock_pending().remove(n);
                if let Some(p) = pending {
                    self.forget_token(p.token.as_deref());
                    let _ = p.done.send(Answer {
                        message: message.into_value(),
                        server_failed: false,
                    });
                }
            }
            Kind::Notification { method } => {
                let mut message = message.clone();
                tracing::debug!(server = %self.server, method = %crate::text::bounded(method, crate::text::FIELD_MAX), "an MCP server's notification, relayed to the agent");
                self.attribute(message.params_mut());
                let target = match method.as_str() {
                    "notifications/progress" => {
                        let token = message.params().get("progressToken").map(token_key);
                        token.and_then(|t| self.lock_tokens().get(&t).copied())
                    }
                    "notifications/resources/updated" => {
                        self.prefix_uri(message.params_mut());
                        None
                    }
                    "notifications/tasks/status" => {
                        // Only for a task this server runs for this session's agent.
                        let task = message.params().get("taskId").and_then(Value::as_str);
                        if !task.is_some_and(|t| self.tasks.runs(t, &self.server)) {
                            tracing::debug!(server = %self.server, "a task status notification for no task of this session; dropped");
                            return;
                        }
                        // Its statusMessage (and any key no task has) is server text no
                        // rule judges, as in a task (`tasks::without_status_message`).
                        super::tasks::only_task_fields(message.params_mut());
                        during
                    }
                    "notifications/cancelled" => {
                        // The server cancels a request of its own that waits for an approval:
                        // withdrawn, and the agent, who never saw it, is not told.
                        let cancelled = message.params().get("requestId").map(token_key);
                        if cancelled.is_some_and(|id| self.withdraw(&id, Withdrawn::Cancelled)) {
                            return;
                        }
                        None
                    }
                    _ => during,
                };
                self.deliver(target, message.into_value());
            }
            Kind::Request { id, .. } => {
                if let Some(refusal) = self.refused(id) {
                    if self.outbox.try_send(refusal).is_err() {
                        tracing::warn!(server = %self.server, "the MCP server's refused request could not be answered (too many waiting); it will time out");
                    }
                    return;
                }
                match self.requests.judge(&self.server, &message).await {
                    Verdict::Held(held) => self.hold(held, message, during),
                    verdict => self.conclude(verdict, message, during),
                }
            }
        }
    }

    /// The answer to the server's request `id` when it is refused before it is judged: its
    /// agent session has ended (the link is closed), past its rate
    /// (`requests_to_agent_per_minute`), or while [`MAX_HELD`] of its requests wait for an
    /// approval. Counted; logged once while the server stays over its rate.
    fn refused(&self, id: &Id) -> Option<Value> {
        let (reason, text) = if *self.state.borrow() == State::Closed {
            // Its agent session has ended (or never started): there is no agent to ask, and
            // nothing may be judged or recorded in the name of one who left.
            tracing::info!(server = %self.server, "an MCP server sent the agent a request after the agent's session ended; refused");
            (
                "ended",
                "the agent's session with this server has ended: nobody will answer".to_owned(),
            )
        } else if let Admitted::No { first } = self.rate.admit() {
            if first {
                tracing::warn!(server = %self.server, per_minute = self.rate.per_minute(), "an MCP server sends the agent more requests than its requests_to_agent_per_minute: refused until it slows down");
            }
            (
                "rate",
                format!(
                    "this server sends the agent more than {} requests a minute \
                     (requests_to_agent_per_minute): ask again later",
                    self.rate.per_minute()
                ),
            )
        } else if self.held.load(Ordering::Acquire) >= MAX_HELD {
            tracing::warn!(server = %self.server, "an MCP server's request to the agent was refused: {MAX_HELD} of its requests already wait for an approval");
            (
                "held",
                "too many of this server's requests already wait for an approval: ask again \
                 once they are decided"
                    .to_owned(),
            )
        } else {
            return None;
        };
        REFUSED.with_label_values(&[&*self.server, reason]).inc();
        Some(jsonrpc::error(
            &id.to_value(),
            jsonrpc::code::NEEDS_APPROVAL,
            &text,
        ))
    }

    /// Waits, in a task of its own, for the verdict on `message` (a request of the server's
    /// `held` for an approval), then concludes it; the session's other messages go on
    /// meanwhile. It is withdrawn when it no longer exists: the session ends, the server's
    /// connection closes, the server cancels it (then the server, which expects no answer,
    /// gets none), Warden stops (counted until its withdrawal is recorded, which Warden
    /// waits for before it stops).
    fn hold(self: &Arc<Self>, held: Held, message: Message, during: Option<i64>) {
        let Kind::Request { id, .. } = &message.kind else {
            return;
        };
        tracing::info!(server = %self.server, "an MCP server's request to the agent waits for an approval");
        let key = token_key(&id.to_value());
        let (withdraw, withdrawn) = oneshot::channel();
        if let Some(earlier) = self.lock_withdrawals().insert(key.clone(), withdraw) {
            // The server used the id again while the first still waits: the first is gone.
            let _ = earlier.send(Withdrawn::Cancelled);
        }
        let router = Arc::clone(self);
        let mut state = self.state.subscribe();
        let count = HeldCount::new(&self.held);
        let stopping = self.requests.stopping().clone();
        let holding = stopping.holding();
        let why = Arc::new(std::sync::OnceLock::new());
        let told = Arc::clone(&why);
        let withdrawal = Box::pin(async move {
            let withdrawn = tokio::select! {
                why = withdrawn => why.unwrap_or(Withdrawn::SessionEnded),
                () = closed(&mut state) => Withdrawn::SessionEnded,
                () = stopping.stopped() => Withdrawn::Stopping,
            };
            let _ = told.set(withdrawn);
            withdrawn
        });
        let settled = held(withdrawal);
        tokio::spawn(async move {
            let _counted = (count, holding);
            let verdict = settled.await;
            router.forget_withdrawal(&key);
            match why.get() {
                // A cancelled request is answered no more (JSON-RPC's and MCP's rule).
                Some(Withdrawn::Cancelled) => {
                    tracing::info!(server = %router.server, "an MCP server cancelled its request that waited for an approval; withdrawn");
                }
                Some(withdrawn) => {
                    tracing::info!(server = %router.server, why = withdrawn.why(), "an MCP server's request that waited for an approval was withdrawn");
                    if let Verdict::Refuse(answer) = verdict {
                        let _ = router.outbox.try_send(answer);
                    }
                }
                None => router.conclude(verdict, message, during),
            }
        });
    }

    /// Withdraws the server's request `key` (its id, [`token_key`]) waiting for an approval;
    /// whether one waited.
    fn withdraw(&self, key: &str, why: Withdrawn) -> bool {
        let withdraw = self.lock_withdrawals().remove(key);
        withdraw.is_some_and(|w| w.send(why).is_ok())
    }

    /// Withdraws every request of the server's waiting for an approval.
    pub fn withdraw_all(&self, why: Withdrawn) {
        let all = std::mem::take(&mut *self.lock_withdrawals());
        for (_, withdraw) in all {
            let _ = withdraw.send(why);
        }
    }

    /// How many of the server's requests wait for an approval (or for their withdrawal to be
    /// recorded).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn forget_withdrawal(&self, key: &str) {
        let mut withdrawals = self.lock_withdrawals();
        if withdrawals.get(key).is_some_and(oneshot::Sender::is_closed) {
            withdrawals.remove(key);
        }
    }

    fn lock_withdrawals(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Withdrawn>>> {
        self.withdrawals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Relays the server's request `message` to the agent under an id of Warden's, or answers
    /// the server with the refusal, as `verdict` says.
    fn conclude(&self, verdict: Verdict, message: Message, during: Option<i64>) {
        let Kind::Request { id, method } = &message.kind else {
            return;
        };
        let ticket = match verdict {
            Verdict::Relay(ticket) => ticket,
            Verdict::Refuse(answer) => {
                tracing::info!(server = %self.server, method = %crate::text::bounded(method, crate::text::FIELD_MAX), "an MCP server's request to the agent was refused; the server is answered");
                DENIED.with_label_values(&[&*self.server]).inc();
                if self.outbox.try_send(answer).is_err() {
                    tracing::warn!(server = %self.server, "the MCP server's refused request could not be answered (too many waiting); it will time out");
                }
                return;
            }
            Verdict::Held(_) => {
                tracing::warn!(server = %self.server, "an MCP server's request was held twice; the server is answered with an error");
                let answer = jsonrpc::error(
                    &id.to_value(),
                    jsonrpc::code::INTERNAL_ERROR,
                    "Warden could not settle this request",
                );
                let _ = self.outbox.try_send(answer);
                return;
            }
        };
        let ours = self.requests.remember(&self.server, id.to_value(), ticket);
        let mut message = message;
        message.body.insert("id".into(), Value::String(ours));
        self.attribute(message.params_mut());
        let target = during.or_else(|| {
            let latest = self.latest.load(Ordering::Relaxed);
            self.lock_pending().contains_key(&latest).then_some(latest)
        });
        self.deliver(target, message.into_value());
    }

    /// Sends `message` with the request `target` when it is in flight, else to the session's
    /// event stream.
    fn deliver(&self, target: Option<i64>, message: Value) {
        let message = match target {
            Some(id) => match self.lock_pending().get(&id) {
                Some(p) if !p.own => match p.progress.try_send(message) {
                    Ok(()) => return,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::debug!(server = %self.server, "agent reads too slowly; a progress message was dropped");
                        return;
                    }
                    Err(mpsc::error::TrySendError::Closed(m)) => m,
                },
                _ => message,
            },
            None => message,
        };
        if self.events.try_send(message).is_err() {
            tracing::debug!(server = %self.server, "no agent reads this session's event stream; a server message was dropped");
        }
    }

    /// A request's or notification's `params` as the agent gets them: no `_meta` key of
    /// Warden's namespace but `warden/server`, the server's name.
    fn attribute(&self, params: &mut Map<String, Value>) {
        jsonrpc::strip_warden_meta(params);
        let meta = params
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.insert(SERVER_META.into(), Value::String(self.server.to_string()));
        }
    }

    /// `params.uri` as the agent knows it (`<server>+<uri>`).
    fn prefix_uri(&self, params: &mut Map<String, Value>) {
        if let Some(Value::String(uri)) = params.get("uri") {
            let prefixed = names::prefix_uri(&self.server, uri);
            params.insert("uri".into(), Value::String(prefixed));
        }
    }

    /// Registers request `id` (with its progress token) and returns its receivers.
    pub(super) fn register(&self, id: i64, token: Option<String>) -> Call {
        let (progress_tx, progress) = mpsc::channel(REQUEST_BUFFER);
        let (done_tx, done) = oneshot::channel();
        if let Some(t) = &token {
            self.lock_tokens().insert(t.clone(), id);
        }
        self.lock_pending().insert(
            id,
            Pending {
                progress: progress_tx,
                done: done_tx,
                token,
                own: false,
            },
        );
        self.latest.store(id, Ordering::Relaxed);
        Call {
            upstream_id: id,
            progress,
            done,
        }
    }

    /// Marks request `id` (registered, not yet sent) as Warden's own: what the server sends
    /// while it works (its requests to the agent, notifications) goes to the session's event
    /// stream, since no agent waits on this request's progress.
    pub(super) fn own(&self, id: i64) {
        if let Some(p) = self.lock_pending().get_mut(&id) {
            p.own = true;
        }
    }

    /// Whether request `id` still waits for its response.
    pub fn waits_for(&self, id: i64) -> bool {
        self.lock_pending().contains_key(&id)
    }

    /// Ends request `id` with a JSON-RPC error: the server failed, or went away.
    pub fn fail(&self, id: i64, message: &str) {
        self.end(id, message, true);
    }

    /// Ends request `id` with a JSON-RPC error, for a reason that says nothing of the server's
    /// health (the session ended, the credential is unavailable).
    pub fn end(&self, id: i64, message: &str, server_failed: bool) {
        let pending = self.lock_pending().remove(&id);
        if let Some(p) = pending {
            self.forget_token(p.token.as_deref());
            let _ = p.done.send(Answer {
                message: jsonrpc::error(&Value::from(id), jsonrpc::code::UPSTREAM, message),
                server_failed,
            });
        }
    }

    /// Stops waiting for request `id`, which the agent cancelled (a server answers no
    /// cancelled request): its receivers end without a response.
    pub fn abandon(&self, id: i64) {
        let pending = self.lock_pending().remove(&id);
        if let Some(p) = pending {
            self.forget_token(p.token.as_deref());
        }
    }

    /// Ends every request in flight with a JSON-RPC error (`server_failed`: the server
    /// went away); the server's requests waiting for an approval are withdrawn.
    pub fn end_all(&self, message: &str, server_failed: bool) {
        let ids: Vec<i64> = self.lock_pending().keys().copied().collect();
        for id in ids {
            self.end(id, message, server_failed);
        }
        self.withdraw_all(if server_failed {
            Withdrawn::ServerGone
        } else {
            Withdrawn::SessionEnded
        });
    }

    fn forget_token(&self, token: Option<&str>) {
        if let Some(t) = token {
            self.lock_tokens().remove(t);
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A progress token as a map key (tokens are strings or numbers).
pub(super) fn token_key(v: &Value) -> String {
    v.to_string()
}

/// Runs the `initialize` exchange over `send` and stores the server's result; `Err` says why
/// it failed.
pub(super) async fn handshake<F, Fut>(
    router: &Router,
    next_id: &AtomicI64,
    init: &Map<String, Value>,
    timeout: Duration,
    send: F,
) -> Result<(), String>
where
    F: Fn(Value, Option<i64>) -> Fut,
    Fut: Future<Output = Result<(), LinkError>>,
{
    let id = next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let call = router.register(id, None);
    router.own(id);
    let message = jsonrpc::request(
        Some(&Value::from(id)),
        "initialize",
        Value::Object(init.clone()),
    );
    if let Err(e) = send(message, Some(id)).await {
        router.fail(id, "initialize failed");
        return Err(e.shown().into_owned());
    }
    let response = match tokio::time::timeout(timeout, call.done).await {
        Ok(Ok(r)) => r.message,
        Ok(Err(_)) => return Err("the server went away".into()),
        Err(_) => {
            router.fail(id, "timed out");
            return Err(format!("no answer within {} s", timeout.as_secs()));
        }
    };
    let Some(result) = response.get("result").filter(|r| r.is_object()) else {
        let why = response
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no result");
        return Err(format!(
            "initialize failed: {}",
            crate::text::bounded(why, crate::text::FIELD_MAX)
        ));
    };
    *router.initialized.lock().unwrap_or_else(|e| e.into_inner()) = Some(result.clone());
    send(
        jsonrpc::request(None, "notifications/initialized", Value::Object(Map::new())),
        None,
    )
    .await
    .map_err(|e| e.shown().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::stopping::Stopping;
    use crate::upstream::breaker::{Breaker, BreakerConfig, BreakerMetrics};
    use serde_json::json;

    fn breaker() -> Arc<BreakerSlot> {
        Arc::new(BreakerSlot::new(Breaker::new(
            Arc::from("mcp:files"),
            BreakerConfig::default(),
            BreakerMetrics::new(),
        )))
    }

    #[tokio::test]
    async fn responses_progress_and_server_requests_find_their_way() {
        let requests = Arc::new(ServerRequests::default());
        let (router, mut events) = routed(&requests);
        let mut call = router.register(7, Some(token_key(&json!("tok"))));

        router
            .dispatch(
                json!({"jsonrpc": "2.0", "method": "notifications/progress",
                   "params": {"progressToken": "tok", "progress": 1}}),
                None,
            )
            .await;
        let progress = call.progress.try_recv().expect("progress of the call");
        assert_eq!(progress["params"]["progress"], 1);

        // The server asks the agent something while the call runs: it goes with the call, under
        // an id of Warden's that leads back to the server's own.
        router.dispatch(
            json!({"jsonrpc": "2.0", "id": "s-1", "method": "sampling/createMessage", "params": {}}),
            None,
        ).await;
        let asked = call.progress.try_recv().expect("the server's request");
        assert_eq!(asked["id"], "warden-0");
        let asked_for = requests
            .take(&Id::Str("warden-0".into()))
            .expect("remembered");
        assert_eq!((&*asked_for.server, asked_for.id), ("files", json!("s-1")));

        router
            .dispatch(json!({"jsonrpc": "2.0", "id": 7, "result": {}}), None)
            .await;
        let answer = call.done.try_recv().expect("the response");
        assert_eq!(answer.message["id"], 7);
        assert!(!answer.server_failed);

        // What belongs to no request goes to the session's event stream, URIs federated.
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "method": "notifications/resources/updated",
                   "params": {"uri": "file:///a"}}),
                None,
            )
            .await;
        let event = events.try_recv().expect("an event");
        assert_eq!(event["params"]["uri"], "files+file:///a");
    }

    /// Refuses every request with an error under the server's id.
    struct Refuser;

    impl crate::mcp::Judge for Refuser {
        fn judge<'a>(
            &'a self,
            _server: &'a Arc<str>,
            message: &'a Message,
        ) -> futures_util::future::BoxFuture<'a, Verdict> {
            let id = message.body.get("id").cloned().unwrap_or(Value::Null);
            Box::pin(async move {
                Verdict::Refuse(jsonrpc::error(&id, jsonrpc::code::DENIED, "no sampling"))
            })
        }
    }

    #[tokio::test]
    async fn a_refused_server_request_never_reaches_the_agent_and_the_server_is_answered() {
        let requests = Arc::new(ServerRequests::judged_by(
            Arc::new(Refuser),
            &Stopping::default(),
        ));
        let (router, mut events) = routed(&requests);
        let mut outbox = router.take_outbox().expect("the link's to take");
        let mut call = router.register(7, None);
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "id": "s-1", "method": "sampling/createMessage",
                       "params": {"maxTokens": 5, "messages": []}}),
                Some(7),
            )
            .await;
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "id": 2, "method": "roots/list"}),
                None,
            )
            .await;
        assert!(call.progress.try_recv().is_err(), "not with the call");
        assert!(events.try_recv().is_err(), "not on the session's stream");
        let answer = outbox.try_recv().expect("the server is answered");
        assert_eq!(answer["id"], "s-1");
        assert_eq!(answer["error"]["code"], jsonrpc::code::DENIED);
        assert_eq!(outbox.try_recv().expect("each one")["id"], 2);
        assert!(
            requests.take(&Id::Str("warden-0".into())).is_none(),
            "nothing waits for the agent's answer"
        );
    }

    /// Holds every request until `release` says how it ends.
    struct Holder {
        release: Mutex<Option<oneshot::Receiver<Verdict>>>,
    }

    impl crate::mcp::Judge for Holder {
        fn judge<'a>(
            &'a self,
            _server: &'a Arc<str>,
            message: &'a Message,
        ) -> futures_util::future::BoxFuture<'a, Verdict> {
            let release = self.release.lock().unwrap().take().expect("one request");
            let id = message.body.get("id").cloned().unwrap_or(Value::Null);
            Box::pin(async move {
                Verdict::Held(Box::new(move |withdrawal| {
                    Box::pin(async move {
                        tokio::select! {
                            verdict = release => verdict.unwrap_or(Verdict::Refuse(Value::Null)),
                            why = withdrawal => Verdict::Refuse(jsonrpc::error(
                                &id, jsonrpc::code::DENIED, why.why(),
                            )),
                        }
                    })
                }))
            })
        }
    }

    /// A router to `files` whose server's requests `requests` keeps, and its session's
    /// event stream.
    fn routed(requests: &Arc<ServerRequests>) -> (Arc<Router>, mpsc::Receiver<Value>) {
        let (events_tx, events) = mpsc::channel(8);
        let router = Router::new(
            Arc::from("files"),
            events_tx,
            Arc::clone(requests),
            breaker(),
        );
        (Arc::new(router), events)
    }

    /// Requests judged by a [`Holder`], and what settles the one it holds.
    fn held() -> (oneshot::Sender<Verdict>, Arc<ServerRequests>) {
        held_until(&Stopping::default())
    }

    /// As [`held`], withdrawn when `stopping` says Warden stops.
    fn held_until(stopping: &Stopping) -> (oneshot::Sender<Verdict>, Arc<ServerRequests>) {
        let (release, released) = oneshot::channel();
        let holder = Holder {
            release: Mutex::new(Some(released)),
        };
        (
            release,
            Arc::new(ServerRequests::judged_by(Arc::new(holder), stopping)),
        )
    }

    #[tokio::test]
    async fn a_held_server_request_lets_the_sessions_traffic_go_on_and_is_delivered_once_settled() {
        let (release, requests) = held();
        let (router, mut events) = routed(&requests);
        let mut outbox = router.take_outbox().expect("the link's to take");
        let mut call = router.register(7, None);
        tokio::time::timeout(
            Duration::from_secs(1),
            router.dispatch(
                json!({"jsonrpc": "2.0", "id": "s-1", "method": "sampling/createMessage",
                       "params": {"maxTokens": 5, "messages": []}}),
                None,
            ),
        )
        .await
        .expect("the reader is not held with the request");
        // The session's other traffic goes on: the call's own response arrives.
        router
            .dispatch(json!({"jsonrpc": "2.0", "id": 7, "result": {}}), None)
            .await;
        assert_eq!(call.done.try_recv().expect("the response").message["id"], 7);
        tokio::task::yield_now().await;
        assert!(events.try_recv().is_err(), "not delivered while held");
        release.send(Verdict::Relay(None)).ok().expect("held");
        let asked = tokio::time::timeout(Duration::from_secs(1), events.recv())
            .await
            .expect("delivered once approved")
            .expect("an event");
        assert_eq!(asked["id"], "warden-0");
        assert_eq!(asked["params"]["_meta"]["warden/server"], "files");
        assert_eq!(
            requests
                .take(&Id::Str("warden-0".into()))
                .expect("remembered")
                .id,
            json!("s-1")
        );
        assert!(outbox.try_recv().is_err(), "the server waits for the agent");
    }

    /// Holds every request it judges until the end of the test, counting them.
    struct Forever(std::sync::atomic::AtomicUsize);

    impl crate::mcp::Judge for Forever {
        fn judge<'a>(
            &'a self,
            _server: &'a Arc<str>,
            _message: &'a Message,
        ) -> futures_util::future::BoxFuture<'a, Verdict> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Verdict::Held(Box::new(|_| Box::pin(std::future::pending()))) })
        }
    }

    #[tokio::test]
    async fn a_server_may_have_only_so_many_requests_waiting_for_approval() {
        let judge = Arc::new(Forever(std::sync::atomic::AtomicUsize::new(0)));
        let requests = Arc::new(ServerRequests::judged_by(
            judge.clone(),
            &Stopping::default(),
        ));
        let (router, _events) = routed(&requests);
        let mut outbox = router.take_outbox().expect("the link's to take");
        for n in 0..MAX_HELD + 2 {
            router
                .dispatch(
                    json!({"jsonrpc": "2.0", "id": n, "method": "sampling/createMessage",
                           "params": {"maxTokens": 5, "messages": []}}),
                    None,
                )
                .await;
        }
        // Past the cap they are not judged (no approval opened, no approver told)...
        assert_eq!(judge.0.load(Ordering::SeqCst), MAX_HELD);
        // ...and the server hears so at once.
        for n in MAX_HELD..MAX_HELD + 2 {
            let answer = outbox.try_recv().expect("refused at once");
            assert_eq!(answer["id"], n);
            assert_eq!(answer["error"]["code"], jsonrpc::code::NEEDS_APPROVAL);
        }
    }

    /// Dispatches a `sampling/createMessage` of id `id` the server sends, held by `requests`'
    /// judge (a [`Holder`]).
    async fn ask(router: &Arc<Router>, id: Value) {
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "id": id, "method": "sampling/createMessage",
                       "params": {"maxTokens": 5, "messages": []}}),
                None,
            )
            .await;
        assert_eq!(router.held(), 1, "held");
    }

    #[tokio::test]
    async fn a_held_server_request_is_withdrawn_when_its_session_ends_and_the_server_told() {
        for (server_failed, why) in [
            (false, Withdrawn::SessionEnded),
            (true, Withdrawn::ServerGone),
        ] {
            let (_release, requests) = held();
            let (router, mut events) = routed(&requests);
            let mut outbox = router.take_outbox().expect("the link's to take");
            ask(&router, json!("s-1")).await;
            router.end_all("the session ended", server_failed);
            let answer = tokio::time::timeout(Duration::from_secs(1), outbox.recv())
                .await
                .expect("the server is answered")
                .expect("an answer");
            assert_eq!(answer["id"], "s-1");
            assert_eq!(answer["error"]["message"], why.why());
            assert!(events.try_recv().is_err(), "never reaches the agent");
            tokio::task::yield_now().await;
            assert_eq!(router.held(), 0, "no longer counted");
        }
    }

    #[tokio::test]
    async fn held_server_requests_are_withdrawn_when_warden_stops_and_counted_until_they_are() {
        let stopping = Stopping::default();
        let (_release, requests) = held_until(&stopping);
        let (router, mut events) = routed(&requests);
        let mut outbox = router.take_outbox().expect("the link's to take");
        ask(&router, json!("s-1")).await;
        assert!(
            !stopping.settled(Duration::from_millis(20)).await,
            "counted while held"
        );
        stopping.stop();
        assert!(stopping.settled(Duration::from_secs(1)).await, "withdrawn");
        let answer = outbox.try_recv().expect("the server is answered first");
        assert_eq!(answer["id"], "s-1");
        assert_eq!(answer["error"]["message"], Withdrawn::Stopping.why());
        assert!(events.try_recv().is_err(), "never reaches the agent");
        // One held while Warden stops is withdrawn at once.
        let (_release, requests) = held_until(&stopping);
        let (router, _events) = routed(&requests);
        let mut outbox = router.take_outbox().expect("the link's to take");
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "id": "s-2", "method": "sampling/createMessage",
                       "params": {"maxTokens": 5, "messages": []}}),
                None,
            )
            .await;
        assert!(stopping.settled(Duration::from_secs(1)).await, "withdrawn");
        assert_eq!(outbox.try_recv().expect("answered")["id"], "s-2");
    }

    #[tokio::test]
    async fn a_held_server_request_the_server_cancels_is_withdrawn_unanswered_and_unseen() {
        let (_release, requests) = held();
        let (router, mut events) = routed(&requests);
        let mut outbox = router.take_outbox().expect("the link's to take");
        ask(&router, json!(12)).await;
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": 12, "reason": "timeout"}}),
                None,
            )
            .await;
        tokio::time::timeout(Duration::from_secs(1), async {
            while router.held() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("withdrawn");
        assert!(
            outbox.try_recv().is_err(),
            "a cancelled request is not answered"
        );
        assert!(
            events.try_recv().is_err(),
            "the agent never saw it nor its cancel"
        );
        // A cancel of what does not wait (the agent has it) still reaches the agent.
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                       "params": {"requestId": 13}}),
                None,
            )
            .await;
        assert!(events.try_recv().is_ok());
    }

    #[tokio::test]
    async fn a_task_status_reaches_the_agent_only_for_a_task_of_its_session_on_that_server() {
        let tasks = Arc::new(Tasks::default());
        let task = |server: &str| crate::mcp::Task {
            server: Arc::from(server),
            resource: crate::action::Resource::Tool {
                server: Arc::from(server),
                name: "research".into(),
            },
            agent: Arc::from("alice"),
            decision_id: Arc::from("d1"),
            kept: None,
        };
        tasks
            .reserve()
            .unwrap()
            .hold("mine", task("files"), None)
            .unwrap();
        tasks
            .reserve()
            .unwrap()
            .hold("theirs", task("other"), None)
            .unwrap();
        let (events_tx, mut events) = mpsc::channel(8);
        let router = Arc::new(
            Router::new(Arc::from("files"), events_tx, Arc::default(), breaker())
                .with_tasks(Arc::clone(&tasks)),
        );
        let status = |id: &str| {
            json!({"jsonrpc": "2.0", "method": "notifications/tasks/status",
                   "params": {"taskId": id, "status": "working"}})
        };
        router.dispatch(status("mine"), None).await;
        assert_eq!(
            events.try_recv().expect("relayed")["params"]["taskId"],
            "mine"
        );
        // Another server's task, an unknown one, and one forgotten with its session: dropped.
        router.dispatch(status("theirs"), None).await;
        router.dispatch(status("unknown"), None).await;
        tasks.forget_all();
        router.dispatch(status("mine"), None).await;
        assert!(events.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_server_request_after_the_agent_session_ended_is_refused_unjudged() {
        let (events_tx, mut events) = mpsc::channel(8);
        let judge = Arc::new(Refuser);
        let requests = Arc::new(ServerRequests::judged_by(judge, &Stopping::default()));
        let router = Arc::new(Router::new(
            Arc::from("ended"),
            events_tx,
            requests,
            breaker(),
        ));
        let mut outbox = router.take_outbox().expect("the link's to take");
        let refused = REFUSED.with_label_values(&["ended", "ended"]);
        let denied = DENIED.with_label_values(&["ended"]);
        let (refused_before, denied_before) = (refused.get(), denied.get());
        router.state.send_replace(State::Closed);
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage",
                       "params": {"maxTokens": 5, "messages": []}}),
                None,
            )
            .await;
        assert!(events.try_recv().is_err(), "nobody is asked");
        let answer = outbox.try_recv().expect("the server is answered at once");
        assert_eq!(answer["id"], 9);
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("session with this server has ended")),
            "{answer}"
        );
        assert_eq!(refused.get(), refused_before + 1);
        assert_eq!(
            denied.get(),
            denied_before,
            "never judged: the Refuser's denial would count"
        );
    }

    #[tokio::test]
    async fn a_judged_refusal_is_counted_against_the_server() {
        let requests = Arc::new(ServerRequests::judged_by(
            Arc::new(Refuser),
            &Stopping::default(),
        ));
        let (router, _events) = routed(&requests);
        let _outbox = router.take_outbox();
        let denied = DENIED.with_label_values(&["files"]);
        let before = denied.get();
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list"}),
                None,
            )
            .await;
        assert!(denied.get() > before);
    }

    #[tokio::test]
    async fn a_server_asking_past_its_rate_is_refused_before_it_is_judged_and_counted() {
        let (events_tx, mut events) = mpsc::channel(8);
        let router = Arc::new(
            Router::new(Arc::from("rated"), events_tx, Arc::default(), breaker()).asking_at_most(2),
        );
        let mut outbox = router.take_outbox().expect("the link's to take");
        let refused = REFUSED.with_label_values(&["rated", "rate"]);
        let before = refused.get();
        for n in 0..3 {
            router
                .dispatch(
                    json!({"jsonrpc": "2.0", "id": n, "method": "roots/list"}),
                    None,
                )
                .await;
        }
        for n in 0..2 {
            assert_eq!(
                events.try_recv().expect("within its rate")["id"],
                "warden-".to_owned() + &n.to_string()
            );
        }
        assert!(
            events.try_recv().is_err(),
            "the third never reaches the agent"
        );
        let answer = outbox.try_recv().expect("the server is answered at once");
        assert_eq!(answer["id"], 2);
        assert_eq!(answer["error"]["code"], jsonrpc::code::NEEDS_APPROVAL);
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("requests_to_agent_per_minute")),
            "{answer}"
        );
        assert_eq!(refused.get(), before + 1);
    }

    #[tokio::test]
    async fn a_held_server_request_refused_once_settled_is_answered_to_the_server_only() {
        let (release, requests) = held();
        let (router, mut events) = routed(&requests);
        let mut outbox = router.take_outbox().expect("the link's to take");
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "id": 3, "method": "elicitation/create", "params": {}}),
                None,
            )
            .await;
        let denied = jsonrpc::error(
            &json!(3),
            jsonrpc::code::DENIED,
            "approval apr_1 was denied",
        );
        release.send(Verdict::Refuse(denied)).ok().expect("held");
        let answer = tokio::time::timeout(Duration::from_secs(1), outbox.recv())
            .await
            .expect("answered")
            .expect("an answer");
        assert_eq!(answer["id"], 3);
        assert_eq!(answer["error"]["code"], jsonrpc::code::DENIED);
        assert!(events.try_recv().is_err(), "never reaches the agent");
    }

    #[tokio::test]
    async fn what_a_server_sends_the_agent_names_it_and_cannot_speak_for_warden() {
        let (router, mut events) = routed(&Arc::default());
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "method": "notifications/message",
                       "params": {"level": "info", "data": "hi",
                                  "_meta": {"warden/approval": {"id": "apr_1"},
                                            "warden/server": "other", "io.example/x": 1}}}),
                None,
            )
            .await;
        let note = events.try_recv().expect("relayed");
        assert_eq!(
            note["params"]["_meta"],
            json!({"warden/server": "files", "io.example/x": 1})
        );
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "id": 1, "method": "roots/list",
                       "params": {"_meta": {"warden/approval": {"id": "apr_1"}}}}),
                None,
            )
            .await;
        let asked = events.try_recv().expect("relayed unjudged without a judge");
        assert_eq!(asked["params"]["_meta"], json!({"warden/server": "files"}));
    }

    #[tokio::test]
    async fn what_a_server_asks_while_warden_lists_its_tools_reaches_the_sessions_stream() {
        let requests = Arc::new(ServerRequests::default());
        let (router, mut events) = routed(&requests);
        // Warden's own tools/list, whose progress nobody reads.
        let mut call = router.register(2, None);
        router.own(2);
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "id": "s-1", "method": "roots/list"}),
                Some(2),
            )
            .await;
        // A stdio server's request, attributed to the latest request in flight.
        router
            .dispatch(
                json!({"jsonrpc": "2.0", "id": "s-2", "method": "roots/list"}),
                None,
            )
            .await;
        assert!(
            call.progress.try_recv().is_err(),
            "not left with Warden's call"
        );
        for (ours, theirs) in [("warden-0", "s-1"), ("warden-1", "s-2")] {
            let asked = events.try_recv().expect("on the session's stream");
            assert_eq!(asked["id"], ours);
            let asked_for = requests.take(&Id::Str(ours.into())).expect("remembered");
            assert_eq!(asked_for.id, json!(theirs), "the answer finds its way back");
        }
    }

    #[tokio::test]
    async fn a_cancelled_call_ends_without_a_response_and_its_late_answer_is_dropped() {
        let (router, mut events) = routed(&Arc::default());
        let mut call = router.register(4, Some(token_key(&json!(9))));
        router.abandon(4);
        assert!(call.done.try_recv().is_err(), "no response");
        assert!(call.progress.recv().await.is_none(), "no more progress");
        router
            .dispatch(json!({"jsonrpc": "2.0", "id": 4, "result": {}}), None)
            .await;
        assert!(events.try_recv().is_err(), "the late answer goes nowhere");
    }

    #[tokio::test]
    async fn a_server_going_away_fails_its_calls_with_a_jsonrpc_error() {
        let (events_tx, _events) = mpsc::channel(8);
        let router = Arc::new(Router::new(
            Arc::from("files"),
            events_tx,
            Arc::default(),
            breaker(),
        ));
        let mut call = router.register(3, None);
        router.end_all("the MCP server exited", true);
        let answer = call.done.try_recv().expect("an answer");
        assert_eq!(answer.message["id"], 3);
        assert_eq!(answer.message["error"]["code"], jsonrpc::code::UPSTREAM);
        assert!(
            answer.server_failed,
            "Warden's error, not the server's answer"
        );
    }

    #[tokio::test]
    async fn a_jsonrpc_error_the_server_sends_is_an_answer_not_a_failure() {
        let (events_tx, _events) = mpsc::channel(8);
        let router = Arc::new(Router::new(
            Arc::from("files"),
            events_tx,
            Arc::default(),
            breaker(),
        ));
        let mut call = router.register(5, None);
        router.dispatch(
            json!({"jsonrpc": "2.0", "id": 5, "error": {"code": -32602, "message": "bad params"}}),
            None,
        ).await;
        let answer = call.done.try_recv().expect("the server's error");
        assert_eq!(answer.message["error"]["code"], -32602);
        assert!(!answer.server_failed);
    }
}
