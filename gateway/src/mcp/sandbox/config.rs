//! `mcp.sandbox` and `mcp.servers[].sandbox`: whether local servers run sandboxed, and what a
//! server may reach beyond the system and its own directory.

use std::path::PathBuf;

use serde::Deserialize;

/// `mcp.sandbox`: the default for every local server.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// `enforce` (the default), `best_effort` or `off`.
    pub mode: SandboxMode,
    /// What of Warden's no sandboxed server may reach: not a key of the file, but what the
    /// rest of it names (`protected.rs`), kept for the check at every start.
    #[serde(skip)]
    pub protected: Vec<Protected>,
}

/// Whether a local server runs sandboxed.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(try_from = "ModeSpec")]
pub enum SandboxMode {
    /// Landlock confines the process; on a kernel that cannot, the configuration is refused
    /// at load (`kernel.rs`).
    #[default]
    Enforce,
    /// What the kernel's Landlock supports applies, the rest is named in a warning at start
    /// and reload (`warden_mcp_sandbox_partial{server} 1`).
    BestEffort,
    /// The process runs with everything Warden's user can reach (logged as a warning at
    /// start, `warden_mcp_sandboxed{server} 0`).
    Off,
}

/// `mode:` as written: YAML reads a bare `off` as false.
#[derive(Deserialize)]
#[serde(untagged)]
enum ModeSpec {
    Word(String),
    Bool(bool),
}

impl TryFrom<ModeSpec> for SandboxMode {
    type Error = String;

    fn try_from(spec: ModeSpec) -> Result<SandboxMode, String> {
        match spec {
            ModeSpec::Word(w) if w == "enforce" => Ok(SandboxMode::Enforce),
            ModeSpec::Word(w) if w == "best_effort" => Ok(SandboxMode::BestEffort),
            ModeSpec::Word(w) if w == "off" => Ok(SandboxMode::Off),
            ModeSpec::Bool(false) => Ok(SandboxMode::Off),
            ModeSpec::Word(w) => Err(format!(
                "{w:?} is not a sandbox mode: use `enforce`, `best_effort` or `off`"
            )),
            ModeSpec::Bool(true) => {
                Err("give the sandbox mode as `enforce`, `best_effort` or `off`".into())
            }
        }
    }
}

/// `mcp.servers[].sandbox`: one server's sandbox.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSandbox {
    /// Instead of `mcp.sandbox.mode`.
    pub mode: Option<SandboxMode>,
    /// Absolute paths (files or directories, with what is beneath) it may read and execute.
    pub read: Vec<PathBuf>,
    /// Absolute paths it may read, write, create and remove in.
    pub write: Vec<PathBuf>,
    /// The TCP connections it may make.
    pub network: Network,
    /// Whether it may create Unix sockets (`socket(AF_UNIX)`), and so connect to those with a
    /// path, which Landlock does not control: the Docker socket, D-Bus, systemd's.
    pub unix_sockets: bool,
    /// With `network: egress`: the most connections one process holds open on its egress
    /// listener at once (default [`DEFAULT_EGRESS_MAX_CONNECTIONS`]).
    pub egress_max_connections: Option<usize>,
}

/// How many connections one process with `network: egress` holds open on its listener at
/// once, unless its `sandbox.egress_max_connections` says.
pub const DEFAULT_EGRESS_MAX_CONNECTIONS: usize = 64;

/// What a sandboxed server may do on the network: Landlock filters TCP `connect` and `bind` by
/// port, nothing else (not the address, not UDP).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "NetworkSpec")]
pub enum Network {
    /// No restriction.
    #[default]
    Any,
    /// No TCP connection and no TCP listener.
    None,
    /// TCP connections to these ports only (on any address); no TCP listener.
    Ports(Vec<u16>),
    /// Through Warden's egress proxy only: a network namespace of its own with loopback alone,
    /// where Warden listens as the agent's egress proxy (`netns.rs`).
    Egress,
}

/// `network:` as written: a word or a list of ports.
#[derive(Deserialize)]
#[serde(untagged)]
enum NetworkSpec {
    Word(String),
    Ports(Vec<u64>),
}

impl TryFrom<NetworkSpec> for Network {
    type Error = String;

    fn try_from(spec: NetworkSpec) -> Result<Network, String> {
        match spec {
            NetworkSpec::Word(w) if w == "any" => Ok(Network::Any),
            NetworkSpec::Word(w) if w == "none" => Ok(Network::None),
            NetworkSpec::Word(w) if w == "egress" => Ok(Network::Egress),
            NetworkSpec::Word(w) => Err(format!(
                "{w:?} is not a network setting: use `egress` (through Warden's egress proxy \
                 only), `any`, `none` or a list of the TCP ports the server may connect to, \
                 such as [443]"
            )),
            NetworkSpec::Ports(ports) => ports
                .into_iter()
                .map(|p| match u16::try_from(p) {
                    Ok(p) if p != 0 => Ok(p),
                    _ => Err(format!(
                        "{p} is not a TCP port a server can connect to: give ports from 1 to \
                         65535 (Landlock filters by port only, not by host)"
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Network::Ports),
        }
    }
}

impl ServerSandbox {
    /// The mode in force for this server, `default` being `mcp.sandbox.mode`.
    pub fn mode(&self, default: SandboxMode) -> SandboxMode {
        self.mode.unwrap_or(default)
    }

    /// With `network: egress`: the most connections one process holds open on its listener.
    pub fn egress_max_connections(&self) -> usize {
        self.egress_max_connections
            .unwrap_or(DEFAULT_EGRESS_MAX_CONNECTIONS)
    }

    /// `(key, message)` for every mistake; `key` is the server's (`mcp.servers[0]`).
    pub fn validate(&self, key: &str) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        match self.egress_max_connections {
            Some(0) => errors.push((
                format!("{key}.sandbox.egress_max_connections"),
                "must be more than 0: a process that may hold no connection has no way out; \
                 give the most connections one process may hold open through Warden's egress \
                 proxy at once (default 64), or set network to `none`"
                    .to_owned(),
            )),
            Some(_) if self.network != Network::Egress => errors.push((
                format!("{key}.sandbox.egress_max_connections"),
                "applies only with sandbox.network: egress (the connections a process holds \
                 on its egress listener); remove it, or set network to `egress`"
                    .to_owned(),
            )),
            _ => {}
        }
        for (field, paths) in [("read", &self.read), ("write", &self.write)] {
            for (j, path) in paths.iter().enumerate() {
                if !path.is_absolute() {
                    errors.push((
                        format!("{key}.sandbox.{field}[{j}]"),
                        format!(
                            "{} is not an absolute path: give the full path (from `/`) the \
                             server may {}",
                            path.display(),
                            if field == "read" { "read" } else { "write in" }
                        ),
                    ));
                }
            }
        }
        // A Unix socket with a path is reached from any network namespace: the Docker
        // socket or D-Bus would be a way out the egress proxy never sees.
        if self.unix_sockets && self.network == Network::Egress {
            errors.push((
                format!("{key}.sandbox.unix_sockets"),
                "cannot be true with sandbox.network: egress: a Unix socket with a path (the \
                 Docker socket, D-Bus) is reachable from the server's network namespace, a \
                 way out past Warden's egress proxy; remove unix_sockets, or give network \
                 another value (`any`, `none`, a list of ports)"
                    .to_owned(),
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(yaml: &str) -> Result<ServerSandbox, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn unix_sockets_are_refused_with_network_egress() {
        let both = sandbox("{network: egress, unix_sockets: true}").unwrap();
        let errors = both.validate("mcp.servers[0]");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "mcp.servers[0].sandbox.unix_sockets");
        assert!(errors[0].1.contains("network: egress"), "{}", errors[0].1);
        for fine in [
            "{network: egress}",
            "{network: any, unix_sockets: true}",
            "{network: [443], unix_sockets: true}",
        ] {
            assert!(sandbox(fine).unwrap().validate("k").is_empty(), "{fine}");
        }
    }

    #[test]
    fn egress_max_connections_is_more_than_zero_and_only_with_network_egress() {
        let default = sandbox("{network: egress}").unwrap();
        assert_eq!(default.egress_max_connections(), 64);
        let set = sandbox("{network: egress, egress_max_connections: 8}").unwrap();
        assert!(set.validate("k").is_empty());
        assert_eq!(set.egress_max_connections(), 8);
        for (yaml, says) in [
            (
                "{network: egress, egress_max_connections: 0}",
                "more than 0",
            ),
            (
                "{network: [443], egress_max_connections: 8}",
                "only with sandbox.network: egress",
            ),
        ] {
            let errors = sandbox(yaml).unwrap().validate("mcp.servers[0]");
            assert_eq!(errors.len(), 1, "{yaml}: {errors:?}");
            assert_eq!(errors[0].0, "mcp.servers[0].sandbox.egress_max_connections");
            assert!(errors[0].1.contains(says), "{}", errors[0].1);
        }
        assert!(sandbox("{network: egress, egress_max_connections: -1}").is_err());
    }

    #[test]
    fn network_is_any_none_or_a_list_of_ports() {
        assert_eq!(sandbox("{}").unwrap().network, Network::Any);
        assert_eq!(sandbox("network: none").unwrap().network, Network::None);
        assert_eq!(sandbox("network: egress").unwrap().network, Network::Egress);
        assert_eq!(
            sandbox("network: [443, 8443]").unwrap().network,
            Network::Ports(vec![443, 8443])
        );
        let e = sandbox("network: all").unwrap_err();
        assert!(e.contains("\"all\" is not a network setting"), "{e}");
        let e = sandbox("network: [0]").unwrap_err();
        assert!(e.contains("0 is not a TCP port"), "{e}");
        let e = sandbox("network: [70000]").unwrap_err();
        assert!(e.contains("70000 is not a TCP port"), "{e}");
    }

    #[test]
    fn paths_must_be_absolute() {
        let s = sandbox("read: [/srv/docs, docs]\nwrite: [out]").unwrap();
        let keys: Vec<String> = s
            .validate("mcp.servers[0]")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "mcp.servers[0].sandbox.read[1]",
                "mcp.servers[0].sandbox.write[0]"
            ]
        );
    }

    #[test]
    fn a_server_takes_the_default_mode_unless_it_says_otherwise() {
        assert_eq!(
            sandbox("{}").unwrap().mode(SandboxMode::Enforce),
            SandboxMode::Enforce
        );
        assert_eq!(
            sandbox("mode: off").unwrap().mode(SandboxMode::Enforce),
            SandboxMode::Off
        );
        assert_eq!(
            sandbox("mode: enforce").unwrap().mode(SandboxMode::Off),
            SandboxMode::Enforce
        );
        // Through the configuration's reader, which takes a bare `off` for false.
        let parsed = crate::config::load::parse_partial(
            "mcp:\n  sandbox: {mode: off}\n  servers:\n    - {name: a, command: x, sandbox: {mode: 'off'}}\n  endpoints: [{name: e, servers: [a]}]\n",
            None,
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert_eq!(parsed.config.mcp.sandbox.mode, SandboxMode::Off);
        assert_eq!(
            parsed.config.mcp.servers[0].sandbox.mode,
            Some(SandboxMode::Off)
        );
        assert_eq!(
            sandbox("mode: best_effort")
                .unwrap()
                .mode(SandboxMode::Enforce),
            SandboxMode::BestEffort
        );
        assert!(!sandbox("{}").unwrap().unix_sockets);
        assert!(sandbox("unix_sockets: true").unwrap().unix_sockets);
        let e = sandbox("mode: lax").unwrap_err();
        assert!(e.contains("\"lax\" is not a sandbox mode"), "{e}");
    }
}

/// One thing of Warden's a server must not reach: what it is, where, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    pub what: String,
    pub path: PathBuf,
    pub guard: Guard,
}

/// What a server must not do to a protected path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Read it (nor write it): a secret, or what Warden keeps.
    Read,
    /// Write it: something Warden trusts, which reading reveals nothing of.
    Write,
}

/// The variables Warden sets for a server with `network: egress` (`super::proxy_env`): every
/// proxy variable common clients read, both cases, naming the proxy in its namespace; no
/// exception (`NO_PROXY` empty); Node's switch to honour them (Node 22.21 / 24 and later).
pub const PROXY_VARIABLES: [&str; 9] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "NODE_USE_ENV_PROXY",
];
