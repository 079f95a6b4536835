//! An intercepted tunnel (`egress.intercept`): the agent's TLS is terminated with a leaf
//! certificate of the interception CA for the tunnel's host, HTTP/2 or HTTP/1.1 as ALPN
//! settled (either way, while no request is being answered the next one's head must arrive
//! within `egress.first_bytes_timeout`), and each request inside is walked as `egress:request` (scheme `https`) by the
//! tunnel's agent: its body inspected, judged, recorded, then sent over Warden's own verified
//! TLS to the destination the tunnel was judged for.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use super::request::Via;
use crate::egress::intercept::{Interceptor, TunnelUpstream};
use crate::egress::{Destination, EgressConfig};
use crate::listener::Guarded;
use crate::proxy::exchange::ProxyBody;

/// Why an intercepted tunnel ended early: its code and reason, for the tunnel's record.
type Cut = (&'static str, String);

/// How each request of the tunnel is walked (the tunnel's agent, to its destination).
pub(super) trait Walk: Send + Sync + 'static {
    fn walk<'a>(
        &'a self,
        req: Request<Incoming>,
        via: Via<'a>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + 'a;
}

/// Terminates the agent's TLS (`client`, its ClientHello not yet consumed) for the tunnel to
/// `dest` and serves the requests inside with `tunnel` until the agent closes it.
pub(super) async fn serve<C, W: Walk>(
    tunnel: W,
    dest: &Destination,
    config: &EgressConfig,
    interceptor: &Interceptor,
    client: C,
    sni: Option<String>,
) -> Result<(), Cut>
where
    C: AsyncRead + AsyncWrite + Unpin + Send,
{
    let name = dest.host.cedar_name();
    let leaf = interceptor
        .server_config(&name)
        .await
        .map_err(|e| ("egress_intercept_failed", e.to_string()))?;
    let timeout = config.first_bytes_timeout;
    let tls = tokio::time::timeout(timeout, TlsAcceptor::from(leaf).accept(client))
        .await
        .map_err(|_| {
            (
                "egress_intercept_handshake_failed",
                "the client did not finish its TLS handshake within egress.first_bytes_timeout"
                    .to_owned(),
            )
        })?
        .map_err(|e| {
            (
                "egress_intercept_handshake_failed",
                format!(
                    "TLS with the client failed ({e}): {name} is intercepted, so the client \
                     must trust Warden's interception CA (`warden egress ca` prints it) and \
                     must not pin the server's own certificate"
                ),
            )
        })?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let inner = Arc::new(Inner {
        tunnel,
        upstream: interceptor.upstream(
            dest.clone(),
            config.connect_timeout,
            config.response_timeout,
        ),
        sni,
    });
    let activity = Arc::new(Activity::default());
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |req| {
        let inner = Arc::clone(&inner);
        let answering = Answering::start(&requests);
        async move {
            let via = Via::Intercepted {
                upstream: &inner.upstream,
                sni: inner.sni.as_deref(),
            };
            let response = inner.tunnel.walk(req, via).await;
            Ok::<_, Infallible>(response.map(|body| Guarded::new(body, answering)))
        }
    });
    let io = TokioIo::new(tls);
    if h2 {
        return serve_h2(io, service, &activity, config.first_bytes_timeout).await;
    }
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.first_bytes_timeout)
        .serve_connection(io, service)
        .await
        .map_err(|e| ("egress_tunnel_error", e.to_string()))
}

/// What each request of the tunnel shares.
struct Inner<W> {
    tunnel: W,
    upstream: TunnelUpstream,
    /// The server name the agent sent.
    sni: Option<String>,
}

/// Most streams an agent may have open at once on an intercepted HTTP/2 connection.
const H2_MAX_STREAMS: u32 = 200;

/// Most bytes of one request's header list on an intercepted HTTP/2 connection.
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;

/// Longest an idle intercepted HTTP/2 connection is given to say goodbye (GOAWAY) before
/// it is closed.
const GOAWAY_WAIT: Duration = Duration::from_secs(1);

/// Serves an intercepted HTTP/2 connection with the bounds HTTP/1.1 gets from its header
/// read timeout: while no request is being answered, the next one's headers (the first
/// one's from the end of the TLS handshake) must arrive within `timeout`
/// (`egress.first_bytes_timeout`), or the connection is closed (a client that sends
/// nothing, or trickles its headers, holds nothing for long). A peer that stops answering
/// pings for `timeout` is closed too, and streams and header lists are bounded.
async fn serve_h2<I, S>(
    io: I,
    service: S,
    activity: &Activity,
    timeout: Duration,
) -> Result<(), Cut>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(timeout)
        .keep_alive_timeout(timeout)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let waiting = super::quiet::quiet_for(timeout, || activity.quiet());
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = waiting => {
            // A GOAWAY, if the client lets it be sent soon; closed either way.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(GOAWAY_WAIT.min(timeout), conn.as_mut()).await;
            return Err((
                "egress_tunnel_idle",
                format!(
                    "closed after {} without a request (egress.first_bytes_timeout)",
                    humantime::format_duration(timeout)
                ),
            ));
        }
    };
    served.map_err(|e| ("egress_tunnel_error", e.to_string()))
}

/// The requests of one intercepted connection: how many arrived, how many are being
/// answered (a response counts until its body is sent or dropped).
#[derive(Default)]
struct Activity {
    received: AtomicU64,
    answering: AtomicUsize,
}

impl Activity {
    /// The requests received so far, `None` while one is being answered.
    fn quiet(&self) -> Option<u64> {
        (self.answering.load(Ordering::Acquire) == 0).then(|| self.received.load(Ordering::Acquire))
    }
}

/// One request being answered, from its arrival until its response body is dropped.
struct Answering(Arc<Activity>);

impl Answering {
    fn start(activity: &Arc<Activity>) -> Answering {
        activity.received.fetch_add(1, Ordering::AcqRel);
        activity.answering.fetch_add(1, Ordering::AcqRel);
        Answering(Arc::clone(activity))
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, Empty};
    use std::time::Instant;

    /// Answers every request with an empty `200` after `delay`.
    fn answering_after(
        delay: Duration,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = Response<Empty<bytes::Bytes>>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Empty<bytes::Bytes>>, Infallible>> + Send,
    > + Send {
        hyper::service::service_fn(move |_req| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(Response::new(Empty::new()))
        })
    }

    #[tokio::test]
    async fn an_http2_connection_that_sends_nothing_is_closed_after_the_timeout() {
        let (_client, server) = tokio::io::duplex(4096);
        let activity = Activity::default();
        let started = Instant::now();
        let service = answering_after(Duration::ZERO);
        let ended = serve_h2(
            TokioIo::new(server),
            service,
            &activity,
            Duration::from_millis(200),
        )
        .await;
        let (code, why) = ended.unwrap_err();
        assert_eq!(code, "egress_tunnel_idle");
        assert!(why.contains("without a request"), "{why}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_request_being_answered_keeps_an_http2_connection_open_past_the_timeout() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(async move {
            let activity = Arc::new(Activity::default());
            let requests = Arc::clone(&activity);
            let slow = answering_after(Duration::from_millis(800));
            let service = hyper::service::service_fn(move |req| {
                let answering = Answering::start(&requests);
                let answer = hyper::service::Service::call(&slow, req);
                async move {
                    let response = answer.await?;
                    Ok::<_, Infallible>(response.map(|body| Guarded::new(body, answering)))
                }
            });
            serve_h2(
                TokioIo::new(server),
                service,
                &activity,
                Duration::from_millis(200),
            )
            .await
        });
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client))
                .await
                .unwrap();
        tokio::spawn(conn);
        let request = Request::get("https://intercepted.test/")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        response.into_body().collect().await.unwrap();
        // Idle again: closed after the timeout.
        let ended = tokio::time::timeout(Duration::from_secs(3), served)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ended.unwrap_err().0, "egress_tunnel_idle");
    }
}
