//! `egress:` the forward proxy agents reach the outside through (`HTTPS_PROXY`), and how it
//! resolves and dials destinations.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::listener::config::TlsConfig;

/// `egress:` section. Without `listen` there is no egress proxy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Where the forward proxy listens (e.g. `127.0.0.1:3128`); absent: no egress proxy.
    pub listen: Option<SocketAddr>,
    /// TLS on the proxy's own listener (`HTTPS_PROXY=https://...`): agents then reach the
    /// proxy over TLS, HTTP/2 by ALPN; absent: plaintext (HTTP/1.1, or HTTP/2 with prior
    /// knowledge).
    pub tls: Option<TlsConfig>,
    /// DNS servers destinations are resolved with (`address:port`); empty: the system's
    /// (`/etc/resolv.conf` and `/etc/hosts`).
    pub nameservers: Vec<SocketAddr>,
    /// Longest wait for a DNS answer.
    #[serde(with = "humantime_serde")]
    pub resolve_timeout: Duration,
    /// Longest wait for the destination to accept the connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest a client may take, once its tunnel is open, to send its first bytes (the TLS
    /// ClientHello Warden reads the server name from); and, in a tunnel served as HTTP, to
    /// send each request's head.
    #[serde(with = "humantime_serde")]
    pub first_bytes_timeout: Duration,
    /// Longest wait for a plain-HTTP destination's response headers.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// A tunnel copied as it is (TLS, or TCP) that carries no byte either way for this long
    /// is closed.
    #[serde(with = "humantime_serde")]
    pub tunnel_idle_timeout: Duration,
    /// Tunnels (`CONNECT`) one agent may have open at once: beyond it, 429.
    pub max_tunnels_per_agent: u32,
    /// An agent at `max_tunnels_per_agent` that opens another has its longest-idle tunnel
    /// closed if that one carried no byte for this long (none closed otherwise: 429); unset,
    /// 30 s or `tunnel_idle_timeout` if that is shorter ([`EgressConfig::evict_idle_after`]).
    #[serde(with = "humantime_serde")]
    pub evict_idle_after: Option<Duration>,
    /// TLS interception for configured hosts (off by default).
    pub intercept: super::intercept::config::InterceptConfig,
    /// Destination ports where the server speaks first (off by default).
    pub server_first: super::server_first::ServerFirstConfig,
    /// Globally routable addresses or networks that reach the inside (the public address a
    /// 1:1 NAT or a load balancer maps to this host, the organisation's own public ranges):
    /// class `declared_internal`, reached only with an `@egress("internal")` permit, by the egress
    /// proxy and Warden's own upstream connections alike.
    #[serde(deserialize_with = "networks")]
    pub internal_networks: Vec<IpNet>,
}

/// `internal_networks` entries: a network (`203.0.113.0/24`) or one address (`203.0.113.7`).
fn networks<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| {
            let text = text.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "{text:?} is not an address (203.0.113.7) or a network (203.0.113.0/24)"
                    ))
                })
        })
        .collect()
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            listen: None,
            tls: None,
            nameservers: Vec::new(),
            resolve_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            first_bytes_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(300),
            tunnel_idle_timeout: Duration::from_secs(3600),
            max_tunnels_per_agent: 64,
            evict_idle_after: None,
            intercept: Default::default(),
            server_first: Default::default(),
            internal_networks: Vec::new(),
        }
    }
}

/// `egress.evict_idle_after` when it is not set (and `tunnel_idle_timeout` is longer).
pub const DEFAULT_EVICT_IDLE_AFTER: Duration = Duration::from_secs(30);

impl EgressConfig {
    /// How long a tunnel must have carried no byte before it is closed to make room for
    /// another of its agent's: `egress.evict_idle_after`, else 30 s, or `tunnel_idle_timeout`
    /// if that is shorter (a configuration that shortens only the idle timeout keeps loading).
    pub fn evict_idle_after(&self) -> Duration {
        self.evict_idle_after
            .unwrap_or(DEFAULT_EVICT_IDLE_AFTER.min(self.tunnel_idle_timeout))
    }

    /// `(key, message)` for every mistake; `identity_required`: whether agents must
    /// authenticate; `taken`: the other listeners' addresses.
    pub fn validate(
        &self,
        identity_required: bool,
        taken: &[(&str, SocketAddr)],
    ) -> Vec<(String, String)> {
        let mut errors = self.intercept.validate();
        if self.max_tunnels_per_agent == 0 {
            errors.push((
                "egress.max_tunnels_per_agent".to_owned(),
                "must be at least 1: the tunnels one agent may have open at once (default 64)"
                    .to_owned(),
            ));
        }
        errors.extend(self.server_first.validate(self.first_bytes_timeout));
        // Checked whether or not egress.listen is set: the egress of local MCP servers'
        // processes (sandbox.network: egress) uses them without it.
        for (key, timeout) in [
            ("resolve_timeout", self.resolve_timeout),
            ("connect_timeout", self.connect_timeout),
            ("first_bytes_timeout", self.first_bytes_timeout),
            ("response_timeout", self.response_timeout),
            ("tunnel_idle_timeout", self.tunnel_idle_timeout),
            ("evict_idle_after", self.evict_idle_after()),
        ] {
            if timeout.is_zero() {
                errors.push((
                    format!("egress.{key}"),
                    "must be longer than 0s (e.g. 5s)".to_owned(),
                ));
            }
        }
        if let Some(evict) = self.evict_idle_after
            && evict > self.tunnel_idle_timeout
        {
            errors.push((
                "egress.evict_idle_after".to_owned(),
                format!(
                    "is {}, longer than egress.tunnel_idle_timeout ({}), which closes an idle \
                     tunnel first: set it at most that long, or leave it unset (30s, or \
                     tunnel_idle_timeout if shorter)",
                    humantime::format_duration(evict),
                    humantime::format_duration(self.tunnel_idle_timeout)
                ),
            ));
        }
        let Some(listen) = self.listen else {
            if self.tls.is_some() {
                errors.push((
                    "egress.tls".to_owned(),
                    "is set but egress.listen is not: name the address the egress proxy \
                     listens on (e.g. 127.0.0.1:3128), or remove egress.tls"
                        .to_owned(),
                ));
            }
            return errors;
        };
        if !identity_required && !listen.ip().is_loopback() {
            errors.push((
                "egress.listen".to_owned(),
                format!(
                    "refusing to listen on {listen} while agent authentication is off \
                     (identity.required: false): anyone who reaches this address could reach \
                     whatever Warden reaches. Turn authentication on or listen on 127.0.0.1"
                ),
            ));
        }
        for (name, addr) in taken {
            if *addr == listen {
                errors.push((
                    "egress.listen".to_owned(),
                    format!("the egress proxy must not share the address {listen} of {name}"),
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_an_open_listener_without_authentication() {
        let config = EgressConfig {
            listen: Some("0.0.0.0:3128".parse().unwrap()),
            ..Default::default()
        };
        let errors = config.validate(false, &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].1.contains("refusing to listen on 0.0.0.0:3128"));
        assert!(config.validate(true, &[]).is_empty());
        let loopback = EgressConfig {
            listen: Some("127.0.0.1:3128".parse().unwrap()),
            ..Default::default()
        };
        assert!(loopback.validate(false, &[]).is_empty());
    }

    #[test]
    fn the_timeouts_are_checked_without_a_listener_too() {
        let unlistened = EgressConfig {
            connect_timeout: Duration::ZERO,
            evict_idle_after: Some(Duration::from_secs(7200)),
            ..Default::default()
        };
        assert!(unlistened.listen.is_none());
        let keys: Vec<String> = unlistened
            .validate(true, &[])
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            ["egress.connect_timeout", "egress.evict_idle_after"],
            "{keys:?}"
        );
    }

    #[test]
    fn the_eviction_threshold_is_above_zero_and_at_most_the_idle_timeout() {
        let listening = |evict: u64, idle: u64| EgressConfig {
            listen: Some("127.0.0.1:3128".parse().unwrap()),
            evict_idle_after: Some(Duration::from_secs(evict)),
            tunnel_idle_timeout: Duration::from_secs(idle),
            ..Default::default()
        };
        assert!(listening(30, 3600).validate(true, &[]).is_empty());
        assert!(listening(60, 60).validate(true, &[]).is_empty());
        let errors = listening(0, 60).validate(true, &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "egress.evict_idle_after");
        assert!(errors[0].1.contains("longer than 0s"), "{errors:?}");
        let errors = listening(61, 60).validate(true, &[]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "egress.evict_idle_after");
        assert!(
            errors[0]
                .1
                .contains("is 1m 1s, longer than egress.tunnel_idle_timeout (1m)"),
            "{errors:?}"
        );
        let config: EgressConfig = serde_saphyr::from_str("evict_idle_after: 1s").unwrap();
        assert_eq!(config.evict_idle_after(), Duration::from_secs(1));
        assert_eq!(
            EgressConfig::default().evict_idle_after(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_shorter_idle_timeout_alone_shortens_the_eviction_threshold_and_still_loads() {
        let config: EgressConfig =
            serde_saphyr::from_str("listen: 127.0.0.1:3128\ntunnel_idle_timeout: 1s").unwrap();
        assert!(
            config.validate(true, &[]).is_empty(),
            "{:?}",
            config.validate(true, &[])
        );
        assert_eq!(config.evict_idle_after(), Duration::from_secs(1));
    }

    #[test]
    fn internal_networks_take_addresses_and_networks_and_name_a_bad_entry() {
        let config: EgressConfig = serde_saphyr::from_str(
            "internal_networks: [203.0.113.7, 198.51.100.0/24, \"2001:db8::1/32\"]",
        )
        .unwrap();
        let shown: Vec<String> = config
            .internal_networks
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            ["203.0.113.7/32", "198.51.100.0/24", "2001:db8::/32"]
        );
        let error = serde_saphyr::from_str::<EgressConfig>("internal_networks: [corp.example]")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"corp.example\" is not an address (203.0.113.7) or a network"),
            "{error}"
        );
    }

    #[test]
    fn refuses_an_address_another_listener_has() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let config = EgressConfig {
            listen: Some(addr),
            ..Default::default()
        };
        let errors = config.validate(true, &[("listen.proxy", addr)]);
        assert!(errors[0].1.contains("listen.proxy"), "{errors:?}");
    }
}
