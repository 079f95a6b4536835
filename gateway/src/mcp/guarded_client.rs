//! The HTTP client an endpoint's remote servers are reached with (both transports,
//! `streamable_http.rs` and `legacy_sse.rs`): no redirects, and the address guard of Warden's
//! upstream connections on every name it resolves.

use crate::egress::resolve::ResolverSetupError;
use crate::upstream::address_guard::AddressGuard;
use crate::upstream::config::UpstreamConfig;
use crate::upstream::guarded_http;

/// Why the HTTP client of an endpoint's remote servers could not be made. Warden does not
/// start without it: a client without the guard is never used in its place.
#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    /// The resolver of `upstream.nameservers` could not be set up.
    #[error(transparent)]
    Resolver(#[from] ResolverSetupError),
    /// reqwest could not build the client (its TLS roots, say).
    #[error("cannot build the HTTP client of the remote MCP servers: {0}")]
    Build(reqwest::Error),
}

/// The HTTP client of an endpoint's remote servers: no redirects (one would carry the server's
/// credential, in any header it is sent in, to wherever the server points), and the address
/// guard of Warden's upstream connections (`upstream.allow_private`, `upstream.nameservers`)
/// on the names it resolves, so a server's name pointed at an internal address is refused.
pub(super) fn client(upstream: &UpstreamConfig) -> Result<reqwest::Client, ClientSetupError> {
    guarded_http::builder(
        AddressGuard::new(&upstream.allow_private),
        &upstream.nameservers,
        upstream.connect_timeout,
    )?
    .connect_timeout(std::time::Duration::from_secs(10))
    .build()
    .map_err(ClientSetupError::Build)
}
