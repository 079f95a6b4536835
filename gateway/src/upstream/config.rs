//! `upstream:` how Warden connects to the services behind it.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::address_guard::PrivateAllowance;
use super::breaker::BreakerConfig;
use std::time::Duration;

/// `upstream:` how Warden talks to providers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Extra CA bundle (PEM) trusted for upstream TLS, besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, not the system roots.
    pub ca_only: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for the upstream's response headers.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Idle pooled connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    /// What upstreams written as host names may reach at addresses that are not globally
    /// reachable (loopback, private, link-local, ...): networks (`10.0.0.0/8`), addresses,
    /// host names (`vllm.internal`) and domains (`*.svc.cluster.local`). An upstream URL
    /// written with an address is trusted as written.
    pub allow_private: Vec<PrivateAllowance>,
    /// DNS servers upstream names are resolved with (`address:port`); empty: the system's
    /// resolver.
    pub nameservers: Vec<SocketAddr>,
    /// The circuit breaker of every upstream (`breakers` overrides it per route).
    pub breaker: BreakerConfig,
    /// The circuit breaker of the upstream of the route with this name.
    pub breakers: BTreeMap<String, BreakerConfig>,
}

impl UpstreamConfig {
    /// The breaker settings of the upstream of route `name`.
    pub fn breaker_for(&self, name: &str) -> &BreakerConfig {
        self.breakers.get(name).unwrap_or(&self.breaker)
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            ca_file: None,
            ca_only: false,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(300),
            pool_max_idle_per_host: 64,
            allow_private: Vec::new(),
            nameservers: Vec::new(),
            breaker: BreakerConfig::default(),
            breakers: BTreeMap::new(),
        }
    }
}
