//! `egress.server_first`: destination ports whose protocols have the server speak first
//! (SSH as git uses it through a ProxyCommand, SMTP, IMAP, MySQL). A tunnel to such a port
//! whose client sends nothing within `wait` is judged with `scheme == "tcp"` and no server
//! name, then connected, so the server's banner reaches the client. Other ports wait for the
//! client's first bytes (`egress.first_bytes_timeout`) as always.

use std::time::Duration;

use serde::Deserialize;

/// `egress.server_first` section: off (no port) by default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerFirstConfig {
    /// Destination ports where the server may speak first (e.g. `[22, 25, 3306]`).
    pub ports: Vec<u16>,
    /// How long a tunnel to one of `ports` waits for the client's first bytes before it is
    /// judged as `tcp` and connected.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
}

impl Default for ServerFirstConfig {
    fn default() -> Self {
        ServerFirstConfig {
            ports: Vec::new(),
            wait: Duration::from_millis(500),
        }
    }
}

/// Ports whose clients speak TLS first: judged as `tcp`, their TLS would skip the server-name
/// check, so they cannot be listed.
const TLS_PORTS: [u16; 1] = [443];

impl ServerFirstConfig {
    /// How long a tunnel to `port` waits for its client before the server may speak first;
    /// `None`: the port is not listed, the tunnel waits for the client's first bytes.
    pub fn wait_on(&self, port: u16) -> Option<Duration> {
        self.ports.contains(&port).then_some(self.wait)
    }

    /// `(key, message)` for every mistake; `first_bytes_timeout`: the wait must be shorter.
    pub fn validate(&self, first_bytes_timeout: Duration) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.wait.is_zero() || self.wait >= first_bytes_timeout {
            errors.push((
                "egress.server_first.wait".to_owned(),
                format!(
                    "must be longer than 0s and shorter than egress.first_bytes_timeout ({}), \
                     e.g. 500ms",
                    humantime::format_duration(first_bytes_timeout)
                ),
            ));
        }
        for port in &self.ports {
            if *port == 0 || TLS_PORTS.contains(port) {
                errors.push((
                    "egress.server_first.ports".to_owned(),
                    format!(
                        "cannot list port {port}: list the ports of protocols whose server \
                         speaks first (22, 25, 143, 3306); a TLS port judged as tcp would skip \
                         the check of its server name"
                    ),
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
    fn only_listed_ports_let_the_server_speak_first() {
        let off = ServerFirstConfig::default();
        assert_eq!(off.wait_on(22), None, "off by default");
        let config: ServerFirstConfig =
            serde_saphyr::from_str("{ports: [22, 3306], wait: 300ms}").unwrap();
        assert_eq!(config.wait_on(22), Some(Duration::from_millis(300)));
        assert_eq!(config.wait_on(443), None);
        assert!(config.validate(Duration::from_secs(10)).is_empty());
    }

    #[test]
    fn refuses_a_tls_port_and_a_wait_as_long_as_the_first_bytes_timeout() {
        let config = ServerFirstConfig {
            ports: vec![22, 443],
            wait: Duration::from_secs(10),
        };
        let errors = config.validate(Duration::from_secs(10));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].0, "egress.server_first.wait");
        assert!(
            errors[0]
                .1
                .contains("shorter than egress.first_bytes_timeout (10s)")
        );
        assert!(errors[1].1.contains("cannot list port 443"), "{errors:?}");
    }
}
