//! `policy:` configuration.

use serde::Deserialize;
use std::path::PathBuf;

/// `policy:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directory holding `schema.cedarschema` and `*.cedar` policy files (subdirectories
    /// included; `tests/` is ignored when loading).
    pub dir: PathBuf,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dir: PathBuf::from("policies"),
        }
    }
}
