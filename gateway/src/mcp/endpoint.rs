//! What an endpoint is made of: the servers it combines (a local process, or a remote server
//! over Streamable HTTP or the legacy HTTP+SSE transport with its credential provider), the
//! separator of their names, how it answers denials, its timeouts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::config::{self, McpConfig, McpDenyStyle, RemoteTransport};
use super::sandbox::{Sandbox, SandboxConfig, SandboxMode};
use crate::config::error::ConfigErrors;
use crate::route::connector::CredentialInjection;
use crate::secrets::config::NO_VAULT_SECTION;
use crate::secrets::{self, CredentialProvider, CredentialSource, Injection, own};
use crate::upstream::breaker::{BreakerConfig, MCP_PREFIX};
use crate::upstream::config::UpstreamConfig;
use crate::vault::SecretStore;
use zeroize::Zeroizing;

/// How Warden starts a local server.
#[derive(Debug)]
pub struct StdioCommand {
    pub program: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Variables whose values are read from their source at each start.
    pub secret_env: Vec<(String, CredentialSource)>,
    /// The store `vault` sources of `secret_env` are read through.
    pub secrets: Option<Arc<SecretStore>>,
    pub cwd: Option<PathBuf>,
    /// Its sandbox; `None` when it runs unsandboxed (`sandbox.mode: off`).
    pub sandbox: Option<Sandbox>,
}

impl StdioCommand {
    /// The values of `secret_env`, read now (a Vault read only when not held already).
    pub async fn secret_values(&self) -> Result<Vec<(String, Zeroizing<String>)>, String> {
        let mut values = Vec::with_capacity(self.secret_env.len());
        for (name, source) in &self.secret_env {
            let key = format!("secret_env.{name}");
            let value = own::read(source, self.secrets.as_ref(), &key)
                .await
                .map_err(|e| format!("cannot read {key}: {e}"))?;
            values.push((name.clone(), Zeroizing::new(value.trim().to_owned())));
        }
        Ok(values)
    }
}

/// Where a remote server is, and the credential Warden sends it.
#[derive(Debug)]
pub struct RemoteServer {
    pub url: String,
    pub credential: Option<Arc<dyn CredentialProvider>>,
}

/// How a server is reached.
#[derive(Debug)]
pub enum ServerKind {
    Stdio(Arc<StdioCommand>),
    /// Streamable HTTP.
    Http(Arc<RemoteServer>),
    /// The legacy HTTP+SSE transport: `url` is the server's event stream.
    LegacySse(Arc<RemoteServer>),
}

/// One upstream server.
#[derive(Debug)]
pub struct Server {
    /// The Cedar `McpServer` id and the prefix of its names.
    pub name: Arc<str>,
    pub kind: ServerKind,
    /// Its circuit breaker's label (`mcp:<name>`, the metrics' `upstream`).
    pub upstream: Arc<str>,
    /// Its circuit breaker's settings.
    pub breaker: BreakerConfig,
    /// How many requests it may send the agent a minute, in each agent session.
    pub requests_to_agent_per_minute: u32,
}

/// One endpoint: the servers it combines and how it answers.
#[derive(Debug)]
pub struct Endpoint {
    /// The route's name.
    pub name: Arc<str>,
    /// Its path prefix.
    pub prefix: String,
    pub servers: Vec<Arc<Server>>,
    /// The servers' names, in order.
    pub names: Vec<Arc<str>>,
    /// Between a server's name and its tools' and prompts' names.
    pub separator: Arc<str>,
    pub on_deny: McpDenyStyle,
    /// How long one upstream request may take.
    pub request_timeout: Duration,
    /// How long a session may stay unused.
    pub idle_timeout: Duration,
    /// Most sessions open at once (over every endpoint).
    pub max_sessions: usize,
    /// How long an ended answer stream's events stay held for a resuming agent.
    pub resume_window: Duration,
    /// Most sessions one agent holds at once (over every endpoint).
    pub max_sessions_per_agent: usize,
    /// The HTTP client its remote servers are reached with (the address guard of
    /// `upstream:`, no redirects).
    pub http: reqwest::Client,
}

impl Endpoint {
    /// The endpoints of `config` (already validated); `secrets` is the store of the `vault:`
    /// section, if any; `upstream` gives the circuit breaker of a server that sets none
    /// (`upstream.breaker`) and the address guard remote servers are reached behind
    /// (`upstream.allow_private`, `upstream.nameservers`); local servers' own directories are
    /// under `data_dir`.
    pub fn build_all(
        config: &McpConfig,
        data_dir: &std::path::Path,
        upstream: &UpstreamConfig,
        secrets: Option<&Arc<SecretStore>>,
    ) -> Result<Vec<Arc<Endpoint>>, ConfigErrors> {
        let breaker = &upstream.breaker;
        let http = super::guarded_client::client(upstream).map_err(|e| match e {
            super::guarded_client::ClientSetupError::Resolver(_) => {
                ConfigErrors::one("upstream.nameservers", e.to_string())
            }
            super::guarded_client::ClientSetupError::Build(_) => {
                ConfigErrors::one("mcp.servers", e.to_string())
            }
        })?;
        let servers: Vec<Arc<Server>> = config
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| server(i, s, &config.sandbox, data_dir, breaker, secrets))
            .collect::<Result<_, _>>()?;
        Ok(config
            .endpoints
            .iter()
            .map(|e| {
                let chosen: Vec<Arc<Server>> = e
                    .servers
                    .iter()
                    .filter_map(|name| servers.iter().find(|s| &*s.name == name).cloned())
                    .collect();
                Arc::new(Endpoint {
                    name: Arc::from(e.name.as_str()),
                    prefix: e.prefix(),
                    names: chosen.iter().map(|s| Arc::clone(&s.name)).collect(),
                    servers: chosen,
                    separator: Arc::from(config.separator.as_str()),
                    on_deny: e.on_deny,
                    request_timeout: config.request_timeout,
                    idle_timeout: config.session_idle_timeout,
                    max_sessions: config.max_sessions,
                    resume_window: config.resume_window,
                    max_sessions_per_agent: config.max_sessions_per_agent,
                    http: http.clone(),
                })
            })
            .collect())
    }
}

/// Server `i` of the configuration, ready to be started or reached.
fn server(
    i: usize,
    c: &config::ServerConfig,
    sandbox: &SandboxConfig,
    data_dir: &std::path::Path,
    breaker: &BreakerConfig,
    secrets: Option<&Arc<SecretStore>>,
) -> Result<Arc<Server>, ConfigErrors> {
    let key = |k: &str| {
        if k.is_empty() {
            format!("mcp.servers[{i}]")
        } else {
            format!("mcp.servers[{i}].{k}")
        }
    };
    let kind = match (&c.command, &c.url) {
        (Some(program), _) => {
            if c.secret_env
                .values()
                .any(|s| matches!(s, CredentialSource::Vault(_)))
                && secrets.is_none()
            {
                return Err(ConfigErrors::one(
                    key("secret_env"),
                    NO_VAULT_SECTION.to_owned(),
                ));
            }
            ServerKind::Stdio(Arc::new(StdioCommand {
                program: program.clone(),
                args: c.args.clone(),
                env: c.env.clone(),
                secret_env: c
                    .secret_env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                secrets: secrets.cloned(),
                cwd: c.cwd.clone(),
                sandbox: match c.sandbox.mode(sandbox.mode) {
                    SandboxMode::Off => None,
                    mode => Some(Sandbox::new(
                        &c.name,
                        &c.sandbox,
                        mode,
                        data_dir,
                        &sandbox.protected,
                    )),
                },
            }))
        }
        (None, url) => {
            let default = CredentialInjection {
                header: c
                    .credential_header
                    .clone()
                    .unwrap_or_else(|| "authorization".into()),
                format: c
                    .credential_format
                    .clone()
                    .unwrap_or_else(|| "Bearer {secret}".into()),
                optional: false,
            };
            let credential = match &c.credential {
                None => None,
                Some(source) => {
                    if source.names_principal() {
                        return Err(ConfigErrors::one(
                            key("credential.vault"),
                            "an MCP server's upstream session is shared by the requests of one agent session; a per-principal secret path is not supported here".to_owned(),
                        ));
                    }
                    let injection =
                        Injection::build(Some(&default), c.inject.as_ref()).map_err(|(k, m)| {
                            ConfigErrors::one(key(format!("inject.{k}").trim_end_matches('.')), m)
                        })?;
                    Some(
                        secrets::provider(&c.name, Some(source), &injection, secrets).map_err(
                            |e| ConfigErrors::one(key(&format!("credential.{}", e.key)), e.message),
                        )?,
                    )
                }
            };
            let remote = Arc::new(RemoteServer {
                url: url.clone().unwrap_or_default(),
                credential,
            });
            match c.transport {
                Some(RemoteTransport::Sse) => ServerKind::LegacySse(remote),
                Some(RemoteTransport::StreamableHttp) | None => ServerKind::Http(remote),
            }
        }
    };
    Ok(Arc::new(Server {
        name: Arc::from(c.name.as_str()),
        kind,
        upstream: Arc::from(format!("{MCP_PREFIX}{}", c.name)),
        breaker: c.breaker.unwrap_or(*breaker),
        requests_to_agent_per_minute: c
            .requests_to_agent_per_minute
            .unwrap_or(super::ask_rate::DEFAULT_PER_MINUTE),
    }))
}
