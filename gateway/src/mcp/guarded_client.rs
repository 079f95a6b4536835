//! The HTTP client an endpoint's remote servers are reached with (both transports,
//! `streamable_http.rs` and `legacy_sse.rs`): no redirects, and the address guard of Warden's
//! upstream connections on every name it resolves.

use std::sync::Arc;

use crate::egress::resolve::ResolverSetupError;
use crate::upstream::address_guard::{AddressGuard, GuardedResolver};
use crate::upstream::config::UpstreamConfig;

/// The HTTP client of an endpoint's remote servers: no redirects (one would carry the server's
/// credential, in any header it is sent in, to wherever the server points), and the address
/// guard of Warden's upstream connections (`upstream.allow_private`, `upstream.nameservers`)
/// on the names it resolves, so a server's name pointed at an internal address is refused.
pub(super) fn client(upstream: &UpstreamConfig) -> Result<reqwest::Client, ResolverSetupError> {
    let resolver = GuardedResolver::new(
        AddressGuard::new(&upstream.allow_private),
        &upstream.nameservers,
        upstream.connect_timeout,
    )?;
    Ok(reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedDns(resolver)))
        .build()
        .unwrap_or_default())
}

/// [`GuardedResolver`] as reqwest's resolver: it dials exactly the addresses judged.
struct GuardedDns(GuardedResolver);

impl reqwest::dns::Resolve for GuardedDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let mut resolver = self.0.clone();
        let name = name
            .as_str()
            .parse::<hyper_util::client::legacy::connect::dns::Name>();
        Box::pin(async move {
            let name = name.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addresses = tower::Service::call(&mut resolver, name).await?;
            Ok(Box::new(addresses) as reqwest::dns::Addrs)
        })
    }
}
