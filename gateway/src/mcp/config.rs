//! `mcp:` the MCP servers Warden reaches (local processes over stdio, remote servers over
//! Streamable HTTP or the legacy HTTP+SSE transport) and the endpoints agents use, each
//! combining one or more servers.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::sandbox::config::{SandboxConfig, ServerSandbox};
use crate::secrets::config::CredentialSource;
use crate::upstream::breaker::BreakerConfig;

/// `mcp:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// The upstream MCP servers, by name.
    pub servers: Vec<ServerConfig>,
    /// The endpoints agents connect to.
    pub endpoints: Vec<EndpointConfig>,
    /// Between a server's name and a tool's or prompt's name in what agents see
    /// (`github_create_issue`). Server names must not contain it.
    pub separator: String,
    /// How long one request to an upstream server may take before the agent gets an error.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long an agent session may stay unused before Warden ends it (and its upstream
    /// sessions and processes).
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
    /// Most agent sessions open at once; a new `initialize` past this is refused (503).
    pub max_sessions: usize,
    /// How long the events of an answer stream stay held after it ended, for an agent whose
    /// connection dropped to collect them (`Last-Event-ID`).
    #[serde(with = "humantime_serde")]
    pub resume_window: Duration,
    /// Most sessions (and legacy event streams) one agent holds open at once; past this its
    /// `initialize` is refused (429), other agents' are not.
    pub max_sessions_per_agent: usize,
    /// Whether local servers run sandboxed (`enforce`, the default, or `off`).
    pub sandbox: SandboxConfig,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            servers: Vec::new(),
            endpoints: Vec::new(),
            separator: "_".into(),
            request_timeout: Duration::from_secs(300),
            session_idle_timeout: Duration::from_secs(3600),
            max_sessions: 1000,
            resume_window: Duration::from_secs(60),
            max_sessions_per_agent: 16,
            sandbox: SandboxConfig::default(),
        }
    }
}

/// One upstream MCP server: `command` (a local process over stdio) or `url` (a remote server,
/// over `transport`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The Cedar `McpServer` id and the prefix of its names (`github`).
    pub name: String,
    /// Program to start (stdio transport).
    pub command: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables set for it (the rest of Warden's environment is not passed,
    /// except `PATH` and `LANG`; `HOME` and `TMPDIR` are its own directory when sandboxed).
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secrets, each from a source (`{ vault: { kv:
    /// ..., field: ... } }`, `{ env: NAME }`, `{ file: PATH }`), read each time the process
    /// starts, and redacted from what it sends.
    pub secret_env: BTreeMap<String, CredentialSource>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// The remote server's endpoint: Streamable HTTP (`https://mcp.example.com/mcp`), or the
    /// event stream of the legacy transport (`https://mcp.example.com/sse`).
    pub url: Option<String>,
    /// How `url` is spoken. Default `streamable_http`.
    pub transport: Option<RemoteTransport>,
    /// Where the upstream credential for `url` comes from; sent as `credential_header`.
    pub credential: Option<CredentialSource>,
    /// Header carrying the credential. Default `authorization`.
    pub credential_header: Option<String>,
    /// The header's value with `{secret}` where the secret goes. Default `Bearer {secret}`.
    pub credential_format: Option<String>,
    /// How the credential is sent instead of `credential_header` (a query parameter, HTTP
    /// Basic), as a route's `inject:`.
    pub inject: Option<crate::secrets::InjectConfig>,
    /// The server's circuit breaker, instead of `upstream.breaker`.
    pub breaker: Option<BreakerConfig>,
    /// How many requests (`sampling/createMessage`, `elicitation/create`, `roots/list`,
    /// `ping`) the server may send the agent a minute, in each agent session; more are
    /// refused to the server (`-32003`). Default 60.
    pub requests_to_agent_per_minute: Option<u32>,
    /// Send the credential over plain `http` to a host that is not loopback (a trusted
    /// network path: a sidecar, a private link). Default false: refused at start.
    pub allow_plaintext: bool,
    /// Start `command` through a package runner (`npx`, `uvx`…) whose package names no exact
    /// version, fetching whatever the registry serves at each start. Default false: refused
    /// at start (`mcp/package_pin.rs`).
    pub allow_unpinned: bool,
    /// A local server's sandbox: what it may read, write and connect to beyond the system
    /// and its own directory, and its mode instead of `mcp.sandbox.mode`.
    pub sandbox: ServerSandbox,
}

/// Why server `s` would send its credential in the clear to `url`: plain `http` to a host that
/// is not loopback, without `allow_plaintext: true` (as a route's `allow_plaintext`).
fn plaintext_credential(s: &ServerConfig, url: &str) -> Option<String> {
    if s.credential.is_none() || s.allow_plaintext {
        return None;
    }
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    (uri.scheme_str() == Some("http") && !crate::config::url::is_loopback(host)).then(|| {
        format!(
            "{url:?} is plain http to a host that is not loopback, and this server is sent a \
             credential: anyone on the path could read it. Use https, or set \
             allow_plaintext: true on the server if the network path is trusted (a sidecar, a \
             private link)"
        )
    })
}

/// The transport of a remote server.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RemoteTransport {
    /// Streamable HTTP (MCP 2025-03-26 and later): `url` takes POST, GET and DELETE.
    StreamableHttp,
    /// The legacy HTTP+SSE transport (MCP 2024-11-05): `url` is the event stream, whose
    /// `endpoint` event names where messages are posted.
    Sse,
}

/// One endpoint agents connect to: `prefix` speaks MCP and combines `servers`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointConfig {
    /// Route name (metrics, audit, Cedar `context.route`).
    pub name: String,
    /// Path prefix. Default `/mcp/<name>`.
    pub prefix: Option<String>,
    /// The servers it combines, by name.
    pub servers: Vec<String>,
    /// How a denied tool call is answered.
    pub on_deny: McpDenyStyle,
}

/// How a policy refusal of a tool call reaches the agent.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum McpDenyStyle {
    /// A tool result with `isError: true` whose text gives the reason and decision id, so the
    /// model can adapt. (Prompts, resources and completions are refused with a JSON-RPC error
    /// either way: they have no result that carries an error.)
    #[default]
    ToolResult,
    /// A JSON-RPC error.
    JsonrpcError,
}

impl EndpointConfig {
    /// The path prefix agents use.
    pub fn prefix(&self) -> String {
        match &self.prefix {
            Some(p) => p.trim_end_matches('/').to_owned(),
            None => format!("/mcp/{}", self.name),
        }
    }
}

impl McpConfig {
    /// `(key, message)` for every mistake in the section.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |key: String, message: String| errors.push((key, message));
        let sep = self.separator.as_str();
        if sep.is_empty()
            || sep
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "_-".contains(c)))
        {
            err(
                "mcp.separator".into(),
                format!(
                    "{sep:?} cannot join names: use one or more of `_` and `-` (tool names \
                     reach models, which accept only letters, digits, `_` and `-`)"
                ),
            );
        }
        for (key, value) in [
            ("mcp.max_sessions", self.max_sessions),
            ("mcp.max_sessions_per_agent", self.max_sessions_per_agent),
        ] {
            if value == 0 {
                err(
                    key.into(),
                    "0 would refuse every session: give at least 1".into(),
                );
            }
        }
        let mut names = HashSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            let key = format!("mcp.servers[{i}]");
            if !valid_server_name(&s.name) {
                err(
                    format!("{key}.name"),
                    format!(
                        "{:?} is not a valid server name: use letters, digits and `-`, \
                         starting with a letter",
                        s.name
                    ),
                );
            } else if !sep.is_empty() && s.name.contains(sep) {
                err(
                    format!("{key}.name"),
                    format!(
                        "{:?} contains the separator {sep:?}, so its tool names could not be \
                         told apart from another server's; rename it or change mcp.separator",
                        s.name
                    ),
                );
            }
            if !names.insert(s.name.as_str()) {
                err(
                    format!("{key}.name"),
                    format!("server {:?} is defined twice", s.name),
                );
            }
            match (&s.command, &s.url) {
                (Some(_), Some(_)) => err(
                    key.clone(),
                    "set either command (a local server over stdio) or url (a remote server), not both"
                        .into(),
                ),
                (None, None) => err(
                    key.clone(),
                    "set command (a local server over stdio) or url (a remote server)".into(),
                ),
                (None, Some(url)) => {
                    if let Err(m) = crate::route::connector::validate_base_url(url) {
                        err(format!("{key}.url"), m);
                    }
                    if s.sandbox != ServerSandbox::default() {
                        err(
                            format!("{key}.sandbox"),
                            "a remote server runs elsewhere: Warden sandboxes only the local \
                             servers it starts (command)"
                                .into(),
                        );
                    }
                    if !s.secret_env.is_empty() {
                        err(
                            format!("{key}.secret_env"),
                            "a remote server takes no environment; give its credential in \
                             credential:"
                                .into(),
                        );
                    }
                    if let Some(m) = plaintext_credential(s, url) {
                        err(format!("{key}.url"), m);
                    }
                    if s.inject.is_some() && s.credential.is_none() {
                        err(
                            format!("{key}.inject"),
                            "says how a credential is sent, but the server has no credential: \
                             give its source"
                                .into(),
                        );
                    }
                }
                (Some(command), None) => {
                    if !s.allow_unpinned
                        && let Some(m) = super::package_pin::unpinned(command, &s.args)
                    {
                        err(format!("{key}.command"), m);
                    }
                    for (k, m) in s.sandbox.validate(&key) {
                        err(k, m);
                    }
                    if s.transport.is_some() {
                        err(
                            format!("{key}.transport"),
                            "a local server speaks stdio; transport applies to a remote server \
                             (url)"
                                .into(),
                        );
                    }
                    if s.credential.is_some() {
                        err(
                            format!("{key}.credential"),
                            "a local server takes no upstream credential header; pass secrets \
                             in secret_env"
                                .into(),
                        );
                    }
                    for (name, source) in &s.secret_env {
                        if source.names_principal() {
                            err(
                                format!("{key}.secret_env.{name}"),
                                "a server process is not one principal's: its secret path \
                                 cannot name one"
                                    .into(),
                            );
                        }
                    }
                    // With network: egress Warden sets the proxy variables (its listener in
                    // the process's namespace): none of them is the operator's to set.
                    if s.sandbox.network == super::sandbox::config::Network::Egress {
                        let proxy = super::sandbox::config::PROXY_VARIABLES;
                        let names = s.env.keys().map(|n| ("env", n));
                        let secret = s.secret_env.keys().map(|n| ("secret_env", n));
                        for (field, name) in names.chain(secret) {
                            if proxy.contains(&name.as_str()) {
                                err(
                                    format!("{key}.{field}.{name}"),
                                    "with sandbox.network: egress Warden sets the proxy \
                                     variables itself (to its egress proxy in the server's \
                                     network namespace): remove this one"
                                        .into(),
                                );
                            }
                        }
                    }
                }
            }
        }
        let mut prefixes = HashSet::new();
        let mut names = HashSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let key = format!("mcp.endpoints[{i}]");
            if e.name.is_empty() {
                err(format!("{key}.name"), "an endpoint needs a name".into());
            } else if !names.insert(e.name.as_str()) {
                // Records, metrics and `context.route` name an endpoint by its name.
                err(
                    format!("{key}.name"),
                    format!(
                        "another endpoint is already named {:?}; give each its own name",
                        e.name
                    ),
                );
            }
            let prefix = e.prefix();
            if !prefix.starts_with('/') {
                err(
                    format!("{key}.prefix"),
                    format!("{prefix:?} must start with `/`"),
                );
            }
            if !prefixes.insert(prefix.clone()) {
                err(
                    format!("{key}.prefix"),
                    format!("another endpoint already uses {prefix:?}"),
                );
            }
            if e.servers.is_empty() {
                err(
                    format!("{key}.servers"),
                    "an endpoint needs at least one server".into(),
                );
            }
            let defined: Vec<&str> = self.servers.iter().map(|s| s.name.as_str()).collect();
            for (j, name) in e.servers.iter().enumerate() {
                if !defined.contains(&name.as_str()) {
                    let known = if defined.is_empty() {
                        "none is".to_owned()
                    } else {
                        format!("defined: {}", defined.join(", "))
                    };
                    err(
                        format!("{key}.servers[{j}]"),
                        format!(
                            "unknown server {name:?}{}; name one of mcp.servers ({known}), or \
                             define it there",
                            crate::config::suggest::did_you_mean(name, defined.iter().copied())
                        ),
                    );
                }
            }
        }
        errors
    }
}

/// A server name: a letter, then letters, digits and `-` (it prefixes resource URIs as a
/// scheme, `<server>+<uri>`, and names Cedar entities).
fn valid_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
        && name.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> McpConfig {
        serde_saphyr::from_str(yaml).expect("parses")
    }

    #[test]
    fn an_endpoint_naming_a_server_that_is_not_defined_is_told_the_nearest_one() {
        let c = config(
            "servers:\n  - {name: files, url: 'https://mcp.example/files'}\n  - {name: git, url: 'https://mcp.example/git'}\nendpoints:\n  - {name: e, servers: [fiels, git, jira]}\n",
        );
        let errors = c.validate();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].0, "mcp.endpoints[0].servers[0]");
        assert_eq!(
            errors[0].1,
            "unknown server \"fiels\" (did you mean `files`?); name one of mcp.servers \
             (defined: files, git), or define it there"
        );
        assert_eq!(errors[1].0, "mcp.endpoints[0].servers[2]");
        assert!(
            errors[1]
                .1
                .starts_with("unknown server \"jira\"; name one of"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_server_fetched_by_a_package_runner_must_name_an_exact_version() {
        let c = config(
            "servers:\n  - {name: a, command: npx, args: ['-y', '@modelcontextprotocol/server-filesystem', /srv]}\n  - {name: b, command: npx, args: ['-y', '@modelcontextprotocol/server-filesystem@2025.8.21', /srv]}\n  - {name: c, command: uvx, args: [mcp-server-git], allow_unpinned: true}\nendpoints:\n  - {name: e, servers: [a, b, c]}\n",
        );
        let errors = c.validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "mcp.servers[0].command");
        assert!(
            errors[0]
                .1
                .contains("\"@modelcontextprotocol/server-filesystem\""),
            "{}",
            errors[0].1
        );
    }

    #[test]
    fn server_names_holding_the_separator_are_refused() {
        let c = config(
            "separator: '-'\nservers:\n  - {name: my-files, command: x}\nendpoints:\n  - {name: a, servers: [my-files]}\n",
        );
        let errors = c.validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "mcp.servers[0].name");
        assert!(errors[0].1.contains("separator"), "{}", errors[0].1);
    }

    #[test]
    fn a_server_is_a_command_or_a_url_and_endpoints_name_known_servers() {
        let c = config(
            "servers:\n  - {name: a}\n  - {name: b, command: x, url: 'http://127.0.0.1:1/mcp'}\nendpoints:\n  - {name: e, servers: [a, zz]}\n",
        );
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "mcp.servers[0]",
                "mcp.servers[1]",
                "mcp.endpoints[0].servers[1]"
            ]
        );
    }

    #[test]
    fn secret_env_is_for_local_servers_and_names_no_principal() {
        let c = config(
            "servers:\n  - {name: r, url: 'http://127.0.0.1:1/mcp', secret_env: {K: {env: X}}}\n  - {name: l, command: x, secret_env: {K: {vault: {kv: 'secret/{principal.owner}/k'}}, J: {env: Y_KEY}}}\nendpoints:\n  - {name: e, servers: [r, l]}\n",
        );
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["mcp.servers[0].secret_env", "mcp.servers[1].secret_env.K"]
        );
    }

    #[test]
    fn with_network_egress_the_proxy_variables_are_warden_s_alone() {
        let c = config(
            "servers:\n  - {name: a, command: x, sandbox: {network: egress}, env: {HTTPS_PROXY: 'http://evil:1', LANG: C}, secret_env: {no_proxy: {env: X}}}\n  - {name: b, command: x, env: {HTTPS_PROXY: 'http://corp:3128'}}\nendpoints:\n  - {name: e, servers: [a, b]}\n",
        );
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "mcp.servers[0].env.HTTPS_PROXY",
                "mcp.servers[0].secret_env.no_proxy"
            ]
        );
    }

    #[test]
    fn a_remote_server_may_speak_the_legacy_transport_and_a_local_one_not() {
        let c = config(
            "servers:\n  - {name: old, url: 'http://127.0.0.1:1/sse', transport: sse}\n  - {name: local, command: x, transport: sse}\nendpoints:\n  - {name: e, servers: [old, local]}\n",
        );
        assert_eq!(c.servers[0].transport, Some(RemoteTransport::Sse));
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["mcp.servers[1].transport"]);
    }

    #[test]
    fn a_credential_over_plain_http_off_loopback_needs_allow_plaintext() {
        let servers = |extra: &str| {
            config(&format!(
                "servers:\n  - {{name: r, url: 'http://mcp.internal:8080/mcp', credential: {{env: K}}{extra}}}\n  - {{name: l, url: 'http://127.0.0.1:1/mcp', credential: {{env: K}}}}\n  - {{name: n, url: 'http://mcp.internal:8080/mcp'}}\nendpoints:\n  - {{name: e, servers: [r, l, n]}}\n"
            ))
            .validate()
        };
        let refused = servers("");
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, "mcp.servers[0].url");
        assert!(
            refused[0]
                .1
                .contains("\"http://mcp.internal:8080/mcp\" is plain http"),
            "{}",
            refused[0].1
        );
        assert!(
            refused[0].1.contains("allow_plaintext: true"),
            "{}",
            refused[0].1
        );
        assert_eq!(servers(", allow_plaintext: true"), []);
    }

    #[test]
    fn two_endpoints_may_not_share_a_name() {
        let e = config(
            "servers:\n  - {name: f, command: x}\nendpoints:\n  - {name: main, servers: [f]}\n  - {name: main, prefix: /mcp/other, servers: [f]}\n",
        )
        .validate();
        assert!(
            e.iter()
                .any(|(k, m)| k == "mcp.endpoints[1].name" && m.contains("\"main\"")),
            "{e:?}"
        );
    }

    #[test]
    fn endpoints_default_to_mcp_and_their_name() {
        let c = config("endpoints:\n  - {name: tools, servers: []}\n");
        assert_eq!(c.endpoints[0].prefix(), "/mcp/tools");
        assert_eq!(c.separator, "_");
    }
}
