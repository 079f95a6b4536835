//! Connectors: declarative descriptions of upstreams (protocol, base URL, how the credential
//! is injected, and for a REST API its operations). The ones in `connectors/` are built in;
//! `connectors_dir` adds more.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::error::{ConfigError, ConfigErrors};
use crate::config::locate::LineIndex;
use crate::protocol::Protocol;
use crate::protocol::rest::{OperationSpec, Operations};

/// One connector file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    /// Name routes refer to.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Wire protocol the upstream speaks.
    pub protocol: Protocol,
    /// Cedar name of what is behind it: the `Provider` of its models, or the `Api` of a REST
    /// connector's operations.
    pub provider: String,
    /// Default upstream base URL.
    pub base_url: String,
    /// How the upstream credential is sent; none for keyless upstreams.
    #[serde(default)]
    pub credential: Option<CredentialInjection>,
    /// A REST connector's operations (`protocol: rest`).
    #[serde(default)]
    pub operations: Vec<OperationSpec>,
    /// A REST connector's path parameters whose values the API takes in any case (GitHub's
    /// `owner`, `repo`): lower-cased (Unicode-aware, look-alikes folded) before policy judges
    /// them, and sent upstream so, so that `PAYROLL` is judged and sent as `payroll`.
    #[serde(default)]
    pub fold_case: Vec<String>,
}

/// How a secret becomes a request header.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CredentialInjection {
    /// Header name, e.g. `authorization`.
    pub header: String,
    /// Header value with `{secret}` where the secret goes, e.g. `Bearer {secret}`, or
    /// `{secret_base64}` where its base64 goes (HTTP Basic: `Basic {secret_base64}` with a
    /// secret `user:password`).
    pub format: String,
    /// The upstream may need no credential (a local vLLM or LocalAI): a route without
    /// `credential:` sends none instead of answering 503. Default `false`.
    #[serde(default)]
    pub optional: bool,
}

const BUILT_IN: &[(&str, &str)] = &[
    (
        "openai.yaml",
        include_str!("../../../connectors/openai.yaml"),
    ),
    (
        "anthropic.yaml",
        include_str!("../../../connectors/anthropic.yaml"),
    ),
    (
        "gemini.yaml",
        include_str!("../../../connectors/gemini.yaml"),
    ),
    (
        "ollama.yaml",
        include_str!("../../../connectors/ollama.yaml"),
    ),
    (
        "openai-compatible.yaml",
        include_str!("../../../connectors/openai-compatible.yaml"),
    ),
    (
        "github.yaml",
        include_str!("../../../connectors/github.yaml"),
    ),
    ("slack.yaml", include_str!("../../../connectors/slack.yaml")),
    (
        "google-workspace.yaml",
        include_str!("../../../connectors/google-workspace.yaml"),
    ),
    (
        "microsoft-graph.yaml",
        include_str!("../../../connectors/microsoft-graph.yaml"),
    ),
    ("jira.yaml", include_str!("../../../connectors/jira.yaml")),
    (
        "salesforce.yaml",
        include_str!("../../../connectors/salesforce.yaml"),
    ),
];

/// The names of the built-in connectors (each file is named for its connector).
pub fn built_in_names() -> impl Iterator<Item = &'static str> {
    BUILT_IN
        .iter()
        .filter_map(|(file, _)| file.strip_suffix(".yaml"))
}

/// Where built-in connectors are said to come from in messages.
const BUILT_IN_DIR: &str = "connectors (built in)";

/// Every known connector by name.
#[derive(Debug, Clone, Default)]
pub struct Connectors {
    by_name: BTreeMap<String, Connector>,
    /// A REST connector's compiled operations, by connector name.
    operations: BTreeMap<String, Arc<Operations>>,
    /// The file each connector was read from, by name.
    origins: BTreeMap<String, PathBuf>,
}

impl Connectors {
    /// The built-in connectors plus every `*.yaml` in `extra_dir` (which may override them).
    pub fn load(extra_dir: Option<&Path>) -> Result<Connectors, ConfigErrors> {
        let mut connectors = Connectors::default();
        let mut errors = Vec::new();
        for (file, text) in BUILT_IN {
            connectors.add(&Path::new(BUILT_IN_DIR).join(file), text, &mut errors);
        }
        if let Some(dir) = extra_dir {
            match std::fs::read_dir(dir) {
                Ok(entries) => {
                    let mut paths: Vec<_> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                        .collect();
                    paths.sort();
                    for path in paths {
                        match std::fs::read_to_string(&path) {
                            Ok(text) => connectors.add(&path, &text, &mut errors),
                            Err(e) => errors.push(ConfigError {
                                file: Some(path.clone()),
                                line: None,
                                key: String::new(),
                                message: format!("cannot read connector file: {e}"),
                            }),
                        }
                    }
                }
                Err(e) => errors.push(ConfigError {
                    file: None,
                    line: None,
                    key: "connectors_dir".into(),
                    message: format!("cannot read directory {}: {e}", dir.display()),
                }),
            }
        }
        if errors.is_empty() {
            Ok(connectors)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn add(&mut self, file: &Path, text: &str, errors: &mut Vec<ConfigError>) {
        match serde_saphyr::from_str::<Connector>(text) {
            Ok(c) => {
                if let Err(message) = validate_base_url(&c.base_url) {
                    let line = LineIndex::new(text).line_of("base_url");
                    errors.push(ConfigError {
                        file: Some(file.into()),
                        line,
                        key: "base_url".into(),
                        message,
                    });
                }
                if let Some(cred) = &c.credential
                    && !cred.format.contains("{secret}")
                    && !cred.format.contains("{secret_base64}")
                {
                    let line = LineIndex::new(text).line_of("credential.format");
                    errors.push(ConfigError {
                        file: Some(file.into()),
                        line,
                        key: "credential.format".into(),
                        message: "must contain {secret} (or {secret_base64}) where the \
                                  credential goes"
                            .into(),
                    });
                }
                let located = |key: String, message: String| ConfigError {
                    file: Some(file.into()),
                    line: LineIndex::new(text).line_of(&key),
                    key,
                    message,
                };
                match (c.protocol, c.operations.is_empty()) {
                    (Protocol::Rest, _) => match Operations::compile(&c.name, &c.operations)
                        .and_then(|table| table.folding_case(&c.fold_case))
                    {
                        Ok(table) => {
                            self.operations.insert(c.name.clone(), Arc::new(table));
                        }
                        Err(mistakes) => {
                            let lines = LineIndex::new(text);
                            errors.extend(mistakes.into_iter().map(|m| ConfigError {
                                file: Some(file.into()),
                                line: lines.line_of(&m.key),
                                key: m.key,
                                message: m.message,
                            }));
                        }
                    },
                    (_, false) => errors.push(located(
                        "operations".into(),
                        format!(
                            "operations describe a REST API; this connector speaks {} (set \
                             protocol: rest, or remove them)",
                            c.protocol
                        ),
                    )),
                    (_, true) if !c.fold_case.is_empty() => errors.push(located(
                        "fold_case".into(),
                        format!(
                            "fold_case names a REST API's path parameters and fields; this \
                             connector speaks {} (remove it)",
                            c.protocol
                        ),
                    )),
                    (_, true) => {}
                }
                self.origins.insert(c.name.clone(), file.to_path_buf());
                self.by_name.insert(c.name.clone(), c);
            }
            Err(e) => errors.push(ConfigError {
                file: Some(file.into()),
                line: e.location().map(|l| l.line() as usize),
                key: String::new(),
                message: crate::config::error::saphyr_message(&e),
            }),
        }
    }

    /// The connector called `name`.
    pub fn get(&self, name: &str) -> Option<&Connector> {
        self.by_name.get(name)
    }

    /// The compiled operations of REST connector `name`.
    pub fn operations(&self, name: &str) -> Option<&Arc<Operations>> {
        self.operations.get(name)
    }

    /// The file connector `name` was read from (`connectors (built in)/github.yaml` for a
    /// built-in one).
    pub fn origin(&self, name: &str) -> Option<&Path> {
        self.origins.get(name).map(PathBuf::as_path)
    }

    /// Names of all connectors, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}

/// Checks that `url` is an absolute http(s) URL without query or fragment.
pub fn validate_base_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    if uri.authority().is_none() {
        return Err(format!("{url:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("{url:?} must not have a query string"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_connectors_load() {
        let c = Connectors::load(None).expect("built-in connectors are valid");
        assert_eq!(
            c.names(),
            vec![
                "anthropic",
                "gemini",
                "github",
                "google-workspace",
                "jira",
                "microsoft-graph",
                "ollama",
                "openai",
                "openai-compatible",
                "salesforce",
                "slack",
            ]
        );
        for rest in [
            "github",
            "slack",
            "google-workspace",
            "microsoft-graph",
            "jira",
            "salesforce",
        ] {
            assert!(
                c.operations(rest).is_some_and(|ops| !ops.is_empty()),
                "{rest} has operations"
            );
        }
        assert_eq!(
            c.get("anthropic").map(|c| c.protocol),
            Some(Protocol::Anthropic)
        );
    }

    /// Slack runs a method whatever the HTTP method, its arguments in the query string on a
    /// GET: every method listed for POST is the same operation with GET (and so HEAD), as
    /// read-only as with POST, with the same fields, so that no GET is an unlisted
    /// `http:request` that posts.
    #[test]
    fn every_slack_method_is_the_same_operation_with_get() {
        let c = Connectors::load(None).expect("built-in connectors are valid");
        let ops = c.operations("slack").expect("slack has operations");
        let names = |op: &crate::protocol::rest::operations::Operation| {
            let mut names: Vec<String> = op
                .fields
                .iter()
                .flatten()
                .map(|f| f.name.to_string())
                .collect();
            names.sort();
            names
        };
        for post in ops.iter().filter(|op| op.method == http::Method::POST) {
            let path = post.template.trim_start_matches('/').to_owned();
            let segments = [(path.as_str(), path.clone())];
            for method in [http::Method::GET, http::Method::HEAD] {
                let found = ops.find(&method, &segments);
                let get = found
                    .map(|m| m.operation)
                    .unwrap_or_else(|| panic!("{method} {} is no operation", post.template));
                assert_eq!(get.action, post.action, "{method} {}", post.template);
                assert_eq!(get.read, post.read, "{method} {}", post.template);
                assert_eq!(names(get), names(post), "{method} {}", post.template);
            }
        }
    }

    #[test]
    fn only_openai_compatible_has_an_optional_credential() {
        let c = Connectors::load(None).expect("built-in connectors are valid");
        let optional = |name: &str| {
            c.get(name)
                .and_then(|c| c.credential.as_ref())
                .map(|cred| cred.optional)
        };
        assert_eq!(optional("openai-compatible"), Some(true));
        for name in ["openai", "anthropic", "gemini"] {
            assert_eq!(optional(name), Some(false), "{name} needs its key");
        }
    }

    #[test]
    fn connector_credential_fields_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let head = "name: acme\nprotocol: openai\nprovider: acme\nbase_url: https://x\ncredential:\n  header: authorization\n  format: \"Bearer {secret}\"\n";
        std::fs::write(
            dir.path().join("acme.yaml"),
            format!("{head}  optional: yes please\n"),
        )
        .expect("write");
        let text = Connectors::load(Some(dir.path()))
            .expect_err("optional must be a boolean")
            .to_string();
        assert!(text.contains("acme.yaml:8"), "{text}");

        std::fs::write(
            dir.path().join("acme.yaml"),
            format!("{head}  optinal: true\n"),
        )
        .expect("write");
        let text = Connectors::load(Some(dir.path()))
            .expect_err("unknown field")
            .to_string();
        assert!(
            text.contains("acme.yaml:8") && text.contains("optinal"),
            "{text}"
        );

        std::fs::write(
            dir.path().join("acme.yaml"),
            format!("{head}  optional: true\n"),
        )
        .expect("write");
        let c = Connectors::load(Some(dir.path())).expect("valid connector");
        assert_eq!(
            c.get("acme")
                .and_then(|c| c.credential.as_ref())
                .map(|c| c.optional),
            Some(true)
        );
    }

    #[test]
    fn mistakes_in_a_rest_connector_are_reported_with_file_line_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("acme.yaml"),
            "name: acme\nprotocol: rest\nprovider: acme\nbase_url: https://api.acme.test\n\
             operations:\n  - { action: items.list, method: GET, path: /items }\n\
             \x20 - { action: items.get, method: GET, path: \"/items/{id}/../x\" }\n",
        )
        .expect("write");
        let text = Connectors::load(Some(dir.path()))
            .expect_err("a dot segment in a template")
            .to_string();
        assert!(text.contains("acme.yaml:7: operations[1].path:"), "{text}");
        std::fs::write(
            dir.path().join("acme.yaml"),
            "name: acme\nprotocol: openai\nprovider: acme\nbase_url: https://api.acme.test\n\
             operations:\n  - { action: items.list, method: GET, path: /items }\n",
        )
        .expect("write");
        let text = Connectors::load(Some(dir.path()))
            .expect_err("operations on an LLM connector")
            .to_string();
        assert!(text.contains("acme.yaml:5: operations:"), "{text}");
    }

    #[test]
    fn github_folds_its_case_insensitive_names_and_fold_case_is_checked() {
        let c = Connectors::load(None).expect("built-in connectors are valid");
        let github = c.operations("github").expect("github");
        for name in ["owner", "repo", "org", "username"] {
            assert!(github.folds_case(name), "{name}");
        }
        assert!(!github.folds_case("path"), "file paths keep their case");
        let dir = tempfile::tempdir().expect("tempdir");
        let head = "name: acme\nprotocol: rest\nprovider: acme\nbase_url: https://api.acme.test\n";
        std::fs::write(
            dir.path().join("acme.yaml"),
            format!(
                "{head}fold_case: [id, title]\noperations:\n  - {{ action: items.get, method: GET, path: \"/items/{{id}}\" }}\n"
            ),
        )
        .expect("write");
        let text = Connectors::load(Some(dir.path()))
            .expect_err("title is no path parameter")
            .to_string();
        assert!(text.contains("acme.yaml:5: fold_case[1]"), "{text}");
        std::fs::write(
            dir.path().join("acme.yaml"),
            "name: acme\nprotocol: openai\nprovider: acme\nbase_url: https://api.acme.test\n\
             fold_case: [model]\n",
        )
        .expect("write");
        let text = Connectors::load(Some(dir.path()))
            .expect_err("fold_case on an LLM connector")
            .to_string();
        assert!(text.contains("acme.yaml:5: fold_case:"), "{text}");
    }

    #[test]
    fn extra_connector_with_bad_url_is_reported_with_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("acme.yaml");
        std::fs::write(
            &path,
            "name: acme\nprotocol: openai\nprovider: acme\nbase_url: ftp://x\n",
        )
        .expect("write");
        let err = Connectors::load(Some(dir.path())).expect_err("bad url");
        let text = err.to_string();
        assert!(text.contains("acme.yaml:4: base_url:"), "{text}");
    }
}
