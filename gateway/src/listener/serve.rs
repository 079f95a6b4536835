//! The accept loop: TCP accept, TLS handshake, HTTP/1.1 or HTTP/2 serving, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::client_identity::client_identity;
use super::conn::ConnInfo;
use super::connection_cap::{ConnectionCap, Held, Slot};
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

/// What a listener takes besides ordinary requests.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL` and accept RFC 8441 extended `CONNECT`
    /// (a `:protocol` pseudo-header, read as `hyper::ext::Protocol`).
    pub extended_connect: bool,
    /// Work its requests hand off that outlives their connections (egress tunnels): each
    /// worker serving the listener gives it the shutdown grace and waits for it before it stops.
    pub detached: Option<super::detached::Detached>,
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
/// connections wait in the kernel's backlog) until one closes. A connection's slot is held
/// by its socket, so a tunnel that keeps the socket after an upgrade still counts.
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
    let graceful = GracefulShutdown::new();
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
            taken = cap.slot(), if slot.is_none() => {
                slot = Some(taken);
                continue;
            }
            accepted = listener.accept(), if slot.is_some() => accepted,
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
        let Some(slot) = slot.take() else { continue };
        connections.spawn(connection(
            stream,
            peer,
            slot,
            tls.clone(),
            handler.clone(),
            Arc::clone(&http),
            graceful.watcher(),
        ));
    }

    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open,
        ?grace,
        "shutting down: no new connections, letting requests finish"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
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
        .keep_alive_timeout(H2_KEEPALIVE);
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

/// One connection: TLS handshake if configured, then HTTP until the client or shutdown ends it.
async fn connection<H, F, B>(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    tls: Option<Arc<ServerTls>>,
    handler: H,
    http: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
) where
    H: Fn(http::Request<Incoming>, ConnInfo) -> F + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(tls) = tls else {
        let info = ConnInfo {
            peer,
            tls: false,
            client_identity: None,
        };
        return serve_http(stream, info, slot, handler, &http, watcher).await;
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
    let info = ConnInfo {
        peer,
        tls: true,
        client_identity,
    };
    serve_http(stream, info, slot, handler, &http, watcher).await;
}

/// Serves HTTP on an established (plain or TLS) stream, which holds the connection's `slot`
/// until it is dropped (after an upgrade, when the tunnel ends).
async fn serve_http<I, H, F, B>(
    io: I,
    info: ConnInfo,
    slot: Slot,
    handler: H,
    http: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(http::Request<Incoming>, ConnInfo) -> F + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let peer = info.peer;
    let service = hyper::service::service_fn(move |request| {
        let response = handler(request, info.clone());
        async move { Ok::<_, Infallible>(response.await) }
    });
    let io = TokioIo::new(Held::new(
        Box::pin(PrefaceDeadline::new(io, HANDSHAKE_TIMEOUT)),
        slot,
    ));
    let connection = http.serve_connection_with_upgrades(io, service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}
