//! The one YAML configuration file, its embedded defaults, and its validation.

//!
//! Each section is owned by the module it configures (`listener::config`, `identity::config`,
//! `route::config`, ...); this file only puts them together.

use serde::Deserialize;
use std::path::PathBuf;

pub use crate::approval::config::ApprovalsConfig;
pub use crate::audit::config::AuditConfig;
pub use crate::identity::config::IdentityConfig;
pub use crate::listener::config::{ListenConfig, TlsConfig, WorkersConfig};
pub use crate::mcp::config::McpConfig;
pub use crate::pins::config::PinsConfig;
pub use crate::policy::config::PolicyConfig;
pub use crate::protocol::config::LimitsConfig;
pub use crate::route::config::{DenyStyle, RouteConfig, default_routes};
pub use crate::state::config::StateConfig;
pub use crate::telemetry::config::{LogConfig, LogFormat, TracesConfig};
pub use crate::upstream::config::UpstreamConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where Warden keeps state (signing keys, audit log, state store). Default
    /// `./warden-data`.
    pub data_dir: PathBuf,
    /// The durable state store (tool pins; later approvals).
    pub state: StateConfig,
    /// Tool-definition pinning.
    pub pins: PinsConfig,
    pub listen: ListenConfig,
    pub identity: IdentityConfig,
    pub policy: PolicyConfig,
    pub audit: AuditConfig,
    pub upstream: UpstreamConfig,
    pub limits: LimitsConfig,
    /// Requests per second and in flight, per agent, group, route, model and tool.
    pub rate_limits: crate::fleet::limits::RateLimitsConfig,
    /// Per-agent session facts for policy (`context.session`).
    pub sessions: crate::fleet::session::SessionsConfig,
    /// Token and cost budgets per agent, group and fleet (`context.budget`).
    pub budgets: crate::fleet::budget::BudgetsConfig,
    pub log: LogConfig,
    /// OpenTelemetry traces over OTLP (off when absent).
    pub traces: Option<TracesConfig>,
    pub runtime: WorkersConfig,
    /// Extra connector descriptions (`*.yaml`), beside the built-in ones.
    pub connectors_dir: Option<PathBuf>,
    /// Path prefix → upstream.
    pub routes: Vec<RouteConfig>,
    /// MCP servers and the endpoints agents reach them through.
    pub mcp: McpConfig,
    /// How Warden reaches Vault (or OpenBao), for credentials with a `vault:` source.
    pub vault: Option<crate::vault::VaultConfig>,
    /// Where the audit log is shipped (Splunk, Elastic, syslog).
    pub siem: crate::siem::config::SiemConfig,
    /// Human approvals: the console's public URL, the second-factor key, notifications.
    pub approvals: ApprovalsConfig,
    /// The approval console: its listener, SSO and sessions.
    pub console: crate::console::config::ConsoleConfig,
    /// The egress proxy agents reach the outside through (off without `egress.listen`).
    pub egress: crate::egress::EgressConfig,
    /// Judging the tool calls models propose, and the catalogue of the agents' tools.
    pub propose: crate::propose::ProposeConfig,
    /// Which content detectors run on what leaves.
    pub inspect: crate::inspect::InspectConfig,
    /// Canary tokens: how replicas learn of them, where a hit is announced.
    pub canaries: crate::canary::CanaryConfig,
    /// Fleet controls: quarantine and its triggers.
    pub fleet: crate::fleet::FleetConfig,
    /// The admin API on the admin listener (off by default).
    pub admin: crate::admin::config::AdminConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("warden-data"),
            state: StateConfig::default(),
            pins: PinsConfig::default(),
            listen: ListenConfig::default(),
            identity: IdentityConfig::default(),
            policy: PolicyConfig::default(),
            audit: AuditConfig::default(),
            upstream: UpstreamConfig::default(),
            limits: LimitsConfig::default(),
            rate_limits: Default::default(),
            sessions: Default::default(),
            budgets: Default::default(),
            log: LogConfig::default(),
            traces: None,
            runtime: WorkersConfig::default(),
            connectors_dir: None,
            routes: default_routes(),
            mcp: McpConfig::default(),
            vault: None,
            siem: Default::default(),
            approvals: ApprovalsConfig::default(),
            console: Default::default(),
            egress: Default::default(),
            propose: Default::default(),
            inspect: Default::default(),
            canaries: Default::default(),
            fleet: Default::default(),
            admin: Default::default(),
        }
    }
}

pub mod error;
pub mod files;
pub mod load;
pub mod locate;
pub mod section;
#[cfg(test)]
mod secure_defaults;
pub mod suggest;
pub mod url;
pub mod validate;
pub mod workdir;
pub mod yaml;
