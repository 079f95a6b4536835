//! Where upstream credentials come from (`credential:` of a route).

use serde::Deserialize;
use std::path::PathBuf;

/// Where an upstream credential is read from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialSource {
    /// An environment variable of the Warden process.
    Env(String),
    /// A file whose content (trimmed) is the secret; re-read on reload.
    File(PathBuf),
}
