//! Egress: what an agent reaches outside Warden's routes, through the forward proxy
//! (`HTTPS_PROXY`), judged per destination.
//!
//! The parts every egress path shares, none of which knows about requests: the destination
//! host read as the OS would ([`host`]), resolved once ([`resolve`]), each address classified
//! ([`ip_guard`]), and dialled as checked ([`dial`]); the tunnel's first bytes ([`sni`]); the
//! agent's credential from `Proxy-Authorization` ([`proxy_auth`]); this host's own
//! addresses, which egress treats as internal ([`this_host`]); the CA and certificates of
//! TLS interception for configured hosts ([`intercept`]); the ports where the server speaks
//! first ([`server_first`]). The proxy's walk through
//! identify, decide and record is in `proxy/egress/`.

pub mod config;
pub mod dial;
pub mod error;
pub mod host;
pub mod intercept;
pub mod internal_networks;
pub mod ip_guard;
pub mod proxy_auth;
pub mod resolve;
pub mod server_first;
pub mod sni;
pub mod this_host;

use std::net::IpAddr;

pub use config::EgressConfig;
pub use error::EgressError;
pub use host::Host;
pub use ip_guard::{AddressClass, classify};
pub use resolve::Resolver;

/// A destination as judged: its host, port, and every address it resolved to with its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: Host,
    pub port: u16,
    /// The addresses found (an address host: itself), in the order they are tried.
    pub addresses: Vec<IpAddr>,
}

impl Destination {
    /// `host` on `port`, not looked up yet: an address host is its own address; a name has
    /// none until [`Destination::look_up`].
    pub fn unresolved(host: Host, port: u16) -> Destination {
        let addresses = match &host {
            Host::Address(ip) => vec![*ip],
            Host::Name(_) => Vec::new(),
        };
        Destination {
            host,
            port,
            addresses,
        }
    }

    /// Whether it is a name not looked up yet.
    pub fn is_unresolved(&self) -> bool {
        self.addresses.is_empty()
    }

    /// Looks a name up once (an address host has its address already).
    pub async fn look_up(&mut self, resolver: &Resolver) -> Result<(), EgressError> {
        if let Host::Name(name) = &self.host
            && self.addresses.is_empty()
        {
            self.addresses = resolver.resolve(name).await?;
        }
        Ok(())
    }

    /// The first address that is not globally reachable, with its class.
    pub fn internal(&self) -> Option<(IpAddr, AddressClass)> {
        self.addresses
            .iter()
            .map(|ip| (*ip, classify(*ip)))
            .find(|(_, class)| !class.is_global())
    }

    /// The classes of its addresses, each once.
    pub fn classes(&self) -> Vec<AddressClass> {
        let mut classes = Vec::new();
        for class in self.addresses.iter().map(|ip| classify(*ip)) {
            if !classes.contains(&class) {
                classes.push(class);
            }
        }
        classes
    }
}

/// Whether Warden may connect to `ip` on its own behalf (an upstream, a redirect it
/// follows) without a setting that names internal addresses: `Err` with the class when it is
/// not globally reachable.
pub fn check_address(ip: IpAddr) -> Result<(), AddressClass> {
    match classify(ip) {
        AddressClass::Global => Ok(()),
        class => Err(class),
    }
}
