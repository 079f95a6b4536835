//! reqwest clients under the address guard of Warden's upstream connections: the HTTP client
//! of an endpoint's remote MCP servers (`mcp/guarded_client.rs`) and the one
//! `warden policy schema --from-mcp` lists a server's tools with (`policy/tools_list.rs`).
//! reqwest asks [`GuardedResolver`] for every name it dials and dials exactly the addresses it
//! judged; an address written in the URL is never resolved, so callers that must judge one
//! too do so themselves ([`AddressGuard::judge`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::address_guard::{AddressGuard, AddressRefused, GuardedResolver, UpstreamResolveError};
use crate::egress::resolve::ResolverSetupError;

/// A client builder that follows no redirect (one would carry the request's credentials to
/// wherever the server points), uses no proxy (`HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` in
/// Warden's environment are ignored: a proxy would resolve and dial the name itself, past the
/// guard) and resolves names with `guard`'s resolver: `nameservers` (empty: the system's), each
/// answer waited for at most `timeout`.
pub fn builder(
    guard: AddressGuard,
    nameservers: &[SocketAddr],
    timeout: Duration,
) -> Result<reqwest::ClientBuilder, ResolverSetupError> {
    let resolver = GuardedResolver::new(guard, nameservers, timeout)?;
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedDns(resolver))))
}

/// The guard's refusal that made a request through a [`builder`] client fail, if it did.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a AddressRefused> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(UpstreamResolveError::Refused(refused)) = e.downcast_ref() {
            return Some(refused);
        }
        cause = e.source();
    }
    None
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
