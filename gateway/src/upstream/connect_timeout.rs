//! A deadline on the whole connect (DNS, TCP and TLS handshake) to an upstream.
//!
//! hyper-util's `HttpConnector` bounds only TCP connect; an upstream that accepts TCP but
//! stalls the TLS handshake would otherwise hold the request until `response_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use tower::Service;

/// A boxed error from a connector.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps a connector so each connect fails with `TimedOut` after `limit`.
#[derive(Clone, Debug)]
pub(super) struct ConnectTimeout<C> {
    inner: C,
    limit: Duration,
}

impl<C> ConnectTimeout<C> {
    /// Bounds every connect made by `inner` to `limit`.
    pub(super) fn new(inner: C, limit: Duration) -> Self {
        ConnectTimeout { inner, limit }
    }
}

impl<C> Service<Uri> for ConnectTimeout<C>
where
    C: Service<Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect and TLS handshake timed out",
                )
                .into()),
            }
        })
    }
}
