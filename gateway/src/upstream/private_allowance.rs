//! What Warden's own connections may reach at addresses that are not globally reachable: the
//! entries of `upstream.allow_private` (and of `identity.issuers[].allow_private`) and the
//! [`AddressGuard`] that judges a name's addresses by them. Resolving and dialling are the
//! callers' (`address_guard.rs` for upstreams, `identity/fetch.rs` for identity providers).
//!
//! Addresses are classified as the egress proxy classifies them (`egress/ip_guard.rs`).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;

use crate::egress::ip_guard::{AddressClass, classify};

/// One entry of `upstream.allow_private`: what may be reached at addresses that are not
/// globally reachable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum PrivateAllowance {
    /// An address or a network (`10.0.0.0/8`, `127.0.0.1`, `fd00::/8`): any upstream name
    /// may resolve into it.
    Network(IpNet),
    /// One host name (`vllm.internal`): it may resolve to any address.
    Host(String),
    /// `*.svc.cluster.local`: every name under that domain may resolve to any address.
    Domain(String),
}

/// Why an `upstream.allow_private` entry is not one.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not an address, a network (10.0.0.0/8), a host name (vllm.internal) or a domain \
     (*.svc.cluster.local)"
)]
pub struct AllowanceError(String);

impl TryFrom<String> for PrivateAllowance {
    type Error = AllowanceError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let trimmed = text.trim();
        if let Ok(net) = trimmed.parse::<IpNet>() {
            return Ok(PrivateAllowance::Network(net));
        }
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            return Ok(PrivateAllowance::Network(IpNet::from(ip)));
        }
        let (domain, name) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        match (valid, domain) {
            (true, true) => Ok(PrivateAllowance::Domain(name)),
            (true, false) => Ok(PrivateAllowance::Host(name)),
            (false, _) => Err(AllowanceError(text)),
        }
    }
}

/// An upstream name that resolved to an address Warden does not connect to on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} resolves to {ip}, a {class} address: Warden reaches an upstream at an address that \
     is not globally reachable only when upstream.allow_private names the host or a network \
     that holds the address (or the upstream URL is written with the address itself)"
)]
pub struct AddressRefused {
    pub host: String,
    pub ip: IpAddr,
    pub class: AddressClass,
}

/// What `upstream.allow_private` allows.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allow: Arc<[PrivateAllowance]>,
    /// `localhost` is judged as any name, not allowed its loopback addresses.
    localhost_judged: bool,
}

impl AddressGuard {
    /// The guard that allows `allow` besides globally reachable addresses.
    pub fn new(allow: &[PrivateAllowance]) -> AddressGuard {
        AddressGuard {
            allow: allow.into(),
            localhost_judged: false,
        }
    }

    /// This guard, without the exception for `localhost`: for names a third party chooses
    /// (an identity provider's discovery document), where `localhost` is Warden's own host.
    pub fn judging_localhost(self) -> AddressGuard {
        AddressGuard {
            localhost_judged: true,
            ..self
        }
    }

    /// Whether `host` may be dialled at `addresses`: each must be globally reachable, in an
    /// allowed network, or `host` must be allowed by name; `localhost` (RFC 6761) may be
    /// loopback (unless [`judging_localhost`](Self::judging_localhost)). One address refused refuses the name: a name that mixes internal and public
    /// answers is not half trusted.
    pub fn judge(&self, host: &str, addresses: &[IpAddr]) -> Result<(), AddressRefused> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if self.allows_name(&host) {
            return Ok(());
        }
        let localhost =
            !self.localhost_judged && (host == "localhost" || host.ends_with(".localhost"));
        for &ip in addresses {
            let class = classify(ip);
            let allowed = class.is_global()
                || (localhost && class == AddressClass::Loopback)
                || self.allows_address(ip);
            if !allowed {
                return Err(AddressRefused {
                    host: host.clone(),
                    ip,
                    class,
                });
            }
        }
        Ok(())
    }

    /// The guard that allows every address (for side systems the operator names).
    pub fn allowing_everything() -> AddressGuard {
        AddressGuard::new(&[
            PrivateAllowance::Network(IpNet::V4(ipnet::Ipv4Net::default())),
            PrivateAllowance::Network(IpNet::V6(ipnet::Ipv6Net::default())),
        ])
    }

    /// Whether an allowed network holds `ip` (an IPv4-mapped IPv6 address as its IPv4 one).
    fn allows_address(&self, ip: IpAddr) -> bool {
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allow.iter().any(|entry| match entry {
            PrivateAllowance::Network(net) => {
                net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4))
            }
            _ => false,
        })
    }

    fn allows_name(&self, host: &str) -> bool {
        self.allow.iter().any(|entry| match entry {
            PrivateAllowance::Host(name) => name == host,
            PrivateAllowance::Domain(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|head| head.ends_with('.')),
            PrivateAllowance::Network(_) => false,
        })
    }
}
