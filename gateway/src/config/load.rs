//! Reading the configuration file: YAML syntax, then each section on its own so that one
//! mistake does not hide the next, then the checks that need the whole picture.

use serde::de::DeserializeOwned;
use std::path::Path;

use super::error::{ConfigError, ConfigErrors};
use super::locate::{LineIndex, join_key};
use super::{Config, RouteConfig};

/// The top-level keys, in the order the documentation lists them.
const SECTIONS: &[&str] = &[
    "data_dir",
    "listen",
    "identity",
    "policy",
    "audit",
    "upstream",
    "limits",
    "log",
    "runtime",
    "connectors_dir",
    "routes",
];

/// Reads and parses `path`. Every mistake is reported with file, line and key.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: Some(path.into()),
            line: None,
            key: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        }])
    })?;
    parse(&text, Some(path))
}

/// Parses configuration `text` (from `file`, for messages).
pub fn parse(text: &str, file: Option<&Path>) -> Result<Config, ConfigErrors> {
    let lines = LineIndex::new(text);
    let error = |key: &str, message: String| ConfigError {
        file: file.map(Into::into),
        line: lines.line_of(key),
        key: key.to_string(),
        message,
    };
    let root: serde_json::Value = if text.trim().is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.map(Into::into),
                line: e.location().map(|l| l.line() as usize),
                key: String::new(),
                message: format!("invalid YAML: {}", saphyr_message(&e)),
            }])
        })?
    };
    let serde_json::Value::Object(map) = root else {
        return Err(ConfigErrors(vec![error(
            "",
            "the file must be a mapping of sections (listen:, routes:, ...)".into(),
        )]));
    };

    let mut config = Config::default();
    let mut errors = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            "data_dir" => section(&key, value, &mut config.data_dir, &error, &mut errors),
            "listen" => section(&key, value, &mut config.listen, &error, &mut errors),
            "identity" => section(&key, value, &mut config.identity, &error, &mut errors),
            "policy" => section(&key, value, &mut config.policy, &error, &mut errors),
            "audit" => section(&key, value, &mut config.audit, &error, &mut errors),
            "upstream" => section(&key, value, &mut config.upstream, &error, &mut errors),
            "limits" => section(&key, value, &mut config.limits, &error, &mut errors),
            "log" => section(&key, value, &mut config.log, &error, &mut errors),
            "runtime" => section(&key, value, &mut config.runtime, &error, &mut errors),
            "connectors_dir" => {
                section(&key, value, &mut config.connectors_dir, &error, &mut errors)
            }
            "routes" => config.routes = routes(value, &error, &mut errors),
            other => errors.push(error(
                other,
                format!("unknown section; expected one of: {}", SECTIONS.join(", ")),
            )),
        }
    }
    let mut semantic = super::validate::validate(&config);
    errors.extend(
        semantic
            .drain(..)
            .map(|(key, message)| error(&key, message)),
    );
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Deserializes one section into `slot`, recording a located error on failure.
fn section<T: DeserializeOwned>(
    key: &str,
    value: serde_json::Value,
    slot: &mut T,
    error: &impl Fn(&str, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => *slot = v,
        Err(e) => {
            let inner = e.path().to_string();
            let path = if inner == "." {
                key.to_string()
            } else {
                join_key(key, &inner)
            };
            errors.push(error(&path, e.into_inner().to_string()));
        }
    }
}

/// Deserializes each route on its own, so every bad route is reported.
fn routes(
    value: serde_json::Value,
    error: &impl Fn(&str, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Vec<RouteConfig> {
    let serde_json::Value::Array(items) = value else {
        errors.push(error(
            "routes",
            "must be a list of routes (- prefix: /openai ...)".into(),
        ));
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let mut route = None;
        section(&format!("routes[{i}]"), item, &mut route, error, errors);
        out.extend(route);
    }
    out
}

/// The message of a YAML error without its location (which we print ourselves).
pub fn saphyr_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
