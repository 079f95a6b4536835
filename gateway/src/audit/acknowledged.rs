//! What each SIEM sink's shipper in this process has had acknowledged, in memory: the only
//! acknowledgements retention trusts. A cursor file on disk says where shipping resumes
//! after a restart; anyone who can write the audit directory can write one, so retention
//! never reads it: a sink holds back every segment until its shipper, in this process, has
//! confirmed its position against the log or had records acknowledged by the destination.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Per sink, the last seq its destination acknowledged (0: nothing known yet).
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

    /// The last seq `sink` acknowledged in this process; 0 when nothing is known.
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
        assert_eq!(acks.get("splunk"), 12);
        assert_eq!(acks.get("elastic"), 0);
    }
}
