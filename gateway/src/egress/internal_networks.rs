//! Networks the operator declares internal (`egress.internal_networks`): globally routable
//! addresses that still reach the inside, such as the public address a 1:1 NAT or a load
//! balancer maps to Warden's host (no interface holds it, so [`super::this_host`] cannot know
//! it), or the organisation's own public ranges. A global address in one of them has the
//! class `AddressClass::DeclaredInternal` and, like every class but global, is reached only with an
//! `@egress("internal")` permit.
//!
//! The list is set from the configuration at start and on every reload; a worker only ever
//! reads the last list.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use ipnet::IpNet;

/// The networks as last configured.
static NETWORKS: ArcSwapOption<Vec<IpNet>> = ArcSwapOption::const_empty();

/// Makes `networks` the declared internal networks (start and reload).
pub fn set(networks: &[IpNet]) {
    NETWORKS.store((!networks.is_empty()).then(|| Arc::new(networks.to_vec())));
}

/// The declared internal networks (empty when none are configured).
pub fn networks() -> Arc<Vec<IpNet>> {
    NETWORKS.load_full().unwrap_or_default()
}

/// Whether `ip` lies in one of `networks`.
pub fn holds(networks: &[IpNet], ip: IpAddr) -> bool {
    networks.iter().any(|net| net.contains(&ip))
}
