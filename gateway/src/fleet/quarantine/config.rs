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

impl QuarantineConfig {
    /// Mistakes, as (key, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.refresh_interval < Duration::from_millis(10) {
            errors.push((
                "fleet.quarantine.refresh_interval".into(),
                "must be at least 10ms (e.g. 500ms)".into(),
            ));
        }
        if let Some(denies) = &self.triggers.denies {
            if denies.count == 0 {
                errors.push((
                    "fleet.quarantine.triggers.denies.count".into(),
                    "must be at least 1: how many denies within the window quarantine an agent"
                        .into(),
                ));
            }
            if denies.window.is_zero() {
                errors.push((
                    "fleet.quarantine.triggers.denies.window".into(),
                    "must be longer than zero (e.g. 5m)".into(),
                ));
            }
        }
        if self.triggers.duration.is_some_and(|d| d.is_zero()) {
            errors.push((
                "fleet.quarantine.triggers.duration".into(),
                "must be longer than zero; leave it out to quarantine until released".into(),
            ));
        }
        errors
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
