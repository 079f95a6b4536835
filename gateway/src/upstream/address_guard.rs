//! The address guard on Warden's own upstream connections (routes' upstreams: LLM providers,
//! MCP servers over HTTP, REST APIs): an upstream written as a host name is dialled only at
//! addresses that are globally reachable, or that `upstream.allow_private` allows, and only at
//! the addresses that were judged. The connector asks [`GuardedResolver`] for a name's
//! addresses and dials exactly what it answers, so a DNS server that answers differently the
//! next time (rebinding) changes nothing between the check and the dial. An upstream written
//! as an address is trusted as written: the connector never asks the resolver for it. What
//! is allowed is judged in `private_allowance.rs`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::dns::Name;
use tower::Service;

use crate::egress::resolve::{Resolver, ResolverSetupError};

pub use super::private_allowance::{
    AddressGuard, AddressRefused, AllowanceError, PrivateAllowance,
};

/// Why an upstream name gave no address to dial.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamResolveError {
    /// The name does not resolve (or the DNS servers failed).
    #[error("cannot resolve {host}: {reason}")]
    Lookup { host: String, reason: String },
    /// The name resolves to an address the guard refuses.
    #[error(transparent)]
    Refused(AddressRefused),
}

/// Where names are looked up.
#[derive(Clone)]
enum Lookup {
    /// The system's resolver (`getaddrinfo`: `/etc/hosts`, search domains), as hyper's own.
    System,
    /// `upstream.nameservers`.
    Servers(Arc<Resolver>),
}

/// The connector's resolver: looks a name up once and hands on the addresses only when the
/// guard allows them all.
#[derive(Clone)]
pub struct GuardedResolver {
    guard: AddressGuard,
    lookup: Lookup,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("guard", &self.guard)
            .field(
                "lookup",
                &match self.lookup {
                    Lookup::System => "system",
                    Lookup::Servers(_) => "upstream.nameservers",
                },
            )
            .finish()
    }
}

impl GuardedResolver {
    /// Looks names up with `nameservers` (empty: the system's resolver), each answer waited
    /// for at most `timeout`, and judges them with `guard`.
    pub fn new(
        guard: AddressGuard,
        nameservers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<GuardedResolver, ResolverSetupError> {
        let lookup = if nameservers.is_empty() {
            Lookup::System
        } else {
            Lookup::Servers(Arc::new(Resolver::with_servers(nameservers, timeout)?))
        };
        Ok(GuardedResolver { guard, lookup })
    }
}

impl Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = UpstreamResolveError;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, UpstreamResolveError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (guard, lookup) = (self.guard.clone(), self.lookup.clone());
        Box::pin(async move {
            let host = name.as_str();
            let addresses = lookup_addresses(&lookup, host).await?;
            guard
                .judge(host, &addresses)
                .map_err(UpstreamResolveError::Refused)?;
            // The connector sets the port.
            let judged: Vec<SocketAddr> = addresses
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            Ok(judged.into_iter())
        })
    }
}

/// The addresses of `host`, each once.
async fn lookup_addresses(
    lookup: &Lookup,
    host: &str,
) -> Result<Vec<IpAddr>, UpstreamResolveError> {
    let failed = |reason: String| UpstreamResolveError::Lookup {
        host: host.to_owned(),
        reason,
    };
    let mut addresses: Vec<IpAddr> = match lookup {
        Lookup::System => tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map(|addr| addr.ip())
            .collect(),
        Lookup::Servers(resolver) => resolver
            .resolve(host.trim_end_matches('.'))
            .await
            .map_err(|e| failed(e.to_string()))?,
    };
    let mut seen = Vec::with_capacity(addresses.len());
    addresses.retain(|ip| {
        let first = !seen.contains(ip);
        seen.push(*ip);
        first
    });
    if addresses.is_empty() {
        return Err(failed("no addresses".to_owned()));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::ip_guard::AddressClass;

    fn allow(entries: &[&str]) -> AddressGuard {
        let entries: Vec<PrivateAllowance> = entries
            .iter()
            .map(|e| PrivateAllowance::try_from(e.to_string()).unwrap())
            .collect();
        AddressGuard::new(&entries)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_name_on_a_global_address_is_allowed_and_internal_ones_are_refused() {
        let guard = AddressGuard::default();
        assert!(guard.judge("api.openai.com", &[ip("104.18.6.192")]).is_ok());
        for (addr, class) in [
            ("169.254.169.254", AddressClass::LinkLocal),
            ("10.1.2.3", AddressClass::Private),
            ("127.0.0.1", AddressClass::Loopback),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("fd00::1", AddressClass::UniqueLocal),
        ] {
            let refused = guard.judge("api.example.com", &[ip(addr)]).unwrap_err();
            assert_eq!(refused.class, class, "{addr}");
            assert!(
                refused.to_string().contains("upstream.allow_private"),
                "{refused}"
            );
        }
        // One internal answer among public ones refuses the name.
        let refused = guard
            .judge("api.example.com", &[ip("104.18.6.192"), ip("10.0.0.5")])
            .unwrap_err();
        assert_eq!(refused.ip, ip("10.0.0.5"));
    }

    #[test]
    fn allowed_networks_hosts_and_domains_reach_internal_addresses() {
        let guard = allow(&[
            "10.0.0.0/8",
            "vllm.internal",
            "*.svc.cluster.local",
            "fd00::1",
        ]);
        assert!(guard.judge("anything.example", &[ip("10.9.8.7")]).is_ok());
        assert!(guard.judge("anything.example", &[ip("fd00::1")]).is_ok());
        assert!(guard.judge("anything.example", &[ip("fd00::2")]).is_err());
        assert!(
            guard
                .judge("anything.example", &[ip("192.168.1.1")])
                .is_err()
        );
        assert!(guard.judge("VLLM.internal.", &[ip("192.168.1.1")]).is_ok());
        assert!(guard.judge("other.internal", &[ip("192.168.1.1")]).is_err());
        assert!(
            guard
                .judge("mcp.tools.svc.cluster.local", &[ip("172.20.0.3")])
                .is_ok()
        );
        // The domain itself, and a name that merely ends with its text, are not under it.
        assert!(
            guard
                .judge("svc.cluster.local", &[ip("172.20.0.3")])
                .is_err()
        );
        assert!(
            guard
                .judge("evilsvc.cluster.local", &[ip("172.20.0.3")])
                .is_err()
        );
    }

    #[test]
    fn side_systems_reach_every_address() {
        let guard = AddressGuard::allowing_everything();
        for addr in [
            "10.0.0.1",
            "169.254.169.254",
            "::1",
            "::ffff:127.0.0.1",
            "8.8.8.8",
        ] {
            assert!(
                guard.judge("collector.internal", &[ip(addr)]).is_ok(),
                "{addr}"
            );
        }
    }

    #[test]
    fn localhost_may_be_loopback_only() {
        let guard = AddressGuard::default();
        assert!(
            guard
                .judge("localhost", &[ip("127.0.0.1"), ip("::1")])
                .is_ok()
        );
        assert!(guard.judge("localhost", &[ip("10.0.0.1")]).is_err());
    }

    #[test]
    fn malformed_allowances_say_what_is_expected() {
        for bad in ["10.0.0.0/33", "", "*.", "a b", "http://x/"] {
            let error = PrivateAllowance::try_from(bad.to_owned()).unwrap_err();
            assert!(
                error.to_string().contains("not an address, a network"),
                "{error}"
            );
        }
        assert_eq!(
            PrivateAllowance::try_from("127.0.0.1".to_owned()).unwrap(),
            PrivateAllowance::Network("127.0.0.1/32".parse().unwrap())
        );
    }
}
