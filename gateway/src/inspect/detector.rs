//! What a content detector is: a name, a pattern, and a check of each match beyond it.

use super::config::InspectConfig;

/// A detector: its name (what policies test in `context.findings`), its pattern (capture
/// group 1, when it has one, is the match proper), and a check of each match beyond the
/// pattern.
pub(super) struct Detector {
    pub name: &'static str,
    pub pattern: &'static str,
    pub check: fn(&[u8], &InspectConfig) -> bool,
}

/// Every match of the pattern counts.
pub(super) fn any(_: &[u8], _: &InspectConfig) -> bool {
    true
}
