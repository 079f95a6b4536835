//! The HTTP client OTLP exports go through: Warden's own pooled client (rustls, TLS always
//! verified against the system roots and `traces.ca_file`), on the export thread's runtime.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

use crate::upstream::UpstreamClient;

/// Largest collector answer read (an OTLP answer is a few bytes, or a partial-success note).
const ANSWER_MAX: usize = 64 * 1024;

/// OTLP/HTTP over an [`UpstreamClient`].
#[derive(Debug)]
pub struct CollectorClient {
    client: UpstreamClient,
    timeout: Duration,
}

impl CollectorClient {
    /// Exports through `client`, each answer read within `timeout`.
    pub fn new(client: UpstreamClient, timeout: Duration) -> CollectorClient {
        CollectorClient { client, timeout }
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let response = self.client.send(request.map(Full::new)).await?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(self.timeout, Limited::new(body, ANSWER_MAX).collect())
            .await
            .map_err(|_| "the collector's answer did not arrive in time")??
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

impl HttpClient for CollectorClient {
    fn send_bytes<'a, 'f>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'f>>
    where
        'a: 'f,
        Self: 'f,
    {
        Box::pin(self.send(request))
    }
}
