//! Resolving a destination once: the addresses found are the ones judged and the ones dialled
//! (no second lookup a rebinding DNS server could answer differently).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use super::config::EgressConfig;
use super::error::EgressError;

/// Most addresses of one name kept (and judged, and tried).
const ADDRESSES_MAX: usize = 16;

/// One worker's DNS resolver, with its own cache (answers kept no longer than their TTL).
pub struct Resolver {
    inner: TokioResolver,
    timeout: Duration,
}

/// Why the resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the egress resolver: {0}; check /etc/resolv.conf or set egress.nameservers")]
pub struct ResolverSetupError(String);

impl Resolver {
    /// The resolver `config` asks for: its `nameservers`, else the system's.
    pub fn new(config: &EgressConfig) -> Result<Resolver, ResolverSetupError> {
        Resolver::with_servers(&config.nameservers, config.resolve_timeout)
    }

    /// A resolver asking `nameservers` (empty: the system's), each answer waited for at
    /// most `timeout`.
    pub fn with_servers(
        nameservers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<Resolver, ResolverSetupError> {
        let mut options = ResolverOpts::default();
        options.timeout = timeout;
        options.attempts = 2;
        let builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| ResolverSetupError(e.to_string()))?
        } else {
            let servers = nameservers.iter().map(name_server).collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                TokioRuntimeProvider::default(),
            )
        };
        let inner = builder
            .with_options(options)
            .build()
            .map_err(|e| ResolverSetupError(e.to_string()))?;
        Ok(Resolver { inner, timeout })
    }

    /// The addresses of `name` (an ASCII DNS name without the trailing dot), looked up as a
    /// fully qualified name (no search domains), IPv4 and IPv6.
    pub async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, EgressError> {
        let fqdn = format!("{name}.");
        let lookup = tokio::time::timeout(self.timeout, self.inner.lookup_ip(fqdn.as_str()))
            .await
            .map_err(|_| EgressError::ResolveTimeout {
                host: name.to_owned(),
            })?
            .map_err(|e| EgressError::Resolve {
                host: name.to_owned(),
                reason: if e.is_nx_domain() || e.is_no_records_found() {
                    "no such host".to_owned()
                } else {
                    e.to_string()
                },
            })?;
        let mut addresses: Vec<IpAddr> = Vec::new();
        for ip in lookup.iter() {
            if !addresses.contains(&ip) && addresses.len() < ADDRESSES_MAX {
                addresses.push(ip);
            }
        }
        if addresses.is_empty() {
            return Err(EgressError::Resolve {
                host: name.to_owned(),
                reason: "no addresses".to_owned(),
            });
        }
        Ok(addresses)
    }
}

/// A name server at `addr`, over UDP and TCP on its port.
fn name_server(addr: &SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}
