//! One upstream session: Warden's connection to one MCP server on behalf of one agent
//! session. Warden numbers its own requests to the server (the agent's ids never reach it, so
//! ids of two servers or two agents never collide), routes what the server sends back (a
//! response and the progress of a request to that request; requests and notifications of
//! the server to the agent session), and gives the server's requests to the agent under ids
//! of Warden's (`warden-<n>`), remembered until the agent answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};

use super::endpoint::{Server, ServerKind};
use super::error::LinkError;
use super::legacy_sse::LegacySseTransport;
use super::router::{Call, Events, Router, State, closed, token_key};
use super::server_requests::ServerRequests;
use super::stdio::StdioTransport;
use super::streamable_http::HttpTransport;
use super::tasks::Tasks;
use crate::protocol::mcp::jsonrpc::{self, Message};
use crate::upstream::breaker::{Admitted, BreakerSlot, CircuitOpen};

/// How messages reach the server.
enum Transport {
    Stdio(StdioTransport),
    Http(HttpTransport),
    LegacySse(LegacySseTransport),
}

impl Transport {
    /// Sends `message` (request `id`, when it is one) to the server.
    async fn send(&self, message: Value, id: Option<i64>) -> Result<(), LinkError> {
        match self {
            Transport::Stdio(t) => t.send(message).await,
            Transport::Http(t) => t.send(message, id).await,
            Transport::LegacySse(t) => t.send(message).await,
        }
    }
}

/// Sends the server Warden's own answers to its requests (the refused ones) until the link
/// closes.
async fn answer_server(
    transport: Arc<Transport>,
    mut outbox: tokio::sync::mpsc::Receiver<Value>,
    mut state: tokio::sync::watch::Receiver<State>,
) {
    loop {
        tokio::select! {
            answer = outbox.recv() => match answer {
                Some(answer) => {
                    if let Err(e) = transport.send(answer, None).await {
                        tracing::info!(error = %e, "Warden's answer to an MCP server's request could not be sent");
                    }
                }
                None => return,
            },
            () = closed(&mut state) => return,
        }
    }
}

/// Warden's session with one server for one agent session.
pub struct Link {
    pub router: Arc<Router>,
    next_id: Arc<AtomicI64>,
    transport: Arc<Transport>,
    timeout: Duration,
}

impl Link {
    /// Starts (or reaches) `server` and initialises a session with it, announcing the agent's
    /// `client` (the agent's `initialize` params: capabilities, client info, revision). The
    /// caller asked `breaker` (the server's) first; a restart of the server later asks it
    /// itself. The server's status notifications reach the agent for the session's `tasks`
    /// only. A local server's sandboxed process with `network: egress` has its egress served
    /// by `egress` (the agent session's).
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        server: &Arc<Server>,
        client: &Map<String, Value>,
        events: Events,
        requests: Arc<ServerRequests>,
        tasks: Arc<Tasks>,
        http: &reqwest::Client,
        timeout: Duration,
        breaker: Arc<BreakerSlot>,
        egress: Option<Arc<dyn super::sandbox::ServeEgress>>,
    ) -> Result<Link, LinkError> {
        let router = Arc::new(
            Router::new(Arc::clone(&server.name), events, requests, breaker)
                .asking_at_most(server.requests_to_agent_per_minute)
                .with_tasks(tasks),
        );
        let next_id = Arc::new(AtomicI64::new(0));
        let init = initialize_params(client);
        let transport = match &server.kind {
            ServerKind::Stdio(command) => Transport::Stdio(
                StdioTransport::start(command, &router, &next_id, init, timeout, egress).await?,
            ),
            ServerKind::Http(remote) => Transport::Http(
                HttpTransport::start(remote, &router, &next_id, init, http.clone(), timeout)
                    .await?,
            ),
            ServerKind::LegacySse(remote) => Transport::LegacySse(
                LegacySseTransport::start(remote, &router, &next_id, init, http.clone(), timeout)
                    .await?,
            ),
        };
        let transport = Arc::new(transport);
        if let Some(outbox) = router.take_outbox() {
            tokio::spawn(answer_server(
                Arc::clone(&transport),
                outbox,
                router.state.subscribe(),
            ));
        }
        Ok(Link {
            router,
            next_id,
            transport,
            timeout,
        })
    }

    /// The server's `initialize` result.
    pub fn initialized(&self) -> Option<Value> {
        self.router
            .initialized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Once the server is ready, gives a request with `params` an id of Warden's and
    /// registers it: its progress and response will come back on the [`Call`]. Send it with
    /// [`Link::send_call`].
    pub async fn prepare(&self, params: &Map<String, Value>) -> Result<Call, LinkError> {
        self.ready().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let token = params
            .get("_meta")
            .and_then(|m| m.get("progressToken"))
            .map(token_key);
        Ok(self.router.register(id, token))
    }

    /// Sends the request of `call`: `method` with `params`. When it cannot be sent, the call
    /// also ends with a JSON-RPC error.
    pub async fn send_call(
        &self,
        call: &Call,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<(), LinkError> {
        let id = call.upstream_id;
        let message = jsonrpc::request(Some(&Value::from(id)), method, Value::Object(params));
        let sent = self.send(message, Some(id)).await;
        if let Err(e) = &sent {
            self.router.end(id, &e.shown(), e.server_failed());
        }
        sent
    }

    /// Lets a request through the server's circuit breaker, or says it is open.
    pub fn admit(&self) -> Result<Admitted, CircuitOpen> {
        self.router.breaker.admit()
    }

    /// Sends `method` and waits for its result (Warden's own requests: lists), through the
    /// server's circuit breaker, which counts how it went.
    pub async fn request(
        &self,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<Value, LinkError> {
        let admitted = self.admit().map_err(LinkError::CircuitOpen)?;
        let result = self.request_admitted(method, params).await;
        match &result {
            Ok(_) => admitted.succeeded(),
            Err(e) => {
                if e.server_failed() {
                    admitted.failed();
                }
            }
        }
        result
    }

    async fn request_admitted(
        &self,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<Value, LinkError> {
        let call = self.prepare(&params).await?;
        self.router.own(call.upstream_id);
        self.send_call(&call, method, params).await?;
        let server = self.router.server.to_string();
        match tokio::time::timeout(self.timeout, call.done).await {
            Ok(Ok(answer)) if answer.server_failed => Err(LinkError::Failed {
                server,
                reason: answer
                    .message
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("no answer")
                    .to_owned(),
            }),
            Ok(Ok(answer)) => Ok(answer.message),
            Ok(Err(_)) => Err(LinkError::Closed { server }),
            Err(_) => {
                self.router.fail(call.upstream_id, "timed out");
                Err(LinkError::Timeout {
                    server,
                    seconds: self.timeout.as_secs(),
                })
            }
        }
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Map<String, Value>) -> Result<(), LinkError> {
        self.ready().await?;
        self.send(jsonrpc::request(None, method, Value::Object(params)), None)
            .await
    }

    /// Sends the agent's answer to one of the server's requests, under the server's own id.
    pub async fn answer(&self, mut message: Message, id: Value) -> Result<(), LinkError> {
        self.ready().await?;
        message.body.insert("id".into(), id);
        self.send(message.into_value(), None).await
    }

    /// Ends the upstream session (stops the process; ends the remote session).
    pub fn close(&self) {
        self.router.state.send_replace(State::Closed);
        self.router.end_all("the session ended", false);
        if let Transport::Http(http) = &*self.transport {
            http.close();
        }
    }

    async fn send(&self, message: Value, id: Option<i64>) -> Result<(), LinkError> {
        self.transport.send(message, id).await
    }

    /// Waits until the server is ready (it may be restarting), at most the request timeout.
    async fn ready(&self) -> Result<(), LinkError> {
        let mut state = self.router.state.subscribe();
        let server = self.router.server.to_string();
        let wait = async {
            state
                .wait_for(|s| *s != State::Starting)
                .await
                .map(|s| s.clone())
        };
        match tokio::time::timeout(self.timeout.min(Duration::from_secs(30)), wait).await {
            Ok(Ok(State::Ready)) => Ok(()),
            Ok(_) => Err(LinkError::Closed { server }),
            Err(_) => Err(LinkError::Down { server }),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.close();
    }
}

/// The `initialize` params Warden sends a server: the agent's own (its revision,
/// capabilities and client info), so that the server offers what the agent can take.
fn initialize_params(client: &Map<String, Value>) -> Map<String, Value> {
    let mut params = Map::new();
    for key in ["protocolVersion", "capabilities", "clientInfo"] {
        if let Some(v) = client.get(key) {
            params.insert(key.into(), v.clone());
        }
    }
    let capabilities = params
        .entry("capabilities")
        .or_insert_with(|| Value::Object(Map::new()));
    // Warden relays tasks one way only, the agent's `tools/call` run as a task by a server: a
    // server's request run as a task by the agent (and the server's `tasks/get` and the rest
    // to the agent) is refused, so a server is not told the agent runs its requests as tasks.
    // (The newer tasks extension, `io.modelcontextprotocol/tasks`, is not relayed at all.)
    if let Some(capabilities) = capabilities.as_object_mut() {
        capabilities.remove("tasks");
        if let Some(Value::Object(extensions)) = capabilities.get_mut("extensions") {
            extensions.remove("io.modelcontextprotocol/tasks");
        }
    }
    params.entry("clientInfo").or_insert_with(
        || serde_json::json!({"name": "warden", "version": env!("CARGO_PKG_VERSION")}),
    );
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_not_told_the_agent_takes_tasks() {
        let client = serde_json::json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {
                "sampling": {},
                "tasks": {"requests": {"sampling": {"createMessage": {}}}},
                "extensions": {"io.modelcontextprotocol/tasks": {}, "io.example/x": {}}
            },
            "clientInfo": {"name": "agent", "version": "1"}
        });
        let params = initialize_params(client.as_object().unwrap());
        assert_eq!(
            params["capabilities"],
            serde_json::json!({"sampling": {}, "extensions": {"io.example/x": {}}})
        );
        assert_eq!(params["clientInfo"]["name"], "agent");
    }
}
