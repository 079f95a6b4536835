//! Configuration mistakes, each pointing at a file, line and key.

use std::fmt;
use std::path::PathBuf;

/// One configuration mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the mistake is in (`None` for the embedded defaults).
    pub file: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Key path, e.g. `routes[1].connector`; empty for the whole file.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every mistake found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// A single error without a location.
    pub fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            file: None,
            line: None,
            key: key.into(),
            message: message.into(),
        }])
    }
}

/// The message of a YAML error without its location (which we print ourselves).
pub fn saphyr_message(e: &serde_saphyr::Error) -> String {
    // The library's own wording names an option of its API, which no user can set.
    if let serde_saphyr::Error::DuplicateMappingKey { key, .. } = e.without_snippet() {
        return match key {
            Some(key) => format!("key `{key}` appears twice in one mapping: keep one"),
            None => "a key appears twice in one mapping: keep one".into(),
        };
    }
    let text = e.without_snippet().to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
