//! `limits:` what a request may be before it is interpreted.

use serde::Deserialize;
use std::time::Duration;

/// `limits:` request size and time guards.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted, bytes.
    pub max_request_bytes: usize,
    /// Longest a client may take to send a request's whole body, from the end of its headers:
    /// a body trickled in slower is refused (408) and its connection freed.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Requests one agent may have in flight at once (held for approval, streaming, an egress
    /// tunnel open included), whatever `rate_limits` says: beyond it, 429.
    pub max_in_flight_per_agent: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_request_bytes: 16 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            max_in_flight_per_agent: 256,
        }
    }
}
