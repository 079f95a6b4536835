//! `limits:` what a request may be before it is interpreted.

use serde::Deserialize;

/// `limits:` request size and similar guards.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted, bytes.
    pub max_request_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_bytes: 16 * 1024 * 1024,
        }
    }
}
