//! Connectors: declarative descriptions of upstreams (protocol, base URL, how the credential
//! is injected). The ones in `connectors/` are built in; `connectors_dir` adds more.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

use crate::config::error::{ConfigError, ConfigErrors};
use crate::config::locate::LineIndex;
use crate::protocol::Protocol;

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
    /// Cedar `Provider` name for models behind it.
    pub provider: String,
    /// Default upstream base URL.
    pub base_url: String,
    /// How the upstream credential is sent; none for keyless upstreams.
    #[serde(default)]
    pub credential: Option<CredentialInjection>,
}

/// How a secret becomes a request header.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CredentialInjection {
    /// Header name, e.g. `authorization`.
    pub header: String,
    /// Header value with `{secret}` where the secret goes, e.g. `Bearer {secret}`.
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
];

/// Every known connector by name.
#[derive(Debug, Clone, Default)]
pub struct Connectors {
    by_name: BTreeMap<String, Connector>,
}

impl Connectors {
    /// The built-in connectors plus every `*.yaml` in `extra_dir` (which may override them).
    pub fn load(extra_dir: Option<&Path>) -> Result<Connectors, ConfigErrors> {
        let mut connectors = Connectors::default();
        let mut errors = Vec::new();
        for (file, text) in BUILT_IN {
            connectors.add(Path::new(file), text, &mut errors);
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
                {
                    let line = LineIndex::new(text).line_of("credential.format");
                    errors.push(ConfigError {
                        file: Some(file.into()),
                        line,
                        key: "credential.format".into(),
                        message: "must contain {secret} where the credential goes".into(),
                    });
                }
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
                "ollama",
                "openai",
                "openai-compatible"
            ]
        );
        assert_eq!(
            c.get("anthropic").map(|c| c.protocol),
            Some(Protocol::Anthropic)
        );
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
