//! The HTTP client an endpoint's remote servers are reached with (both transports,
//! `streamable_http.rs` and `legacy_sse.rs`): no redirects, and the address guard of Warden's
//! upstream connections on every name it resolves.

use crate::egress::resolve::ResolverSetupError;
use crate::upstream::address_guard::AddressGuard;
use crate::upstream::config::UpstreamConfig;
use crate::upstream::guarded_http;

/// The HTTP client of an endpoint's remote servers: no redirects (one would carry the server's
/// credential, in any header it is sent in, to wherever the server points), and the address
/// guard of Warden's upstream connections (`upstream.allow_private`, `upstream.nameservers`)
/// on the names it resolves, so a server's name pointed at an internal address is refused.
pub(super) fn client(upstream: &UpstreamConfig) -> Result<reqwest::Client, ResolverSetupError> {
    Ok(guarded_http::builder(
        AddressGuard::new(&upstream.allow_private),
        &upstream.nameservers,
        upstream.connect_timeout,
    )?
    .connect_timeout(std::time::Duration::from_secs(10))
    .build()
    .unwrap_or_default())
}
