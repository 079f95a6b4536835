//! Route: which upstream a request path goes to.

pub mod config;
pub mod connector;

use std::path::Path;
use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme};

use crate::config::error::ConfigErrors;
use crate::config::{Config, DenyStyle};
use crate::policy::SchemaFragment;
use crate::protocol::rest::{self, Operations};
use crate::protocol::{Protocol, RefusalFinish};
use crate::secrets::{self, CredentialProvider, Injection};
use crate::vault::SecretStore;
use connector::{Connectors, validate_base_url};

/// Why a request has no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No route's prefix matches the path.
    #[error("no route matches {path}; check the base URL the agent uses")]
    NoRoute {
        /// The request path (cut short if long).
        path: crate::text::Quoted,
    },
}

/// One resolved route.
#[derive(Debug)]
pub struct Route {
    /// Route name (metrics, audit, policy context).
    pub name: Arc<str>,
    /// Path prefix, without trailing slash.
    pub prefix: String,
    pub protocol: Protocol,
    /// Cedar provider name.
    pub provider: Arc<str>,
    pub upstream: Upstream,
    /// Where the upstream credential comes from at request time; `None` when the upstream
    /// takes none. A provider that cannot give one makes requests fail closed with 503.
    pub credential: Option<Arc<dyn CredentialProvider>>,
    pub on_deny: DenyStyle,
    /// How a refusal answer ends its turn (`refusal_finish`).
    pub refusal_finish: RefusalFinish,
    /// An MCP endpoint (`mcp.endpoints`): its servers, reached through sessions rather than
    /// `upstream`.
    pub mcp: Option<Arc<crate::mcp::Endpoint>>,
    /// A REST route's operations (its connector's).
    pub operations: Option<Arc<Operations>>,
    /// The account-scoping headers sent with the route's credential (`account_headers`).
    pub account_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Requests may name content cached at the provider (`allow_cached_content`).
    pub allow_cached_content: bool,
    /// The upstream's `Set-Cookie` headers reach the agent (`pass_cookies`).
    pub pass_cookies: bool,
    /// A REST upstream's redirects to other origins reach the agent (`pass_redirects`).
    pub pass_redirects: bool,
}

/// Route `i`'s `account_headers`, each name one of [`config::ACCOUNT_HEADERS`] and each value
/// a header value.
fn account_headers(
    i: usize,
    configured: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ConfigErrors> {
    configured
        .iter()
        .map(|(name, value)| {
            let key = format!("routes[{i}].account_headers.{name}");
            let lower = name.to_ascii_lowercase();
            let Some(known) = config::ACCOUNT_HEADERS.iter().find(|h| **h == lower) else {
                return Err(ConfigErrors::one(
                    key,
                    format!(
                        "{name:?} is not an account-scoping header{}; known: {}",
                        crate::config::suggest::did_you_mean(
                            name,
                            config::ACCOUNT_HEADERS.iter().copied()
                        ),
                        config::ACCOUNT_HEADERS.join(", ")
                    ),
                ));
            };
            let value = http::HeaderValue::from_str(value).map_err(|_| {
                ConfigErrors::one(
                    key,
                    "is not a valid header value (visible ASCII only); use the organisation or \
                     project id as the provider shows it"
                        .to_owned(),
                )
            })?;
            Ok((http::HeaderName::from_static(known), value))
        })
        .collect()
}

impl Route {
    /// The part of `path` (a path this route matched) after the route's prefix.
    pub fn rest<'p>(&self, path: &'p str) -> &'p str {
        path.get(self.prefix.len()..).unwrap_or_default()
    }

    /// The part of `path` sent upstream: [`Route::rest`], less a leading `/v1` that an OpenAI
    /// route's upstream already ends with. An SDK given `…/openai/v1` as its base URL sends
    /// `/openai/v1/chat/completions`, which Warden judges as `/chat/completions` (the dialect
    /// reads paths with or without `/v1`), and sends on to `<upstream>/chat/completions`, not
    /// to `<upstream>/v1/chat/completions`, a path no OpenAI-compatible server has.
    pub fn upstream_rest<'p>(&self, path: &'p str) -> &'p str {
        let rest = self.rest(path);
        if self.protocol == Protocol::Openai
            && self.upstream.base_path.ends_with("/v1")
            && let Some(below) = rest.strip_prefix("/v1")
            && below.starts_with('/')
        {
            return below;
        }
        rest
    }
}

/// Where a route's requests go.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Base path without trailing slash (may be empty).
    pub base_path: String,
}

impl Upstream {
    /// Parses a base URL.
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let uri = validate_base_url(url)?;
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(format!("{url:?} must be an absolute URL"));
        };
        let base_path = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        Ok(Upstream {
            scheme,
            authority,
            base_path,
        })
    }

    /// The upstream URI for `rest` (the request path after the route prefix) and `query`.
    pub fn uri(&self, rest: &str, query: Option<&str>) -> Result<http::Uri, http::Error> {
        let mut pq = String::with_capacity(
            self.base_path.len() + rest.len() + query.map_or(0, |q| q.len() + 1),
        );
        pq.push_str(&self.base_path);
        pq.push_str(rest);
        if pq.is_empty() {
            pq.push('/');
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            pq.push('?');
            pq.push_str(q);
        }
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::try_from(pq)?)
            .build()
    }
}

/// The configuration key `routes[i].<section>.<key>` (`key` may be empty).
fn below(i: usize, section: &str, key: &str) -> String {
    if key.is_empty() {
        format!("routes[{i}].{section}")
    } else {
        format!("routes[{i}].{section}.{key}")
    }
}

/// All routes, longest prefix first.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    /// The schema declarations of the REST connectors the routes use, one per connector.
    fragments: Vec<SchemaFragment>,
}

impl RouteTable {
    /// Resolves the configured routes against the connectors and reads their credentials.
    pub fn build(
        config: &Config,
        secrets: Option<&Arc<SecretStore>>,
    ) -> Result<RouteTable, ConfigErrors> {
        let connectors = Connectors::load(config.connectors_dir.as_deref())?;
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut fragments: Vec<SchemaFragment> = Vec::new();
        let mut declared: Vec<&str> = Vec::new();
        for (i, rc) in config.routes.iter().enumerate() {
            let connector = connectors.get(&rc.connector).ok_or_else(|| {
                let known = connectors.names();
                ConfigErrors::one(
                    format!("routes[{i}].connector"),
                    format!(
                        "unknown connector {:?}{}; known: {}",
                        rc.connector,
                        crate::config::suggest::did_you_mean(&rc.connector, known.iter().copied()),
                        known.join(", ")
                    ),
                )
            })?;
            let url = rc.upstream.as_deref().unwrap_or(&connector.base_url);
            let upstream = Upstream::parse(url)
                .map_err(|m| ConfigErrors::one(format!("routes[{i}].upstream"), m))?;
            let name = rc.name.as_deref().unwrap_or(&rc.connector);
            let credential = match (&rc.credential, &connector.credential) {
                (None, Some(injection)) if injection.optional => None,
                (None, None) => None,
                (source, default) => {
                    let injection = Injection::build(default.as_ref(), rc.inject.as_ref())
                        .map_err(|(key, message)| {
                            ConfigErrors::one(below(i, "inject", &key), message)
                        })?;
                    let provider = secrets::provider(name, source.as_ref(), &injection, secrets)
                        .map_err(|e| {
                            let key = if e.key == "inject" {
                                format!("routes[{i}].inject")
                            } else {
                                below(i, "credential", &e.key)
                            };
                            ConfigErrors::one(key, e.message)
                        })?;
                    Some(provider)
                }
            };
            let operations = connectors.operations(&rc.connector).cloned();
            if let Some(ops) = &operations
                && !declared.contains(&rc.connector.as_str())
            {
                declared.push(&rc.connector);
                fragments.push(SchemaFragment {
                    origin: connectors
                        .origin(&rc.connector)
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                    text: rest::schema_fragment(ops),
                });
            }
            let account_headers = account_headers(i, &rc.account_headers)?;
            if rc.allow_cached_content && connector.protocol != Protocol::Gemini {
                return Err(ConfigErrors::one(
                    format!("routes[{i}].allow_cached_content"),
                    format!(
                        "applies to Gemini routes only (cachedContent), and connector {:?} \
                         speaks {}; remove it from this route",
                        rc.connector,
                        connector.protocol.dialect().name()
                    ),
                ));
            }
            if rc.pass_redirects && connector.protocol != Protocol::Rest {
                return Err(ConfigErrors::one(
                    format!("routes[{i}].pass_redirects"),
                    format!(
                        "applies to REST routes only (LLM APIs do not redirect their clients), \
                         and connector {:?} speaks {}; remove it from this route",
                        rc.connector,
                        connector.protocol.dialect().name()
                    ),
                ));
            }
            routes.push(Arc::new(Route {
                account_headers,
                allow_cached_content: rc.allow_cached_content,
                pass_cookies: rc.pass_cookies,
                pass_redirects: rc.pass_redirects,
                operations,
                name: Arc::from(name),
                prefix: rc.prefix.trim_end_matches('/').to_string(),
                protocol: connector.protocol,
                provider: Arc::from(rc.provider.as_deref().unwrap_or(&connector.provider)),
                upstream,
                credential,
                on_deny: rc.on_deny,
                refusal_finish: rc.refusal_finish.unwrap_or_default(),
                mcp: None,
            }));
        }
        for endpoint in crate::mcp::Endpoint::build_all(
            &config.mcp,
            &config.data_dir,
            &config.upstream,
            secrets,
        )? {
            routes.push(Arc::new(Route {
                name: Arc::clone(&endpoint.name),
                prefix: endpoint.prefix.clone(),
                protocol: Protocol::Mcp,
                provider: Arc::clone(&endpoint.name),
                // Never dialled: an MCP endpoint's servers are reached through its sessions.
                upstream: Upstream {
                    scheme: Scheme::HTTP,
                    authority: Authority::from_static("mcp.invalid"),
                    base_path: String::new(),
                },
                credential: None,
                on_deny: DenyStyle::Completion,
                refusal_finish: RefusalFinish::default(),
                mcp: Some(endpoint),
                operations: None,
                account_headers: Vec::new(),
                allow_cached_content: false,
                pass_cookies: false,
                pass_redirects: false,
            }));
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(RouteTable { routes, fragments })
    }

    /// The schema declarations of the actions of the REST connectors the routes use.
    pub fn schema_fragments(&self) -> &[SchemaFragment] {
        &self.fragments
    }

    /// The route for `path`, or why there is none.
    pub fn route(&self, path: &str) -> Result<&Arc<Route>, RouteError> {
        self.find(path)
            .map(|(route, _)| route)
            .ok_or_else(|| RouteError::NoRoute {
                path: crate::text::Quoted::with_max(path, crate::text::PATH_MAX),
            })
    }

    /// The route whose prefix matches `path` on a segment boundary, and the rest of the path.
    pub fn find<'p>(&self, path: &'p str) -> Option<(&Arc<Route>, &'p str)> {
        self.routes.iter().find_map(|r| {
            let rest = path.strip_prefix(r.prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/') || r.prefix.is_empty()).then_some((r, rest))
        })
    }

    /// Every route.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::parse;
    use crate::secrets::CredentialError;

    fn table(yaml: &str) -> RouteTable {
        RouteTable::build(&parse(yaml, None).expect("valid config"), None).expect("routes build")
    }

    #[test]
    fn a_misspelt_account_header_or_connector_is_told_the_nearest_one() {
        let built = |yaml: &str| {
            RouteTable::build(&parse(yaml, None).expect("valid config"), None)
                .expect_err("refused")
                .to_string()
        };
        let e = built(
            "routes:\n  - { prefix: /o, connector: openai, account_headers: { OpenAI-Organisation: org-1 } }\n",
        );
        assert!(
            e.starts_with(
                "routes[0].account_headers.OpenAI-Organisation: \"OpenAI-Organisation\" is not an \
                 account-scoping header (did you mean `openai-organization`?); known: "
            ),
            "{e}"
        );
        // The table is built from a configuration that was checked; a connector it names that
        // is missing all the same (a file removed from connectors_dir) is told alike.
        let mut config = parse("routes:\n  - { prefix: /o, connector: openai }\n", None).unwrap();
        config.routes[0].connector = "opneai".into();
        let e = RouteTable::build(&config, None)
            .expect_err("refused")
            .to_string();
        assert!(
            e.starts_with(
                "routes[0].connector: unknown connector \"opneai\" (did you mean `openai`?); known: "
            ),
            "{e}"
        );
    }

    #[test]
    fn longest_prefix_on_segment_boundary_wins() {
        let t = table(
            "routes:\n  - { prefix: /llm, connector: openai, name: a }\n  - { prefix: /llm/anthropic, connector: anthropic, name: b }\n",
        );
        let (r, rest) = t.find("/llm/anthropic/v1/messages").expect("match");
        assert_eq!((&*r.name, rest), ("b", "/v1/messages"));
        let (r, rest) = t.find("/llm/chat/completions").expect("match");
        assert_eq!((&*r.name, rest), ("a", "/chat/completions"));
        assert!(t.find("/llmx/chat").is_none());
    }

    #[test]
    fn allow_cached_content_is_a_gemini_routes_option_only() {
        let t = table(
            "routes:\n  - { prefix: /g, connector: gemini, name: g, allow_cached_content: true }\n  - { prefix: /h, connector: gemini, name: h }\n",
        );
        let allows = |path| t.find(path).map(|(r, _)| r.allow_cached_content);
        assert_eq!(
            (allows("/g/v1beta/models"), allows("/h/v1beta/models")),
            (Some(true), Some(false))
        );
        let config = parse(
            "routes:\n  - { prefix: /o, connector: openai, allow_cached_content: true }\n",
            None,
        )
        .expect("valid config");
        let err = RouteTable::build(&config, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("routes[0].allow_cached_content"), "{err}");
        assert!(err.contains("applies to Gemini routes only"), "{err}");
        assert!(err.contains("remove it from this route"), "{err}");
    }

    #[test]
    fn builds_upstream_uri_from_base_path_rest_and_query() {
        let up = Upstream::parse("https://api.example.com/v1/").expect("url");
        let uri = up.uri("/chat/completions", Some("a=1")).expect("uri");
        assert_eq!(
            uri.to_string(),
            "https://api.example.com/v1/chat/completions?a=1"
        );
        let up = Upstream::parse("http://127.0.0.1:9000").expect("url");
        assert_eq!(
            up.uri("", None).expect("uri").to_string(),
            "http://127.0.0.1:9000/"
        );
    }

    #[test]
    fn openai_compatible_route_without_credential_sends_none() {
        let t = table(
            "routes:\n  - { prefix: /vllm, connector: openai-compatible, upstream: 'http://vllm.internal:8000/v1' }\n",
        );
        let (r, _) = t.find("/vllm/chat/completions").expect("match");
        assert!(
            r.credential.is_none(),
            "a keyless OpenAI-compatible server needs no credential: {:?}",
            r.credential
        );
    }

    #[test]
    fn openai_compatible_route_with_credential_injects_a_bearer_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("key");
        std::fs::write(&secret, "sk-local\n").expect("write secret");
        let t = table(&format!(
            "routes:\n  - {{ prefix: /vllm, connector: openai-compatible, credential: {{ file: {} }} }}\n",
            secret.display()
        ));
        let (r, _) = t.find("/vllm/chat/completions").expect("match");
        let provider = r.credential.as_ref().expect("the route takes a credential");
        let secrets::Fetch::Ready(Ok(credential)) = provider.credential(
            &crate::action::Principal::anonymous(),
            &secrets::NoPrincipal,
        ) else {
            panic!("a file credential is read at once");
        };
        let secrets::Placed::Header(name, value) = &credential.placed else {
            panic!("a header credential");
        };
        assert_eq!(name, http::header::AUTHORIZATION);
        assert_eq!(value.as_bytes(), b"Bearer sk-local");
    }

    #[test]
    fn a_route_sends_its_credential_where_inject_says_and_mistakes_name_their_key() {
        let t = table(
            "routes:\n  - { prefix: /o, connector: openai, credential: { env: PATH }, inject: { query: key } }\n",
        );
        let (r, _) = t.find("/o/models").expect("match");
        let provider = r.credential.as_ref().expect("a credential");
        let secrets::Fetch::Ready(Ok(credential)) = provider.credential(
            &crate::action::Principal::anonymous(),
            &secrets::NoPrincipal,
        ) else {
            panic!("an env credential is read at once");
        };
        assert!(matches!(&credential.placed, secrets::Placed::Query(name, _) if name == "key"));
        let config = parse(
            "routes:\n  - { prefix: /o, connector: openai, credential: { env: PATH }, inject: { header: x-k, query: k } }\n",
            None,
        )
        .expect("valid config");
        let e = RouteTable::build(&config, None).unwrap_err().to_string();
        assert!(
            e.contains("routes[0].inject") && e.contains("one of"),
            "{e}"
        );
        let config = parse(
            "vault: { address: 'http://127.0.0.1:1', auth: { method: token, token: { env: T } } }\nroutes:\n  - { prefix: /o, connector: openai, credential: { vault: { kv: nomount } } }\n",
            None,
        )
        .expect("valid config");
        let store = crate::vault::SecretStore::offline(config.vault.clone().unwrap()).unwrap();
        let e = RouteTable::build(&config, Some(&store))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("routes[0].credential.vault.kv") && e.contains("names no mount"),
            "{e}"
        );
    }

    #[test]
    fn an_mcp_server_takes_a_vault_credential_but_no_per_principal_path() {
        let yaml = |path: &str| {
            format!(
                "vault: {{ address: 'http://127.0.0.1:1', auth: {{ method: token, token: {{ env: T }} }} }}\n\
                 mcp:\n  servers:\n    - {{ name: gh, url: 'http://127.0.0.1:2/mcp', credential: {{ vault: {{ kv: '{path}' }} }}, inject: {{ query: key }} }}\n\
                 \x20 endpoints:\n    - {{ name: tools, servers: [gh] }}\n"
            )
        };
        let config = parse(&yaml("secret/mcp/gh"), None).expect("valid config");
        let store = crate::vault::SecretStore::offline(config.vault.clone().unwrap()).unwrap();
        let table = RouteTable::build(&config, Some(&store)).expect("routes");
        let (route, _) = table.find("/mcp/tools").expect("the endpoint");
        let endpoint = route.mcp.as_ref().expect("an MCP endpoint");
        assert!(matches!(
            &endpoint.servers[0].kind,
            crate::mcp::ServerKind::Http(remote) if remote.credential.is_some()
        ));
        let config = parse(&yaml("secret/{principal.owner}/gh"), None).expect("valid config");
        let e = RouteTable::build(&config, Some(&store))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mcp.servers[0].credential.vault") && e.contains("per-principal"),
            "{e}"
        );
    }

    #[test]
    fn provider_route_without_credential_is_not_configured() {
        let t = table("routes:\n  - { prefix: /o, connector: openai }\n");
        let (r, _) = t.find("/o/chat/completions").expect("match");
        let problem = r.credential.as_ref().and_then(|c| c.unavailable());
        assert!(
            matches!(&problem, Some(CredentialError::NotConfigured { route }) if route == "openai"),
            "{problem:?}"
        );
    }

    #[test]
    fn missing_credential_env_makes_the_route_fail_closed() {
        let t = table(
            "routes:\n  - { prefix: /o, connector: openai, credential: { env: WARDEN_TEST_SURELY_UNSET_VAR } }\n",
        );
        let (r, _) = t.find("/o/models").expect("match");
        let err = r
            .credential
            .as_ref()
            .and_then(|c| c.unavailable())
            .expect("no env var");
        assert!(
            err.to_string().contains("WARDEN_TEST_SURELY_UNSET_VAR"),
            "{err}"
        );
    }
}
