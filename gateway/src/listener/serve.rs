//! The accept loop: TCP accept, TLS handshake, HTTP/1.1 or HTTP/2 serving, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::client_identity::client_identity;
use super::config::{ListenConfig, Listener};
use super::conn::ConnInfo;
use super::connection_cap::{ConnectionCap, Held, Slot};
use super::idle::{Activity, Guarded};
use super::preface_deadline::PrefaceDeadline;
use super::tls::ServerTls;

/// Longest a client may take to finish the TLS handshake, and (TLS or not) to send enough
/// bytes to tell HTTP/1 from HTTP/2.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest an HTTP/1 client may take to send a request's headers, idle keep-alive included.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Interval of HTTP/2 pings that detect dead peers, and how long a ping may go unanswered.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// Longest pause after a failing `accept` (e.g. out of file descriptors).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How a listener serves its connections, and what it takes besides ordinary requests.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// A connection with no request in flight this long is closed (HTTP/2 with a GOAWAY):
    /// `listen.idle_timeout`.
    pub idle_timeout: Duration,
    /// The most streams an HTTP/2 client may have open at once on one connection
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`): `listen.max_concurrent_streams`.
    pub max_concurrent_streams: u32,
    /// Advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL` and accept RFC 8441 extended `CONNECT`
    /// (a `:protocol` pseudo-header, read as `hyper::ext::Protocol`).
    pub extended_connect: bool,
    /// Work its requests hand off that outlives their connections (egress tunnels): each
    /// worker serving the listener gives it the shutdown grace and waits for it before it stops.
    pub detached: Option<super::detached::Detached>,
    /// Take a connection's slot once it is accepted, and close it at once when none is free,
    /// instead of waiting for a slot before accepting: a listener that is one of many sharing
    /// a cap (a local server's process's) then holds no slot while it waits.
    pub slot_after_accept: bool,
}

impl HttpOptions {
    /// Ordinary requests only, with these bounds.
    pub fn new(idle_timeout: Duration, max_concurrent_streams: u32) -> HttpOptions {
        HttpOptions {
            idle_timeout,
            max_concurrent_streams,
            extended_connect: false,
            detached: None,
            slot_after_accept: false,
        }
    }
}

impl HttpOptions {
    /// Ordinary requests only, with `listener`'s bounds as `listen` sets them
    /// (`listen.idle_timeout`, `listen.max_concurrent_streams`).
    pub fn of(listen: &ListenConfig, listener: Listener) -> HttpOptions {
        let (idle_timeout, max_concurrent_streams) = listen.http_bounds(listener);
        HttpOptions::new(idle_timeout, max_concurrent_streams)
    }
}

impl Default for HttpOptions {
    /// The proxy listener's defaults.
    fn default() -> Self {
        HttpOptions::of(&ListenConfig::default(), Listener::Proxy)
    }
}

/// [`serve_with`] with the default [`HttpOptions`].
pub async fn serve<H, F, B>(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    cap: ConnectionCap,
    handler: H,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    H: Fn(http::Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_with(
        listener,
        tls,
        HttpOptions::default(),
        cap,
        handler,
        shutdown,
        grace,
    )
    .await;
}

/// Accepts on `listener` and serves HTTP/1.1 and HTTP/2 until `shutdown` resolves.
///
/// Under TLS the protocol follows ALPN (`h2`, `http/1.1`); in plaintext HTTP/1.1 and HTTP/2
/// with prior knowledge are told apart by the first bytes. `handler` is called once per
/// request with the connection's [`ConnInfo`]; HTTP upgrades (`CONNECT`, WebSocket) work via
/// `hyper::upgrade::on`.
///
/// At most `cap` connections are open at once: at the cap the loop stops accepting (new
/// connections wait in the kernel's backlog) until one closes; with
/// `options.slot_after_accept`, it accepts and closes them at once instead. A connection's slot is held
/// by its socket, so a tunnel that keeps the socket after an upgrade still counts.
///
/// A connection with no request in flight for `options.idle_timeout` is closed gracefully
/// (HTTP/2: GOAWAY), and gives its slot back.
///
/// When `shutdown` resolves the listener is closed (new connections are refused), idle
/// connections are closed, and in-flight requests may finish; whatever still runs after
/// `grace` is dropped. Returns when every connection is gone. Upgraded connections are
/// detached from this accounting and end on their own.
pub async fn serve_with<H, F, B>(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    options: HttpOptions,
    cap: ConnectionCap,
    handler: H,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) where
    H: Fn(http::Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let http = Arc::new(http_builder(&options));
    let served = Served {
        http,
        cap: cap.clone(),
        idle_timeout: options.idle_timeout,
        closing: watch::Sender::new(false),
    };
    let mut connections = JoinSet::new();
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);

    let mut slot = None;
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = ended {
                    tracing::error!(%error, "a connection task failed");
                }
                continue;
            }
            taken = cap.slot(), if slot.is_none() && !options.slot_after_accept => {
                slot = Some(taken);
                continue;
            }
            accepted = listener.accept(), if slot.is_some() || options.slot_after_accept => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(error) if is_per_connection(&error) => {
                tracing::debug!(%error, "connection failed before it was accepted");
                continue;
            }
            Err(error) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                tracing::warn!(%error, ?backoff, "accept failed; pausing before the next accept");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
        }
        let slot = match slot.take() {
            Some(slot) => slot,
            // None free: closed at once (the client sees its connection reset or closed).
            None if options.slot_after_accept => match cap.try_slot() {
                Some(slot) => slot,
                None => {
                    tracing::debug!(%peer, "no connection slot free: closed");
                    continue;
                }
            },
            None => continue,
        };
        connections.spawn(connection(
            stream,
            peer,
            slot,
            tls.clone(),
            handler.clone(),
            served.clone(),
        ));
    }

    drop(listener);
    let open = connections.len();
    tracing::info!(
        open,
        ?grace,
        "shutting down: no new connections, letting requests finish"
    );
    served.closing.send_replace(true);
    let finished = async {
        while let Some(ended) = connections.join_next().await {
            if let Err(error) = ended {
                tracing::error!(%error, "a connection task failed");
            }
        }
    };
    if tokio::time::timeout(grace, finished).await.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "shutdown grace elapsed; closing remaining connections"
        );
    }
    connections.shutdown().await;
}

/// The HTTP/1 + HTTP/2 server settings shared by all connections.
fn http_builder(options: &HttpOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE)
        .max_concurrent_streams(options.max_concurrent_streams);
    if options.extended_connect {
        builder.http2().enable_connect_protocol();
    }
    builder
}

/// Accept errors that concern one connection, not the listener: no need to back off.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// What every connection of one listener is served with.
#[derive(Clone)]
struct Served {
    http: Arc<auto::Builder<TokioExecutor>>,
    cap: ConnectionCap,
    idle_timeout: Duration,
    /// Raised when the listener shuts down: every connection closes gracefully.
    closing: watch::Sender<bool>,
}

/// One connection: TLS handshake if configured, then HTTP until the client, its idle timeout
/// or shutdown ends it.
async fn connection<H, F, B>(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    tls: Option<Arc<ServerTls>>,
    handler: H,
    served: Served,
) where
    H: Fn(http::Request<Incoming>, ConnInfo) -> F + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let info = |tls, client_identity| ConnInfo {
        peer,
        tls,
        client_identity,
        activity: Activity::new(),
        cap: served.cap.clone(),
    };
    let Some(tls) = tls else {
        return serve_http(stream, info(false, None), slot, handler, &served).await;
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%error, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let client_identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(client_identity);
    serve_http(stream, info(true, client_identity), slot, handler, &served).await;
}

/// Serves HTTP on an established (plain or TLS) stream, which holds the connection's `slot`
/// until it is dropped (after an upgrade, when the tunnel ends); closed gracefully when idle
/// for the listener's idle timeout or when the listener shuts down.
async fn serve_http<I, H, F, B>(io: I, info: ConnInfo, slot: Slot, handler: H, served: &Served)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(http::Request<Incoming>, ConnInfo) -> F + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let peer = info.peer;
    let activity = info.activity.clone();
    let service = hyper::service::service_fn(move |request| {
        // In flight from here until its response's body is dropped.
        let busy = info.activity.busy();
        let response = handler(request, info.clone());
        async move {
            let response = response.await;
            Ok::<_, Infallible>(response.map(|body| Guarded::new(body, busy)))
        }
    });
    let io = TokioIo::new(Held::new(
        Box::pin(PrefaceDeadline::new(io, HANDSHAKE_TIMEOUT)),
        slot,
    ));
    let connection = served.http.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut closing = served.closing.subscribe();
    let mut asked_to_close = false;
    let ended = loop {
        tokio::select! {
            ended = connection.as_mut() => break ended,
            _ = closing.wait_for(|closing| *closing), if !asked_to_close => {}
            () = activity.idle_for(served.idle_timeout), if !asked_to_close => {
                tracing::debug!(%peer, idle_timeout = ?served.idle_timeout, "closing an idle connection");
            }
        }
        connection.as_mut().graceful_shutdown();
        asked_to_close = true;
    };
    if let Err(error) = ended {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}
