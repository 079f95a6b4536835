//! What each SIEM sink's shipper in this process has had acknowledged, in memory: the only
//! acknowledgements retention trusts. A cursor file on disk says where shipping resumes
//! after a restart; anyone who can write the audit directory can write one, so retention
//! never reads it: a sink holds back every segment until its shipper, in this process, has
//! confirmed its position against the log or had records acknowledged by the destination.
//! A sink whose shipper has not reported yet (a restart, before it has read its cursor) is
//! told apart from one that reported nothing acknowledged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Per sink, the last seq its destination acknowledged, once its shipper has reported.
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
        self.reported(sink).unwrap_or(0)
    }

    /// What `sink`'s shipper reported last: `None` while it has not reported at all in this
    /// process, `Some(0)` when it reported that its destination holds nothing.
    pub fn reported(&self, sink: &str) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sink)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_nobody_reported_has_acknowledged_nothing() {
        let acks = Acknowledged::default();
        assert_eq!(acks.get("splunk"), 0);
        assert_eq!(acks.reported("splunk"), None);
        let shared = acks.clone();
        shared.set("splunk", 12);
        shared.set("elastic", 0);
        assert_eq!(acks.get("splunk"), 12);
        assert_eq!(acks.reported("splunk"), Some(12));
        assert_eq!(acks.get("elastic"), 0);
        assert_eq!(
            acks.reported("elastic"),
            Some(0),
            "reported, nothing acknowledged"
        );
        assert_eq!(acks.reported("syslog"), None);
    }
}
