//! `listen:` where Warden accepts connections, and `runtime:` the proxy's worker threads.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `listen:` where Warden accepts connections.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// Agent-facing proxy listener.
    pub proxy: SocketAddr,
    /// Admin listener: metrics, health.
    pub admin: SocketAddr,
    /// TLS for the proxy listener.
    pub tls: Option<TlsConfig>,
    /// TLS for the admin listener.
    pub admin_tls: Option<TlsConfig>,
    /// How long in-flight requests may run after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long Warden keeps serving with `/readyz` answering 503 before it
    /// stops accepting, so that load balancers that poll readiness stop sending first.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// The most connections each listener holds open at once.
    pub max_connections: MaxConnections,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            proxy: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9090)),
            tls: None,
            admin_tls: None,
            shutdown_grace: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            max_connections: MaxConnections::default(),
        }
    }
}

/// Server TLS: certificate chain and key files (PEM), reloaded when they change.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA bundle (PEM) for verifying client certificates.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate (when `client_ca` is set).
    #[serde(default = "yes")]
    pub require_client_cert: bool,
}

fn yes() -> bool {
    true
}

/// `runtime:` the proxy's worker threads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Proxy worker threads, each with its own event loop and upstream connection pool; 0 (the
    /// default) means one per CPU core. Like nginx's `worker_processes` or Envoy's
    /// `--concurrency`: pin it when Warden shares the machine.
    pub worker_threads: usize,
}

impl WorkersConfig {
    /// Most worker threads accepted.
    pub const MAX_WORKER_THREADS: usize = 1024;
}

/// `listen.max_connections:` the most connections each listener holds open at once. Beyond
/// its cap a listener stops accepting: new connections wait in the kernel's backlog (as
/// nginx does at `worker_connections`) until one of its connections closes, so a flood of
/// connections on one listener cannot take the file descriptors the others need.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MaxConnections {
    /// The agent-facing proxy listener (`listen.proxy`), all its workers together.
    pub proxy: usize,
    /// The egress proxy (`egress.listen`), all its workers together; a tunnel counts until it
    /// closes.
    pub egress: usize,
    /// The admin listener (`listen.admin`): health, metrics, the admin API.
    pub admin: usize,
    /// The approval console (`console.listen`).
    pub console: usize,
}

impl Default for MaxConnections {
    fn default() -> Self {
        MaxConnections {
            proxy: 8192,
            egress: 2048,
            admin: 128,
            console: 128,
        }
    }
}

impl MaxConnections {
    /// Each cap with the key that sets it.
    pub fn each(&self) -> [(&'static str, usize); 4] {
        [
            ("listen.max_connections.proxy", self.proxy),
            ("listen.max_connections.egress", self.egress),
            ("listen.max_connections.admin", self.admin),
            ("listen.max_connections.console", self.console),
        ]
    }
}
