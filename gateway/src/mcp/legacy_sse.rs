//! Remote MCP servers over the legacy HTTP+SSE transport (MCP 2024-11-05): Warden opens the
//! server's event stream (GET `url`); its first event, `endpoint`, names where messages are
//! posted (a URI resolved against `url`; one on another origin is refused), and every message
//! of the server, responses included, arrives on that stream as a `message` event, routed by
//! the link like any other transport's. The upstream credential goes with the GET and every
//! POST (the agent's never). The stream is the session: when it ends or breaks, the requests in
//! flight fail and Warden connects again with backoff (`supervise.rs`) and initialises a new
//! session; a POST the server answers 404 (it forgot the session) makes Warden connect again
//! at once.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{StatusCode, header};
use reqwest::Url;
use serde_json::{Map, Value};
use tokio::sync::{Notify, oneshot, watch};

use super::endpoint::RemoteServer;
use super::error::LinkError;
use super::remote::{self, describe};
use super::router::{Router, State, closed as link_closed, handshake};
use super::supervise::{self, Connection, Exit, Up};
use crate::text::Quoted;

/// The longest a POST may wait for the server's `202 Accepted` (the answer itself comes on
/// the stream).
const POST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends messages to a remote server over the legacy transport.
pub struct LegacySseTransport {
    inner: Arc<Inner>,
}

/// What the transport and its connection share.
struct Inner {
    remote: Arc<RemoteServer>,
    router: Arc<Router>,
    client: reqwest::Client,
    /// Where messages go while the session is up (`None` while connecting).
    endpoint: Mutex<Option<Url>>,
    /// Asks the connection to start over (the server forgot the session).
    restart: Notify,
}

impl LegacySseTransport {
    /// Opens the server's event stream and initialises a session; later losses of the stream
    /// are reconnections, a failure of this first one is an error.
    pub async fn start(
        remote: &Arc<RemoteServer>,
        router: &Arc<Router>,
        next_id: &Arc<AtomicI64>,
        init: Map<String, Value>,
        client: reqwest::Client,
        timeout: Duration,
    ) -> Result<LegacySseTransport, LinkError> {
        let url = Url::parse(&remote.url).map_err(|e| LinkError::Handshake {
            server: router.server.to_string(),
            reason: format!("the url is not valid: {e}"),
        })?;
        let inner = Arc::new(Inner {
            remote: Arc::clone(remote),
            router: Arc::clone(router),
            client,
            endpoint: Mutex::new(None),
            restart: Notify::new(),
        });
        let stream = EventStream {
            inner: Arc::clone(&inner),
            url,
            next_id: Arc::clone(next_id),
            init,
            timeout,
        };
        supervise::start(stream, router).await?;
        Ok(LegacySseTransport { inner })
    }

    /// Posts `message` to the session's endpoint.
    pub async fn send(&self, message: Value) -> Result<(), LinkError> {
        let endpoint = self.inner.lock_endpoint().clone();
        let Some(endpoint) = endpoint else {
            return Err(LinkError::Down {
                server: self.inner.router.server.to_string(),
            });
        };
        match self.inner.post(&endpoint, &message).await {
            Err(Posted::Expired) => {
                tracing::info!(server = %self.inner.router.server, "the MCP server forgot the session; connecting again");
                self.inner.restart.notify_waiters();
                Err(self
                    .inner
                    .http_error("the server forgot the session; Warden is connecting again".into()))
            }
            Err(Posted::Failed(e)) => Err(e),
            Ok(()) => Ok(()),
        }
    }
}

/// Why a POST did not go through.
enum Posted {
    /// The server no longer knows the session (404).
    Expired,
    Failed(LinkError),
}

impl Inner {
    fn lock_endpoint(&self) -> std::sync::MutexGuard<'_, Option<Url>> {
        self.endpoint.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn http_error(&self, reason: String) -> LinkError {
        LinkError::Http {
            server: self.router.server.to_string(),
            reason,
        }
    }

    /// A request with the upstream credential.
    async fn request(
        &self,
        method: reqwest::Method,
        url: &Url,
    ) -> Result<reqwest::RequestBuilder, LinkError> {
        let credential = remote::credential(&self.remote, &self.router).await?;
        let request = self.client.request(method, url.clone());
        Ok(remote::with_credential(request, credential))
    }

    /// Posts one message to `endpoint`; the server answers it on the stream.
    async fn post(&self, endpoint: &Url, message: &Value) -> Result<(), Posted> {
        let body = serde_json::to_vec(message).unwrap_or_default();
        let request = self
            .request(reqwest::Method::POST, endpoint)
            .await
            .map_err(Posted::Failed)?
            .header(header::CONTENT_TYPE, "application/json")
            .timeout(POST_TIMEOUT)
            .body(body);
        let response = request
            .send()
            .await
            .map_err(|e| Posted::Failed(self.http_error(describe(e))))?;
        match response.status() {
            StatusCode::NOT_FOUND => Err(Posted::Expired),
            s if s.is_success() => Ok(()),
            status => Err(Posted::Failed(LinkError::Status {
                server: self.router.server.to_string(),
                status,
            })),
        }
    }
}

/// The server's event stream for one upstream session, opened (and opened again) by the
/// supervisor.
struct EventStream {
    inner: Arc<Inner>,
    /// The event stream's URL.
    url: Url,
    next_id: Arc<AtomicI64>,
    init: Map<String, Value>,
    timeout: Duration,
}

impl Connection for EventStream {
    const LOST: &'static str = "the MCP server's event stream ended; Warden is connecting again";
    const LOG: &'static str = "MCP server's event stream ended; connecting again";

    /// Opens the stream, reads its endpoint, initialises a session over it, and reads the
    /// server's messages until the stream ends or the session does.
    async fn run_once(&mut self, up: &mut Up, closed: &mut watch::Receiver<State>) -> Exit {
        if *closed.borrow() == State::Closed {
            return Exit::Closed;
        }
        let request = match self.inner.request(reqwest::Method::GET, &self.url).await {
            Ok(r) => r.header(header::ACCEPT, "text/event-stream"),
            Err(e) => return Exit::Died(e.shown().into_owned()),
        };
        let response = tokio::select! {
            r = request.send() => r,
            _ = link_closed(closed) => return Exit::Closed,
        };
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                return Exit::Died(format!("the event stream was answered HTTP {}", r.status()));
            }
            Err(e) => return Exit::Died(describe(e)),
        };
        let (endpoint_tx, endpoint_rx) = oneshot::channel();
        let mut reader = tokio::spawn(read_stream(
            Arc::clone(&self.inner.router),
            response,
            self.url.clone(),
            endpoint_tx,
        ));
        let exit = self.serve(up, closed, &mut reader, endpoint_rx).await;
        reader.abort();
        *self.inner.lock_endpoint() = None;
        exit
    }
}

impl EventStream {
    /// With the stream being read by `reader`: waits for the endpoint, initialises, and serves
    /// until the stream ends, the server forgets the session or the session ends.
    async fn serve(
        &self,
        up: &mut Up,
        closed: &mut watch::Receiver<State>,
        reader: &mut tokio::task::JoinHandle<String>,
        endpoint: oneshot::Receiver<Result<Url, EndpointError>>,
    ) -> Exit {
        let ended = |r: Result<String, tokio::task::JoinError>| {
            Exit::Died(r.unwrap_or_else(|e| format!("reading the event stream failed: {e}")))
        };
        let endpoint = tokio::select! {
            e = endpoint => match e {
                Ok(Ok(url)) => url,
                Ok(Err(e)) => return Exit::Died(e.to_string()),
                Err(_) => return Exit::Died("the event stream named no endpoint".into()),
            },
            r = &mut *reader => return ended(r),
            () = tokio::time::sleep(self.timeout) => {
                return Exit::Died(format!("no endpoint event within {} s", self.timeout.as_secs()));
            }
            _ = link_closed(closed) => return Exit::Closed,
        };
        let inner = &self.inner;
        let shake = handshake(
            &inner.router,
            &self.next_id,
            &self.init,
            self.timeout,
            |m, _| {
                let endpoint = endpoint.clone();
                async move {
                    inner.post(&endpoint, &m).await.map_err(|p| match p {
                        Posted::Expired => inner.http_error("the server answered 404".into()),
                        Posted::Failed(e) => e,
                    })
                }
            },
        );
        let shaken = tokio::select! {
            r = shake => r,
            r = &mut *reader => return ended(r),
            _ = link_closed(closed) => return Exit::Closed,
        };
        if let Err(reason) = shaken {
            return Exit::Died(reason);
        }
        *inner.lock_endpoint() = Some(endpoint);
        up.ready();
        tokio::select! {
            r = &mut *reader => ended(r),
            () = inner.restart.notified() => Exit::Died("the server forgot the session".into()),
            _ = link_closed(closed) => Exit::Closed,
        }
    }
}

/// Reads the server's event stream: its first `endpoint` event goes to `endpoint`, its
/// `message` events to the router. Returns why the stream ended.
async fn read_stream(
    router: Arc<Router>,
    mut response: reqwest::Response,
    url: Url,
    endpoint: oneshot::Sender<Result<Url, EndpointError>>,
) -> String {
    let mut endpoint = Some(endpoint);
    let mut events = remote::Events::of(&mut response);
    loop {
        let (event, data) = match events.next().await {
            Ok(Some(event)) => event,
            Ok(None) => return "the event stream ended".into(),
            Err(e) => return format!("the event stream broke: {e}"),
        };
        match &event[..] {
            b"endpoint" => match endpoint.take() {
                Some(tx) => {
                    let _ = tx.send(resolve_endpoint(&url, &data));
                }
                None => {
                    tracing::info!(server = %router.server, "MCP server named a second endpoint; ignored")
                }
            },
            b"" | b"message" => remote::dispatch_event(&router, &data, None).await,
            _ => {}
        }
    }
}

/// Why an `endpoint` event cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a URI reference.
    #[error("the endpoint event does not hold a URI: {0}")]
    Invalid(Quoted),
    /// A URI on another origin than the event stream's: messages would leave for elsewhere.
    #[error(
        "the endpoint event names another origin ({found}) than the event stream's ({expected}); refused"
    )]
    OtherOrigin { found: Quoted, expected: String },
}

/// The URL an `endpoint` event's data names, resolved against the event stream's `url`;
/// refused when it is on another origin (scheme, host and port).
pub fn resolve_endpoint(url: &Url, data: &[u8]) -> Result<Url, EndpointError> {
    let text = std::str::from_utf8(data)
        .map(str::trim)
        .map_err(|_| EndpointError::Invalid(Quoted::of(&String::from_utf8_lossy(data))))?;
    if text.is_empty() {
        return Err(EndpointError::Invalid(Quoted::of(text)));
    }
    let mut endpoint = url
        .join(text)
        .map_err(|_| EndpointError::Invalid(Quoted::of(text)))?;
    endpoint.set_fragment(None);
    if endpoint.origin() != url.origin() {
        return Err(EndpointError::OtherOrigin {
            found: Quoted::of(&endpoint.origin().ascii_serialization()),
            expected: url.origin().ascii_serialization(),
        });
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse() -> Url {
        Url::parse("https://mcp.example.test:8443/v1/sse?tenant=a").unwrap()
    }

    #[test]
    fn relative_endpoints_resolve_against_the_stream_url() {
        // The TypeScript SDK's form (an absolute path), the Python SDK's, and a relative path.
        let cases = [
            (
                "/message?sessionId=6f1c",
                "https://mcp.example.test:8443/message?sessionId=6f1c",
            ),
            (
                "/messages/?session_id=ab12",
                "https://mcp.example.test:8443/messages/?session_id=ab12",
            ),
            (
                "messages?session_id=1",
                "https://mcp.example.test:8443/v1/messages?session_id=1",
            ),
            (
                " https://mcp.example.test:8443/post#frag \r",
                "https://mcp.example.test:8443/post",
            ),
        ];
        for (data, expected) in cases {
            let url = resolve_endpoint(&sse(), data.as_bytes()).expect(data);
            assert_eq!(url.as_str(), expected, "{data}");
        }
    }

    #[test]
    fn an_endpoint_on_another_origin_is_refused() {
        for data in [
            "https://evil.example/messages",
            "//evil.example/messages",
            "http://mcp.example.test:8443/messages",
            "https://mcp.example.test/messages",
            "javascript:alert(1)",
        ] {
            let e = resolve_endpoint(&sse(), data.as_bytes()).expect_err(data);
            assert!(
                matches!(e, EndpointError::OtherOrigin { .. }),
                "{data}: {e}"
            );
            assert!(
                e.to_string().contains("https://mcp.example.test:8443"),
                "{e}"
            );
        }
        // A default port written out is the same origin.
        let plain = Url::parse("http://127.0.0.1/sse").unwrap();
        assert!(resolve_endpoint(&plain, b"http://127.0.0.1:80/m").is_ok());
    }

    #[test]
    fn an_endpoint_that_is_no_uri_is_refused() {
        for data in [&b""[..], b"   ", b"http://[::1", b"\xff\xfe"] {
            let e = resolve_endpoint(&sse(), data).expect_err("refused");
            assert!(matches!(e, EndpointError::Invalid(_)), "{e}");
        }
    }

    #[tokio::test]
    async fn the_endpoint_and_messages_of_a_stream_are_told_apart() {
        // A legacy server's stream as the TypeScript SDK writes it.
        let body = "event: endpoint\ndata: /message?sessionId=s1\n\n: ping\n\n\
                    event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n";
        let (events_tx, mut events) = tokio::sync::mpsc::channel(8);
        let breaker = Arc::new(crate::upstream::breaker::BreakerSlot::new(
            crate::upstream::breaker::Breaker::new(
                Arc::from("mcp:old"),
                crate::upstream::breaker::BreakerConfig::default(),
                crate::upstream::breaker::BreakerMetrics::new(),
            ),
        ));
        let router = Arc::new(Router::new(
            Arc::from("old"),
            events_tx,
            Arc::default(),
            breaker,
        ));
        let response = http::Response::new(body.to_owned());
        let (tx, rx) = oneshot::channel();
        let ended = read_stream(
            Arc::clone(&router),
            reqwest::Response::from(response),
            sse(),
            tx,
        )
        .await;
        assert_eq!(ended, "the event stream ended");
        let endpoint = rx.await.unwrap().unwrap();
        assert_eq!(
            endpoint.as_str(),
            "https://mcp.example.test:8443/message?sessionId=s1"
        );
        let message = events.try_recv().expect("the notification");
        assert_eq!(message["method"], "notifications/message");
    }
}
