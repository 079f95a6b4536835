//! `fleet:` fleet controls; each part owns its section.

use serde::Deserialize;

use super::quarantine::config::QuarantineConfig;

/// `fleet:` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// `fleet.quarantine`: how quarantines reach this replica, and what quarantines an agent
    /// by itself.
    pub quarantine: QuarantineConfig,
}
