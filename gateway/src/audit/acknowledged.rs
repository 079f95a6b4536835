//! What each SIEM sink's destination has acknowledged, in memory: the only acknowledgements
//! retention trusts. It begins, when the log opens, with each sink's saved cursor when that
//! cursor is authentic (its `mac`, under a key derived from the audit key) and matches the log
//! (`siem::acknowledged_at_start`), else 0; the sink's shipper in this process reports from
//! then on. A cursor file written while Warden runs is never read here: anyone who can write
//! the audit directory can write one, and only one Warden wrote with this key counts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Per sink, the last seq its destination acknowledged.
#[derive(Debug, Clone, Default)]
pub struct Acknowledged(Arc<Mutex<BTreeMap<String, u64>>>);

impl Acknowledged {
    /// Records that `sink`'s destination holds every record up to `seq`.
    pub fn set(&self, sink: &str, seq: u64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sink.to_owned(), seq);
    }

    /// The last seq `sink` acknowledged; 0 when nothing is known.
    pub fn get(&self, sink: &str) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sink)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_nobody_reported_has_acknowledged_nothing() {
        let acks = Acknowledged::default();
        assert_eq!(acks.get("splunk"), 0);
        let shared = acks.clone();
        shared.set("splunk", 12);
        shared.set("elastic", 0);
        assert_eq!(acks.get("splunk"), 12);
        assert_eq!(acks.get("elastic"), 0);
        assert_eq!(acks.get("syslog"), 0);
    }
}
