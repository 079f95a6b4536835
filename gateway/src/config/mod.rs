//! The one YAML configuration file, its embedded defaults, and its validation.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::audit::config::AuditConfig;
use crate::identity::config::IdentityConfig;
use crate::policy::config::PolicyConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where Warden keeps state (signing keys, audit log). Default `./warden-data`.
    pub data_dir: PathBuf,
    pub listen: ListenConfig,
    pub identity: IdentityConfig,
    pub policy: PolicyConfig,
    pub audit: AuditConfig,
    pub upstream: UpstreamConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub runtime: RuntimeConfig,
    /// Extra connector descriptions (`*.yaml`), beside the built-in ones.
    pub connectors_dir: Option<PathBuf>,
    /// Path prefix → upstream.
    pub routes: Vec<RouteConfig>,
}

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
}

/// `limits:` request size and similar guards.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted, bytes.
    pub max_request_bytes: usize,
}

/// `log:` process logs (not the audit log).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `warden=debug`. `RUST_LOG` overrides it.
    pub level: String,
    /// `json` or `text`.
    pub format: LogFormat,
    /// One log line per request. Off by default: the audit log already records every request
    /// (with its request id and principal) durably.
    pub access: bool,
}

/// `runtime:` the proxy's worker threads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Proxy worker threads, each with its own event loop and upstream connection pool; 0 (the
    /// default) means one per CPU core. Like nginx's `worker_processes` or Envoy's
    /// `--concurrency`: pin it when Warden shares the machine.
    pub worker_threads: usize,
}

impl RuntimeConfig {
    /// Most worker threads accepted.
    pub const MAX_WORKER_THREADS: usize = 1024;
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// How a policy refusal reaches the agent.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DenyStyle {
    /// A well-formed completion (streamed when asked) whose text explains the refusal.
    #[default]
    Completion,
    /// An HTTP 403 in the provider's error shape.
    HttpError,
}

/// One route: requests whose path starts with `prefix` go to the connector's upstream.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Route name (metrics, audit, Cedar context). Default: the connector name.
    #[serde(default)]
    pub name: Option<String>,
    /// Path prefix, e.g. `/openai`. Stripped before forwarding.
    pub prefix: String,
    /// Connector: built-in (`openai`, `anthropic`, `gemini`, `ollama`, `openai-compatible`)
    /// or from `connectors_dir`.
    pub connector: String,
    /// Upstream base URL, replacing the connector's.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Cedar `Provider` name, replacing the connector's.
    #[serde(default)]
    pub provider: Option<String>,
    /// Where the upstream credential comes from.
    #[serde(default)]
    pub credential: Option<crate::secrets::CredentialSource>,
    /// How refusals are answered on this route.
    #[serde(default)]
    pub on_deny: DenyStyle,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("warden-data"),
            listen: ListenConfig::default(),
            identity: IdentityConfig::default(),
            policy: PolicyConfig::default(),
            audit: AuditConfig::default(),
            upstream: UpstreamConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            runtime: RuntimeConfig::default(),
            connectors_dir: None,
            routes: default_routes(),
        }
    }
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            proxy: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9090)),
            tls: None,
            admin_tls: None,
            shutdown_grace: Duration::from_secs(30),
        }
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
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Json,
            access: false,
        }
    }
}

/// The routes used when the configuration names none: one per built-in provider, each
/// reading its key from the provider's usual environment variable.
pub fn default_routes() -> Vec<RouteConfig> {
    [
        ("/openai", "openai", "OPENAI_API_KEY"),
        ("/anthropic", "anthropic", "ANTHROPIC_API_KEY"),
        ("/gemini", "gemini", "GEMINI_API_KEY"),
    ]
    .into_iter()
    .map(|(prefix, connector, env)| RouteConfig {
        name: None,
        prefix: prefix.into(),
        connector: connector.into(),
        upstream: None,
        provider: None,
        credential: Some(crate::secrets::CredentialSource::Env(env.into())),
        on_deny: DenyStyle::Completion,
    })
    .chain(std::iter::once(RouteConfig {
        name: None,
        prefix: "/ollama".into(),
        connector: "ollama".into(),
        upstream: None,
        provider: None,
        credential: None,
        on_deny: DenyStyle::Completion,
    }))
    .collect()
}

pub mod error;
pub mod files;
pub mod load;
pub mod locate;
pub mod validate;
