//! The time tokens are checked against.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since 1970 (0 if the clock is before it).
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
