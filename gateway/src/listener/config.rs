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
    /// How long each listener keeps a connection with no request in flight.
    pub idle_timeout: IdleTimeouts,
    /// The most HTTP/2 streams one connection of each listener may have open at once.
    pub max_concurrent_streams: MaxStreams,
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
            idle_timeout: IdleTimeouts::default(),
            max_concurrent_streams: MaxStreams::default(),
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

/// `listen.idle_timeout:` how long each listener keeps a connection with no request in flight
/// before it closes it gracefully (HTTP/2 with a GOAWAY), as Envoy's `idle_timeout` does, so
/// that idle connections, which HTTP/2 pings keep alive, give their slot
/// (`listen.max_connections`) back.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IdleTimeouts {
    /// The agent-facing proxy listener.
    #[serde(with = "humantime_serde")]
    pub proxy: Duration,
    /// The egress proxy; an open tunnel keeps its connection busy.
    #[serde(with = "humantime_serde")]
    pub egress: Duration,
    /// The admin listener.
    #[serde(with = "humantime_serde")]
    pub admin: Duration,
    /// The approval console.
    #[serde(with = "humantime_serde")]
    pub console: Duration,
}

impl Default for IdleTimeouts {
    fn default() -> Self {
        IdleTimeouts {
            proxy: Duration::from_secs(60),
            egress: Duration::from_secs(60),
            admin: Duration::from_secs(30),
            console: Duration::from_secs(30),
        }
    }
}

/// `listen.max_concurrent_streams:` the most streams an HTTP/2 client may have open at once
/// on one connection of each listener (`SETTINGS_MAX_CONCURRENT_STREAMS`; a client waits for
/// one to end before it opens another), so one connection's slot carries bounded work.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MaxStreams {
    /// The agent-facing proxy listener.
    pub proxy: u32,
    /// The egress proxy: tunnels (`CONNECT`) per connection among them.
    pub egress: u32,
    /// The admin listener.
    pub admin: u32,
    /// The approval console.
    pub console: u32,
}

impl Default for MaxStreams {
    fn default() -> Self {
        MaxStreams {
            proxy: 100,
            egress: 100,
            admin: 16,
            console: 32,
        }
    }
}

impl ListenConfig {
    /// The idle timeout and streams per connection of the listener named `listener`
    /// (`proxy`, `egress`, `admin`, `console`).
    pub fn http_bounds(&self, listener: Listener) -> (Duration, u32) {
        let (idle, streams) = (&self.idle_timeout, &self.max_concurrent_streams);
        match listener {
            Listener::Proxy => (idle.proxy, streams.proxy),
            Listener::Egress => (idle.egress, streams.egress),
            Listener::Admin => (idle.admin, streams.admin),
            Listener::Console => (idle.console, streams.console),
        }
    }
}

/// One of Warden's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Proxy,
    Egress,
    Admin,
    Console,
}

impl Listener {
    /// Every listener.
    pub const ALL: [Listener; 4] = [
        Listener::Proxy,
        Listener::Egress,
        Listener::Admin,
        Listener::Console,
    ];

    /// Its name in configuration keys and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy",
            Listener::Egress => "egress",
            Listener::Admin => "admin",
            Listener::Console => "console",
        }
    }
}
