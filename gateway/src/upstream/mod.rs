//! The pooled HTTP client that forwards requests to upstream providers.
//!
//! One [`UpstreamClient`] serves every route: keep-alive pools per host, HTTP/2 where the
//! upstream offers it by ALPN, TLS always verified against the system roots and/or
//! `upstream.ca_file`.

pub mod address_guard;
pub mod breaker;
pub mod config;
mod connect_timeout;
mod error;
pub mod guarded_http;
pub mod private_allowance;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;

pub use error::{CaFileError, UpstreamError};

use address_guard::{AddressGuard, GuardedResolver};
use connect_timeout::ConnectTimeout;

use config::UpstreamConfig;

/// TCP keep-alive probes on upstream connections, so dead peers are noticed while pooled.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// A request body Warden forwards: whole, or streamed as it is inspected (a large REST body).
pub type Outbound = Either<Full<Bytes>, UnsyncBoxBody<Bytes, BoxError>>;

/// The error a streamed request body ends with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client Warden forwards with; cloning is cheap and shares the pool.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<ConnectTimeout<HttpsConnector<HttpConnector<GuardedResolver>>>, Outbound>,
    response_timeout: Duration,
    connect_timeout: Duration,
}

impl UpstreamClient {
    /// Builds the client: trust roots, ALPN `h2`/`http/1.1`, timeouts and pool size from `cfg`,
    /// and the address guard (`cfg.allow_private`) on the names it resolves.
    ///
    /// `connect_timeout` bounds DNS, TCP connect and the TLS handshake together.
    pub fn new(cfg: &UpstreamConfig) -> Result<UpstreamClient, UpstreamError> {
        UpstreamClient::build(cfg, AddressGuard::new(&cfg.allow_private))
    }

    /// A client for a side system the operator names by itself (the OTLP collector): as
    /// [`UpstreamClient::new`], but every address its names resolve to is trusted, as for
    /// the IdP, Vault and the SIEM.
    pub fn side_system(cfg: &UpstreamConfig) -> Result<UpstreamClient, UpstreamError> {
        UpstreamClient::build(cfg, AddressGuard::allowing_everything())
    }

    fn build(cfg: &UpstreamConfig, guard: AddressGuard) -> Result<UpstreamClient, UpstreamError> {
        let roots = trust_roots(cfg)?;
        let tls = rustls::ClientConfig::builder_with_provider(crate::listener::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(UpstreamError::Provider)?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let resolver = GuardedResolver::new(guard, &cfg.nameservers, cfg.connect_timeout)
            .map_err(UpstreamError::Resolver)?;
        let mut tcp = HttpConnector::new_with_resolver(resolver);
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(cfg.connect_timeout));
        tcp.set_keepalive(Some(TCP_KEEPALIVE));

        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);

        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(ConnectTimeout::new(connector, cfg.connect_timeout));
        Ok(UpstreamClient {
            client,
            response_timeout: cfg.response_timeout,
            connect_timeout: cfg.connect_timeout,
        })
    }

    /// Sends `req` (absolute `http://` or `https://` URI) and waits for the response headers,
    /// at most `response_timeout` including connect and TLS. The body streams afterwards.
    ///
    /// Not an `async fn`: the returned future owns the call (the pool's response future and
    /// its timer) rather than the request beside it, which keeps the request path's state
    /// (moved into a box per request) small.
    pub fn send(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> impl Future<Output = Result<http::Response<Incoming>, UpstreamError>> + Send + 'static
    {
        self.send_outbound(req.map(Either::Left))
    }

    /// As [`UpstreamClient::send`], for a body that may stream.
    pub fn send_outbound(
        &self,
        req: http::Request<Outbound>,
    ) -> impl Future<Output = Result<http::Response<Incoming>, UpstreamError>> + Send + 'static
    {
        let call = req.uri().authority().cloned().map(|authority| {
            let response = self.client.request(req);
            (
                authority,
                tokio::time::timeout(self.response_timeout, response),
            )
        });
        let (response_timeout, connect_timeout) = (self.response_timeout, self.connect_timeout);
        async move {
            let Some((authority, call)) = call else {
                return Err(UpstreamError::NotAbsolute);
            };
            match call.await {
                // Warden never asks for an upgrade (it strips `Upgrade`): a final `1xx` (`101
                // Switching Protocols`) is no answer to pass on, and would end the agent's
                // connection.
                Ok(Ok(response)) if response.status().is_informational() => {
                    Err(UpstreamError::Protocol {
                        authority,
                        source: format!(
                            "it answered {} to a request that asked for no upgrade",
                            response.status()
                        )
                        .into(),
                    })
                }
                Ok(Ok(response)) => Ok(response),
                Ok(Err(error)) => Err(UpstreamError::classify(authority, error, connect_timeout)),
                Err(_) => Err(UpstreamError::Timeout {
                    authority,
                    after: response_timeout,
                }),
            }
        }
    }
}

/// System roots plus `ca_file`, or only `ca_file` when `ca_only`.
fn trust_roots(cfg: &UpstreamConfig) -> Result<Arc<RootCertStore>, UpstreamError> {
    if cfg.ca_only && cfg.ca_file.is_none() {
        return Err(UpstreamError::CaOnlyWithoutFile);
    }
    Ok(Arc::new(roots(cfg.ca_file.as_deref(), cfg.ca_only)?))
}

/// The system's CA certificates (unless `ca_only`) and those of the PEM bundle `ca_file`:
/// what Warden verifies the servers it connects to against.
pub(crate) fn roots(ca_file: Option<&Path>, ca_only: bool) -> Result<RootCertStore, CaFileError> {
    let mut roots = RootCertStore::empty();
    if !ca_only {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "some system CA certificates could not be loaded");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(
            added,
            ignored,
            "system CA certificates trusted for TLS to servers"
        );
        if added == 0 && ca_file.is_none() {
            tracing::warn!(
                "no system CA certificates found: TLS to servers will fail; install the \
                 ca-certificates package or set a CA file (upstream.ca_file, \
                 egress.intercept.upstream_ca_file)"
            );
        }
    }
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    Ok(roots)
}

/// Checks that `upstream.ca_file` at `path` can be read and that every certificate in it
/// can be trusted as a CA, as [`UpstreamClient::new`] requires.
pub fn check_ca_file(path: &Path) -> Result<(), CaFileError> {
    add_ca_file(&mut RootCertStore::empty(), path)
}

/// Adds every certificate of the PEM bundle at `path` to `roots`.
fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), CaFileError> {
    let certs = crate::listener::read_certificates(path)
        .map_err(|source| CaFileError::Read(Box::new(source)))?;
    if certs.is_empty() {
        return Err(CaFileError::Empty { path: path.into() });
    }
    for cert in certs {
        roots.add(cert).map_err(|source| CaFileError::Invalid {
            path: path.into(),
            source,
        })?;
    }
    Ok(())
}
