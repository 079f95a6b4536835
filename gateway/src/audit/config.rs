//! `audit:` configuration.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Default size at which a segment is closed and the next one started: 128 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;

/// `audit:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Directory of the audit log. Default: `<data_dir>/audit`.
    pub dir: Option<PathBuf>,
    /// fsync every group commit. Off only for throwaway setups.
    pub fsync: bool,
    /// Write each group commit with direct I/O and `O_DSYNC` (one synchronous write, no
    /// page-cache pass) where the filesystem supports it, else a buffered write and
    /// `fdatasync`. Off: always the latter. Either way a commit is durable when answered.
    pub direct_io: bool,
    /// Longest the writer waits, after a record arrives, to gather more into the same group
    /// commit. 0 (the default): batch what arrived during the previous commit, waiting at most
    /// half a commit (≤ 0.5 ms) for the callers it answered.
    #[serde(with = "humantime_serde")]
    pub max_commit_delay: Duration,
    /// Segment size limit in bytes: the log continues in a new `audit-NNNNNN.jsonl` file
    /// before a record would take the current one past it.
    pub segment_bytes: u64,
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
            direct_io: true,
            max_commit_delay: Duration::ZERO,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            record_content: false,
            fail_closed: true,
        }
    }
}
