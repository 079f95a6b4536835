//! An intercepted tunnel (`egress.intercept`): the agent's TLS is terminated with a leaf
//! certificate of the interception CA for the tunnel's host, HTTP/2 or HTTP/1.1 as ALPN
//! settled, and each request inside is walked as `egress:request` (scheme `https`) by the
//! tunnel's agent: its body inspected, judged, recorded, then sent over Warden's own verified
//! TLS to the destination the tunnel was judged for.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use super::request::Via;
use crate::egress::intercept::{Interceptor, TunnelUpstream};
use crate::egress::{Destination, EgressConfig};
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
    let service = hyper::service::service_fn(move |req| {
        let inner = Arc::clone(&inner);
        async move {
            let via = Via::Intercepted {
                upstream: &inner.upstream,
                sni: inner.sni.as_deref(),
            };
            Ok::<_, Infallible>(inner.tunnel.walk(req, via).await)
        }
    });
    let io = TokioIo::new(tls);
    let served = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(config.first_bytes_timeout)
            .serve_connection(io, service)
            .await
    };
    served.map_err(|e| ("egress_tunnel_error", e.to_string()))
}

/// What each request of the tunnel shares.
struct Inner<W> {
    tunnel: W,
    upstream: TunnelUpstream,
    /// The server name the agent sent.
    sni: Option<String>,
}
