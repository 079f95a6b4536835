//! What a content detector is: a name, a pattern, a check of each match beyond it, and how
//! surely a match is what it names.

use super::config::InspectConfig;

/// A detector: its name (what policies test in `context.findings`), its pattern (capture
/// group 1, when it has one, is the match proper), a check of each match beyond the pattern,
/// and what a match rests on.
pub(super) struct Detector {
    pub name: &'static str,
    pub pattern: &'static str,
    pub check: fn(&[u8], &InspectConfig) -> bool,
    pub evidence: Evidence,
}

/// What a detector's match rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Evidence {
    /// A format of its own (a key's prefix, a token's layout): a match is what it names,
    /// wherever it is.
    Format,
    /// Shape alone (randomness, a checksum, a number's form), which the identifiers of tracing
    /// and SDK headers match by chance: such headers are spared it.
    Shape,
}

/// Every match of the pattern counts.
pub(super) fn any(_: &[u8], _: &InspectConfig) -> bool {
    true
}
