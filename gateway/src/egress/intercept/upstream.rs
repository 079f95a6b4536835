//! The other half of an intercepted tunnel: TLS from Warden to the real destination, dialled
//! at the addresses the tunnel was judged with (never resolved again), its certificate
//! verified against the system's CAs and `egress.intercept.upstream_ca_file`, HTTP/2 or
//! HTTP/1.1 as the destination offers; connections kept for the tunnel's requests.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::egress::{Destination, EgressError, dial};

/// A request body sent out of an intercepted tunnel: whole, or inspected as it streams.
pub type TunnelBody = UnsyncBoxBody<Bytes, Box<dyn StdError + Send + Sync>>;

/// The client an intercepted tunnel's requests leave by.
pub struct TunnelUpstream {
    client: Client<HttpsConnector<Dialler>, TunnelBody>,
    host: String,
    response_timeout: Duration,
}

impl TunnelUpstream {
    /// A client to `dest` (a name: the certificate is verified for it) with `tls`.
    pub(super) fn new(
        tls: rustls::ClientConfig,
        dest: Destination,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> TunnelUpstream {
        let host = dest.host.cedar_name();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(Dialler {
                dest: Arc::new(dest),
                timeout: connect_timeout,
            });
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        TunnelUpstream {
            client,
            host,
            response_timeout,
        }
    }

    /// The `https://` URI of `path_and_query` at the destination (`port` its port).
    pub fn uri(&self, port: u16, path_and_query: &str) -> Result<Uri, EgressError> {
        let authority = if port == 443 {
            self.host.clone()
        } else {
            format!("{}:{port}", self.host)
        };
        format!("https://{authority}{path_and_query}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| EgressError::Target(e.to_string()))
    }

    /// Sends `req` (its URI from [`TunnelUpstream::uri`]) and waits for the response headers
    /// within `egress.response_timeout`.
    pub async fn send(&self, req: Request<TunnelBody>) -> Result<Response<Incoming>, EgressError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(EgressError::UpstreamTimeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(classify(&self.host, &error)),
        }
    }
}

/// What went wrong, from the client's error and its causes: a certificate not trusted, a
/// failed handshake, a failed connection, or the exchange.
fn classify(host: &str, error: &(dyn StdError + 'static)) -> EgressError {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(reason) => EgressError::UpstreamUntrusted {
                    host: host.to_owned(),
                    reason: format!("{reason:?}"),
                },
                other => EgressError::UpstreamTls {
                    host: host.to_owned(),
                    reason: other.to_string(),
                },
            };
        }
        if let Some(dialled) = e.downcast_ref::<EgressError>() {
            return match dialled {
                EgressError::Connect { host, port, reason } => EgressError::Connect {
                    host: host.clone(),
                    port: *port,
                    reason: reason.clone(),
                },
                EgressError::ConnectTimeout { host, port } => EgressError::ConnectTimeout {
                    host: host.clone(),
                    port: *port,
                },
                other => EgressError::Upstream(other.to_string()),
            };
        }
        cause = cause_of(e);
    }
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    EgressError::Upstream(text)
}

/// What caused `e`: for an I/O error, the error it wraps (its `source` skips that one).
fn cause_of<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => Some(inner),
        None => e.source(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_an_untrusted_certificate_inside_wrapped_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        let error = classify("api.example", &wrapped);
        assert!(
            matches!(&error, EgressError::UpstreamUntrusted { host, reason } if host == "api.example" && reason == "UnknownIssuer"),
            "{error:?}"
        );
        assert_eq!(error.code(), "egress_upstream_untrusted");
        let other = classify("api.example", &std::io::Error::other("reset"));
        assert!(matches!(other, EgressError::Upstream(_)), "{other:?}");
    }
}

/// Connects to the judged destination's addresses, whatever the URI says.
#[derive(Clone)]
struct Dialler {
    dest: Arc<Destination>,
    timeout: Duration,
}

impl tower::Service<Uri> for Dialler {
    type Response = TokioIo<TcpStream>;
    type Error = EgressError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, EgressError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), EgressError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let (dest, timeout) = (Arc::clone(&self.dest), self.timeout);
        Box::pin(async move { dial::dial(&dest, timeout).await.map(TokioIo::new) })
    }
}
