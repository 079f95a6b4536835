//! `fleet.quarantine:` how quarantines reach this replica, and the triggers that quarantine an
//! agent automatically.

use std::time::Duration;

use serde::Deserialize;

/// `fleet.quarantine` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuarantineConfig {
    /// How often the state store's quarantine revision is read: the delay with which a
    /// quarantine made by another process reaches this one on SQLite (on PostgreSQL changes
    /// arrive by `NOTIFY` at once; this is the safety net if a notification is lost).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// What quarantines an agent by itself.
    pub triggers: TriggersConfig,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            refresh_interval: Duration::from_millis(500),
            triggers: TriggersConfig::default(),
        }
    }
}

/// `fleet.quarantine.triggers`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TriggersConfig {
    /// Detectors whose finding in a request quarantines its agent (`context.findings`); empty:
    /// none. Default `[canary]`: an agent that sends a planted canary token is compromised.
    pub detectors: Vec<String>,
    /// Quarantine an agent denied this many times within `denies.window`; absent: off.
    pub denies: Option<DeniesTrigger>,
    /// A forbid annotated `@on_match("quarantine")` that determines a deny quarantines the
    /// agent. Default on.
    pub on_match: bool,
    /// How long an automatic quarantine lasts; absent: until an operator releases it.
    #[serde(with = "humantime_serde")]
    pub duration: Option<Duration>,
}

impl Default for TriggersConfig {
    fn default() -> Self {
        TriggersConfig {
            detectors: vec!["canary".into()],
            denies: None,
            on_match: true,
            duration: None,
        }
    }
}

/// `fleet.quarantine.triggers.denies`: N denies in a sliding window.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeniesTrigger {
    /// How many denies (at least 1).
    pub count: u32,
    /// Within how long.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}
