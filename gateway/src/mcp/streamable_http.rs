//! Remote MCP servers over Streamable HTTP: each message is a POST; a request's answer is JSON
//! or an event stream carrying the server's progress and requests before the response. The
//! server's session id (`Mcp-Session-Id`) and revision (`MCP-Protocol-Version`) go with every
//! later message, the upstream credential from the server's credential provider too (the
//! agent's never: Warden builds these requests itself). A session the server forgot (404) is
//! initialised again and the message sent once more. A GET stream carries the server's own
//! messages when it offers one.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode, header};
use serde_json::{Map, Value};

use super::endpoint::RemoteServer;
use super::error::LinkError;
use super::remote::{self, describe};
use super::router::{Router, State, closed as link_closed, handshake};
use crate::secrets::Placed;

/// `Mcp-Session-Id`.
pub const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// `MCP-Protocol-Version`.
pub const VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Sends messages to a remote server.
pub struct HttpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    remote: Arc<RemoteServer>,
    router: Arc<Router>,
    next_id: Arc<AtomicI64>,
    client: reqwest::Client,
    init: Map<String, Value>,
    timeout: Duration,
    session: Mutex<Option<HeaderValue>>,
    version: Mutex<Option<HeaderValue>>,
    reinit: tokio::sync::Mutex<()>,
}

impl HttpTransport {
    /// Initialises a session with the server and opens its GET stream.
    pub async fn start(
        remote: &Arc<RemoteServer>,
        router: &Arc<Router>,
        next_id: &Arc<AtomicI64>,
        init: Map<String, Value>,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Result<HttpTransport, LinkError> {
        let inner = Arc::new(Inner {
            remote: Arc::clone(remote),
            router: Arc::clone(router),
            next_id: Arc::clone(next_id),
            client,
            init,
            timeout,
            session: Mutex::new(None),
            version: Mutex::new(None),
            reinit: tokio::sync::Mutex::new(()),
        });
        inner
            .initialise()
            .await
            .map_err(|reason| LinkError::Handshake {
                server: router.server.to_string(),
                reason,
            })?;
        router.state.send_replace(State::Ready);
        tokio::spawn(Arc::clone(&inner).listen());
        Ok(HttpTransport { inner })
    }

    /// Posts `message` (request `id`, when it is one).
    pub async fn send(&self, message: Value, id: Option<i64>) -> Result<(), LinkError> {
        match self.inner.post(&message, id).await {
            Err(Posted::Expired) => {
                self.inner.reinitialise().await?;
                self.inner
                    .post(&message, id)
                    .await
                    .map_err(|p| p.into_error(&self.inner))
            }
            other => other.map_err(|p| p.into_error(&self.inner)),
        }
    }

    /// Ends the server's session (best effort).
    pub fn close(&self) {
        let inner = Arc::clone(&self.inner);
        let Some(session) = inner.lock_session().take() else {
            return;
        };
        tokio::spawn(async move {
            let request = inner
                .client
                .delete(&inner.remote.url)
                .header(SESSION_HEADER, session);
            let request = match inner.credential().await {
                Ok(credential) => remote::with_credential(request, credential),
                Err(_) => request,
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), request.send()).await;
        });
    }
}

/// How long an answer stream is read on after it carried its response: the server's trailing
/// notifications in that time are still relayed.
pub(super) const TRAILING_GRACE: Duration = Duration::from_secs(2);

/// How often a reader checks whether the response it reads for was dispatched.
const SETTLED_POLL: Duration = Duration::from_millis(100);

/// Resolves when the answer to request `id` need be read no longer: [`TRAILING_GRACE`] after
/// its response was dispatched (or the caller stopped waiting), or at `deadline` (the
/// request timeout); what the request is then failed with, if it still waits.
async fn answered(
    router: &Router,
    id: Option<i64>,
    deadline: tokio::time::Instant,
) -> &'static str {
    loop {
        if id.is_none_or(|id| !router.waits_for(id)) {
            let end = (tokio::time::Instant::now() + TRAILING_GRACE).min(deadline);
            tokio::time::sleep_until(end).await;
            return "the server's answer ended without a response";
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return "the server did not answer within mcp.request_timeout";
        }
        tokio::time::sleep_until((now + SETTLED_POLL).min(deadline)).await;
    }
}

/// Why a POST did not go through.
enum Posted {
    /// The server no longer knows the session (404).
    Expired,
    Failed(LinkError),
}

impl Posted {
    fn into_error(self, inner: &Inner) -> LinkError {
        match self {
            Posted::Expired => LinkError::Http {
                server: inner.router.server.to_string(),
                reason: "the server forgot the session again".into(),
            },
            Posted::Failed(e) => e,
        }
    }
}

impl Inner {
    fn lock_session(&self) -> std::sync::MutexGuard<'_, Option<HeaderValue>> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn http_error(&self, reason: String) -> LinkError {
        LinkError::Http {
            server: self.router.server.to_string(),
            reason,
        }
    }

    /// The upstream credential, if the server takes one, as a header or a query parameter.
    async fn credential(&self) -> Result<Option<Placed>, LinkError> {
        remote::credential(&self.remote, &self.router).await
    }

    /// A request to the server with the session's headers and the upstream credential.
    async fn request(&self, method: reqwest::Method) -> Result<reqwest::RequestBuilder, LinkError> {
        let credential = self.credential().await?;
        let mut request = self.client.request(method, &self.remote.url);
        if let Some(session) = self.lock_session().clone() {
            request = request.header(SESSION_HEADER, session);
        }
        if let Some(version) = self
            .version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            request = request.header(VERSION_HEADER, version);
        }
        Ok(remote::with_credential(request, credential))
    }

    /// Posts one message; what the server answers is dispatched as it arrives.
    async fn post(self: &Arc<Self>, message: &Value, id: Option<i64>) -> Result<(), Posted> {
        let had_session = self.lock_session().is_some();
        let body = serde_json::to_vec(message).unwrap_or_default();
        let request = self
            .request(reqwest::Method::POST)
            .await
            .map_err(Posted::Failed)?
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(body);
        let response = request
            .send()
            .await
            .map_err(|e| Posted::Failed(self.http_error(describe(e))))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND && had_session {
            return Err(Posted::Expired);
        }
        if !status.is_success() {
            return Err(Posted::Failed(LinkError::Status {
                server: self.router.server.to_string(),
                status,
            }));
        }
        if let Some(session) = response.headers().get(&SESSION_HEADER) {
            *self.lock_session() = Some(session.clone());
        }
        if status == StatusCode::ACCEPTED || id.is_none() {
            return Ok(());
        }
        let event_stream = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let inner = Arc::clone(self);
        let mut closed = self.router.state.subscribe();
        let deadline = tokio::time::Instant::now() + self.timeout;
        tokio::spawn(async move {
            // The answer is read only while it can still matter: a server that keeps it
            // open (an event stream of comments, endless progress, a trickled body) holds
            // no connection or task past the response, the link's end, or the request
            // timeout.
            let why = tokio::select! {
                () = inner.read(response, event_stream, id) => "the server's answer ended without a response",
                () = link_closed(&mut closed) => "the session ended",
                why = answered(&inner.router, id, deadline) => why,
            };
            if let Some(id) = id {
                inner.router.fail(id, why);
            }
        });
        Ok(())
    }

    /// Dispatches the messages of one response body (JSON, or an event stream).
    async fn read(&self, mut response: reqwest::Response, event_stream: bool, during: Option<i64>) {
        if !event_stream {
            match remote::read_body(&mut response, remote::MAX_EVENT).await {
                Ok(body) => match serde_json::from_slice::<Value>(&body) {
                    Ok(Value::Array(items)) => {
                        for item in items {
                            self.router.dispatch(item, during).await;
                        }
                    }
                    Ok(value) => self.router.dispatch(value, during).await,
                    Err(e) => {
                        tracing::info!(server = %self.router.server, error = %e, "MCP server answered JSON Warden cannot read")
                    }
                },
                Err(e) => {
                    tracing::info!(server = %self.router.server, error = %e, "reading the MCP server's answer failed");
                    // The call fails saying why (a body too large, say).
                    if let Some(id) = during {
                        self.router.fail(id, &e);
                    }
                }
            }
            return;
        }
        let mut events = remote::Events::of(&mut response);
        loop {
            match events.next().await {
                Ok(Some((event, data))) => {
                    if event.is_empty() || event == b"message" {
                        remote::dispatch_event(&self.router, &data, during).await;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::info!(server = %self.router.server, error = %e, "the MCP server's event stream broke");
                    return;
                }
            }
        }
    }

    /// Runs `initialize` and remembers the revision the server chose.
    async fn initialise(self: &Arc<Self>) -> Result<(), String> {
        *self.lock_session() = None;
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let this = Arc::clone(self);
        handshake(
            &self.router,
            &self.next_id,
            &self.init,
            self.timeout,
            move |m, id| {
                let this = Arc::clone(&this);
                async move { this.post(&m, id).await.map_err(|p| p.into_error(&this)) }
            },
        )
        .await?;
        let version = self
            .router
            .initialized
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|r| r.get("protocolVersion"))
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok());
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = version;
        Ok(())
    }

    /// A new session after the server forgot ours (one at a time).
    async fn reinitialise(self: &Arc<Self>) -> Result<(), LinkError> {
        let _one = self.reinit.lock().await;
        tracing::info!(server = %self.router.server, "the MCP server forgot the session; initialising again");
        self.initialise()
            .await
            .map_err(|reason| LinkError::Handshake {
                server: self.router.server.to_string(),
                reason,
            })
    }

    /// Reads the server's GET stream while the session lasts, when the server offers one.
    async fn listen(self: Arc<Self>) {
        let mut closed = self.router.state.subscribe();
        let mut backoff = Duration::from_secs(1);
        loop {
            if *closed.borrow() == State::Closed {
                return;
            }
            let request = match self.request(reqwest::Method::GET).await {
                Ok(r) => r.header(header::ACCEPT, "text/event-stream"),
                Err(_) => return,
            };
            let response = tokio::select! {
                r = request.send() => r,
                _ = link_closed(&mut closed) => return,
            };
            match response {
                Ok(r) if r.status().is_success() => {
                    backoff = Duration::from_secs(1);
                    tokio::select! {
                        () = self.read(r, true, None) => {}
                        _ = link_closed(&mut closed) => return,
                    }
                }
                // 405: the server offers no GET stream.
                Ok(r) if r.status() == StatusCode::METHOD_NOT_ALLOWED => return,
                _ => {}
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = link_closed(&mut closed) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}
