//! `routes:` which path prefix goes to which upstream, and how its refusals are answered.

use serde::Deserialize;

use crate::protocol::RefusalFinish;
use crate::secrets::config::{CredentialSource, InjectConfig};

/// The providers' account-scoping headers: which organisation, project or billing project a
/// key acts in (`account_headers`).
pub const ACCOUNT_HEADERS: [&str; 3] = [
    "openai-organization",
    "openai-project",
    "x-goog-user-project",
];

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
    /// Sends the route's credential over plain `http` to a host that is not loopback:
    /// anyone on the path can read it. Default `false`: such a route is refused.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// The provider's account-scoping headers (`OpenAI-Organization`, `OpenAI-Project`,
    /// `x-goog-user-project`) sent with the route's credential: those the agent sends are
    /// dropped when Warden injects the credential (the operator's key acts where the operator
    /// says, not where the agent asks), and these set instead.
    #[serde(default)]
    pub account_headers: std::collections::BTreeMap<String, String>,
    /// A Gemini route's requests may name a `cachedContent`: content cached at the provider,
    /// which Warden never saw (caches cannot be made through it). Default `false`: refused.
    #[serde(default)]
    pub allow_cached_content: bool,
    /// The upstream's `Set-Cookie` (and `Set-Cookie2`) headers reach the agent. Default
    /// `false`: dropped, so one upstream cannot plant cookies for Warden's origin, which the
    /// agent would then send to every route.
    #[serde(default)]
    pub pass_cookies: bool,
    /// A REST route's upstream may redirect its agent to another origin (a `3xx` whose
    /// `Location` is not the upstream's origin). Default `false`: such an answer is refused
    /// (502 `upstream_redirect`). LLM routes never pass one.
    #[serde(default)]
    pub pass_redirects: bool,
}

impl RouteConfig {
    /// Why this route would send its credential in the clear to `upstream` (the route's
    /// upstream, or else its connector's base URL): plain `http` to a host that is not
    /// loopback, without `allow_plaintext: true`.
    pub fn plaintext_credential(&self, upstream: &str) -> Option<String> {
        if self.credential.is_none() || self.allow_plaintext {
            return None;
        }
        let uri: http::Uri = upstream.parse().ok()?;
        let host = uri.host()?;
        (uri.scheme_str() == Some("http") && !crate::config::url::is_loopback(host)).then(|| {
            format!(
                "{upstream:?} is plain http to a host that is not loopback, and this route \
                 injects a credential: anyone on the path could read it. Use https, or set \
                 allow_plaintext: true on the route if the network path is trusted (a sidecar, \
                 a private link)"
            )
        })
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
        credential: Some(CredentialSource::Env(env.into())),
        inject: None,
        on_deny: DenyStyle::Completion,
        refusal_finish: None,
        allow_plaintext: false,
        account_headers: Default::default(),
        allow_cached_content: false,
        pass_cookies: false,
        pass_redirects: false,
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
        allow_plaintext: false,
        account_headers: Default::default(),
        allow_cached_content: false,
        pass_cookies: false,
        pass_redirects: false,
    }))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(credential: bool, allow_plaintext: bool) -> RouteConfig {
        RouteConfig {
            credential: credential.then(|| CredentialSource::Env("KEY".into())),
            allow_plaintext,
            ..default_routes().remove(0)
        }
    }

    #[test]
    fn a_credential_goes_over_plain_http_only_to_loopback_or_when_allowed() {
        let with_key = route(true, false);
        let refused = with_key
            .plaintext_credential("http://llm.internal:8000/v1")
            .expect("plain http off loopback with a credential is refused");
        assert!(
            refused.contains("\"http://llm.internal:8000/v1\" is plain http"),
            "{refused}"
        );
        assert!(refused.contains("allow_plaintext: true"), "{refused}");
        assert!(
            with_key
                .plaintext_credential("http://10.1.2.3/v1")
                .is_some()
        );
        for fine in [
            "https://llm.internal/v1",
            "http://127.0.0.1:8000/v1",
            "http://[::1]:8000/v1",
            "http://localhost:11434/v1",
        ] {
            assert_eq!(with_key.plaintext_credential(fine), None, "{fine}");
        }
        assert_eq!(
            route(false, false).plaintext_credential("http://llm.internal/v1"),
            None
        );
        assert_eq!(
            route(true, true).plaintext_credential("http://llm.internal/v1"),
            None
        );
    }
}
