//! `routes:` which path prefix goes to which upstream, and how its refusals are answered.

use serde::Deserialize;

use crate::protocol::RefusalFinish;
use crate::secrets::config::{CredentialSource, InjectConfig};

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
    pub credential: Option<CredentialSource>,
    /// How the credential is sent, when not as the connector says (a header, a query
    /// parameter, HTTP Basic), and whether responses that echo it are redacted.
    #[serde(default)]
    pub inject: Option<InjectConfig>,
    /// How refusals are answered on this route.
    #[serde(default)]
    pub on_deny: DenyStyle,
    /// How a completion refusal ends its turn: `stop` (default: a normal end, so agents show
    /// the text) or `content_filter` (the provider's content-filter marking).
    #[serde(default)]
    pub refusal_finish: Option<RefusalFinish>,
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
        credential: Some(CredentialSource::Env(env.into())),
        inject: None,
        on_deny: DenyStyle::Completion,
        refusal_finish: None,
    })
    .chain(std::iter::once(RouteConfig {
        name: None,
        prefix: "/ollama".into(),
        connector: "ollama".into(),
        upstream: None,
        provider: None,
        credential: None,
        inject: None,
        on_deny: DenyStyle::Completion,
        refusal_finish: None,
    }))
    .collect()
}
