//! `audit:` configuration.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `audit:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Directory of the audit log. Default: `<data_dir>/audit`.
    pub dir: Option<PathBuf>,
    /// fsync every group commit. Off only for throwaway setups.
    pub fsync: bool,
    /// Longest a record waits for its group commit.
    #[serde(with = "humantime_serde")]
    pub max_commit_delay: Duration,
    /// Record request content (prompts, tool arguments) in decision records.
    pub record_content: bool,
    /// Refuse requests when the audit log cannot be written (fail closed).
    pub fail_closed: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            dir: None,
            fsync: true,
            max_commit_delay: Duration::from_millis(2),
            record_content: false,
            fail_closed: true,
        }
    }
}
